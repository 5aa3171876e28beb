package credentials

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestTokenFlowHosts pins down which hosts the token flow contacts (issue 9,
// item 5): the realm that the configured server's challenge names, though it
// is another host (as Docker Hub's auth.docker.io is), but nothing either of
// them redirects to elsewhere. The stranger must get no request.
func TestTokenFlowHosts(t *testing.T) {
	var strangerReqs atomic.Int64
	stranger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		strangerReqs.Add(1)
		w.Write([]byte(`{"token":"stolen"}`))
	}))
	defer stranger.Close()
	var realmReqs atomic.Int64
	realm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		realmReqs.Add(1)
		if r.URL.Path == "/bounce" {
			http.Redirect(w, r, stranger.URL+"/token", http.StatusFound)
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"token":"t1"}`))
	}))
	defer realm.Close()
	// The realm is named, not an IP literal: ggcr refuses a realm on
	// another host at a loopback or private address (SSRF guard).
	realmURL := strings.Replace(realm.URL, "127.0.0.1", "localhost", 1)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		realmPath := "/token"
		if r.URL.Path == "/bouncing-realm" {
			realmPath = "/bounce"
		}
		if r.URL.Path == "/elsewhere" {
			http.Redirect(w, r, stranger.URL+"/x", http.StatusFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer t1" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realmURL+realmPath+`",service="notary"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Write([]byte("metadata"))
	}))
	defer server.Close()

	client, err := verify.NewHTTPClient(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &Store{static: &authn.AuthConfig{Username: "alice", Password: "pw"}}
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, server.URL+path, nil)
		return NewClient(client, store).Do(req, Target{Scope: "repository:r:pull"})
	}

	resp, err := get("/ok")
	if err != nil {
		t.Fatalf("token from the challenge's realm on another host: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || realmReqs.Load() != 1 {
		t.Fatalf("status %s after %d realm requests, want 200 after 1", resp.Status, realmReqs.Load())
	}
	for _, tc := range []struct{ path, want string }{
		{"/bouncing-realm", "fetch token from"},
		{"/elsewhere", ""},
	} {
		resp, err := get(tc.path)
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET %s: followed to another host (status %s), want it refused", tc.path, resp.Status)
			continue
		}
		if !errors.Is(err, verify.ErrRedirect) || !strings.Contains(err.Error(), "redirected to another host") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("GET %s: %v, want ErrRedirect naming the other host", tc.path, err)
		}
	}
	if n := strangerReqs.Load(); n != 0 {
		t.Errorf("a host neither configured nor named by a challenge got %d requests, want none", n)
	}
}
