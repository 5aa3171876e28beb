package credentials

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// tokenServer is a registry-style server (a notary server or ACR): every
// path, /v2/ included, answers 401 with a Bearer challenge naming its own
// /token realm until the request carries a token it issued; the realm
// issues a token per accepted credential (Basic user:password, or an
// OAuth2 refresh token POSTed as ACR's identity tokens are).
type tokenServer struct {
	srv *httptest.Server

	mu     sync.Mutex
	users  map[string]string // user → password
	ids    map[string]string // refresh token → user
	issued map[string]string // token → user
	scopes []string          // scopes asked for, in order

	tokenReqs, pings, reqs atomic.Int64
	// seenUsers records who each successful request was authorized as.
	seenUsers sync.Map
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{users: map[string]string{}, ids: map[string]string{}, issued: map[string]string{}}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) host() string { return strings.TrimPrefix(ts.srv.URL, "http://") }

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		ts.tokenReqs.Add(1)
		ts.issue(w, r)
		return
	}
	if r.URL.Path == "/v2/" {
		ts.pings.Add(1)
	} else {
		ts.reqs.Add(1)
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	ts.mu.Lock()
	user, ok := ts.issued[tok]
	ts.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+ts.srv.URL+`/token",service="notary-server",scope="repository:app:pull"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		return
	}
	ts.seenUsers.Store(user, true)
	w.Write([]byte("metadata"))
}

func (ts *tokenServer) issue(w http.ResponseWriter, r *http.Request) {
	user := "" // anonymous tokens are issued too, as Docker Hub does
	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch {
	case r.Method == http.MethodPost:
		_ = r.ParseForm()
		ts.scopes = append(ts.scopes, r.PostForm.Get("scope"))
		u, ok := ts.ids[r.PostForm.Get("refresh_token")]
		if r.PostForm.Get("grant_type") != "refresh_token" || !ok {
			http.Error(w, "bad refresh token", http.StatusUnauthorized)
			return
		}
		user = u
	default:
		ts.scopes = append(ts.scopes, strings.Join(r.URL.Query()["scope"], " "))
		if u, p, ok := r.BasicAuth(); ok {
			if ts.users[u] != p || p == "" {
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
			user = u
		}
	}
	tok := "tok-" + base64.RawURLEncoding.EncodeToString([]byte(user)) + "-" + string(rune('a'+len(ts.issued)))
	ts.issued[tok] = user
	w.Write([]byte(`{"token":"` + tok + `","expires_in":300}`))
}

// revoke makes every issued token invalid (they expired).
func (ts *tokenServer) revoke() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.issued)
}

func (ts *tokenServer) user(name string) bool { _, ok := ts.seenUsers.Load(name); return ok }

// staticKeychain answers one credential for one registry host.
type staticKeychain struct {
	host string
	cfg  authn.AuthConfig
	asks atomic.Int64
}

func (k *staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	k.asks.Add(1)
	if r.RegistryStr() != k.host {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(k.cfg), nil
}

func newClient(t *testing.T, own *Store) *Client {
	t.Helper()
	hc, err := verify.NewHTTPClient(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return NewClient(hc, own)
}

func get(t *testing.T, c *Client, url string, target Target) error {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := c.Do(req, target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// TestClientTokenFlow runs the token flow through ggcr's transport against
// a server whose /v2/ challenges too (as notary-server with token auth
// does): no ping is needed, a token is fetched once per repository scope and
// credential and reused, renewed after it expires, and the scope asked for
// is the repository's pull scope.
func TestClientTokenFlow(t *testing.T) {
	ts := newTokenServer(t)
	ts.users["alice"] = "pw"
	c := newClient(t, &Store{static: &authn.AuthConfig{Username: "alice", Password: "pw"}})
	target := Target{Scope: "repository:app:pull", Registry: ts.host()}
	for i := range 3 {
		if err := get(t, c, ts.srv.URL+"/v2/app/_trust/tuf/root.json", target); err != nil {
			t.Fatalf("GET #%d: %v", i, err)
		}
	}
	// 401, then three with the token; one token.
	if ts.reqs.Load() != 4 || ts.tokenReqs.Load() != 1 || ts.pings.Load() != 0 {
		t.Errorf("requests %d, token requests %d, pings %d; want 4, 1, 0", ts.reqs.Load(), ts.tokenReqs.Load(), ts.pings.Load())
	}
	if !ts.user("alice") {
		t.Error("the server never saw alice's token")
	}
	if len(ts.scopes) != 1 || ts.scopes[0] != "repository:app:pull" {
		t.Errorf("scopes asked = %q, want [repository:app:pull]", ts.scopes)
	}

	// Expired: the kept transport renews its token.
	ts.revoke()
	if err := get(t, c, ts.srv.URL+"/v2/app/_trust/tuf/root.json", target); err != nil {
		t.Fatalf("GET after expiry: %v", err)
	}
	if ts.tokenReqs.Load() < 2 {
		t.Errorf("token requests %d after expiry, want a new token", ts.tokenReqs.Load())
	}

	// Another repository is another scope: its own token.
	before := ts.tokenReqs.Load()
	if err := get(t, c, ts.srv.URL+"/v2/other/_trust/tuf/root.json", Target{Scope: "repository:other:pull", Registry: ts.host()}); err != nil {
		t.Fatalf("GET other: %v", err)
	}
	if got := ts.tokenReqs.Load() - before; got != 1 {
		t.Errorf("%d token requests for a new repository, want 1", got)
	}
}

// TestClientCredentialOrder checks whose credentials go where: the
// verifier's own first; the subject's keychain only when the verifier has
// none and the server is the image's registry itself; never a pod's secret
// for one registry to another host. Tokens are kept per credential.
func TestClientCredentialOrder(t *testing.T) {
	ts := newTokenServer(t)
	ts.users["alice"] = "pw"
	ts.users["pod"] = "secret"
	url := ts.srv.URL + "/v2/app/_trust/tuf/root.json"
	podKeys := &staticKeychain{host: ts.host(), cfg: authn.AuthConfig{Username: "pod", Password: "secret"}}

	t.Run("own credentials win", func(t *testing.T) {
		c := newClient(t, &Store{static: &authn.AuthConfig{Username: "alice", Password: "pw"}})
		ts.seenUsers.Clear()
		if err := get(t, c, url, Target{Scope: "repository:app:pull", Registry: ts.host(), Keychain: podKeys}); err != nil {
			t.Fatal(err)
		}
		if !ts.user("alice") || ts.user("pod") {
			t.Error("want alice's token, not the pod's")
		}
	})
	t.Run("subject keychain on the registry's own host", func(t *testing.T) {
		c := newClient(t, nil)
		ts.seenUsers.Clear()
		if err := get(t, c, url, Target{Scope: "repository:app:pull", Registry: ts.host(), Keychain: podKeys}); err != nil {
			t.Fatal(err)
		}
		if !ts.user("pod") {
			t.Error("the pod's credentials were not presented")
		}
		// The same request anonymously gets a token of its own, not the
		// pod's: a token is reused only for the credential that earned it.
		before := ts.tokenReqs.Load()
		ts.seenUsers.Clear()
		if err := get(t, c, url, Target{Scope: "repository:app:pull", Registry: ts.host()}); err != nil {
			t.Fatal(err)
		}
		if ts.tokenReqs.Load() != before+1 || !ts.user("") || ts.user("pod") {
			t.Errorf("anonymous request after the pod's: %d new token requests, users %v/%v; want 1, anonymous only", ts.tokenReqs.Load()-before, ts.user(""), ts.user("pod"))
		}
	})
	t.Run("subject keychain never to another host", func(t *testing.T) {
		c := newClient(t, nil)
		ts.seenUsers.Clear()
		other := &staticKeychain{host: "registry.example.com", cfg: podKeys.cfg}
		if err := get(t, c, url, Target{Scope: "repository:app:pull", Registry: "registry.example.com", Keychain: other}); err != nil {
			t.Fatal(err)
		}
		if ts.user("pod") || other.asks.Load() != 0 {
			t.Errorf("a pod's secret for registry.example.com reached %s (keychain asked %d times)", ts.host(), other.asks.Load())
		}
	})
	t.Run("wrong password is access denied", func(t *testing.T) {
		c := newClient(t, &Store{static: &authn.AuthConfig{Username: "alice", Password: "nope"}})
		err := get(t, c, url, Target{Scope: "repository:app:pull", Registry: ts.host()})
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "refused the credentials") {
			t.Fatalf("err = %v, want ErrUnauthorized from the token endpoint", err)
		}
	})
}

// TestClientIdentityToken: a docker config's identitytoken (what `az acr
// login` writes) is exchanged through the realm's OAuth2 endpoint.
func TestClientIdentityToken(t *testing.T) {
	ts := newTokenServer(t)
	ts.ids["refresh-1"] = "carol"
	c := newClient(t, &Store{byHost: map[string]authn.AuthConfig{normalizeHost(ts.host()): {IdentityToken: "refresh-1"}}})
	if err := get(t, c, ts.srv.URL+"/acr/v1/app/_tags/v1", Target{Scope: "repository:app:metadata_read", Registry: ts.host()}); err != nil {
		t.Fatal(err)
	}
	if !ts.user("carol") {
		t.Error("the identity token's user was not authorized")
	}
	if len(ts.scopes) != 1 || !strings.Contains(ts.scopes[0], "repository:app:metadata_read") {
		t.Errorf("scopes asked = %q", ts.scopes)
	}
}

// TestClientRealmPrivateAddress records what ggcr refuses that the
// hand-written flow allowed: a token realm on another host given as a
// loopback or private IP literal (its SSRF guard). A realm on the server's
// own host:port is always allowed (the other tests).
func TestClientRealmPrivateAddress(t *testing.T) {
	realm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"token":"t"}`))
	}))
	defer realm.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm.URL+`/token",service="s"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	err := get(t, newClient(t, nil), srv.URL+"/v2/app/_trust/tuf/root.json", Target{Scope: "repository:app:pull"})
	if err == nil || !strings.Contains(err.Error(), "private or link-local") {
		t.Fatalf("err = %v, want the realm refused as a private address", err)
	}
}
