package acr

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// fakeACR stands in for ACR's tag API: /acr/v1/<repo>/_tags/<tag>, with an
// optional token flow (/oauth2/token) guarding it.
type fakeACR struct {
	srv      *httptest.Server
	tags     map[string]map[string]any // "repo:tag" → tag object
	token    bool
	requests atomic.Int64
	tokens   atomic.Int64
}

func newFakeACR(t *testing.T, token bool) *fakeACR {
	f := &fakeACR{tags: map[string]map[string]any{}, token: token}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeACR) host() string { return strings.TrimPrefix(f.srv.URL, "https://") }

func (f *fakeACR) caFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fakeACR) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth2/token" {
		f.tokens.Add(1)
		if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != "pw" {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		if got := r.URL.Query().Get("scope"); !strings.HasSuffix(got, ":metadata_read") {
			http.Error(w, "bad scope "+got, http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "acr-token", "expires_in": 300})
		return
	}
	f.requests.Add(1)
	rest, ok := strings.CutPrefix(r.URL.Path, "/acr/v1/")
	repo, tag, ok2 := strings.Cut(rest, "/_tags/")
	if !ok || !ok2 {
		http.NotFound(w, r)
		return
	}
	if f.token && r.Header.Get("Authorization") != "Bearer acr-token" {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/oauth2/token",service="%s",scope="repository:%s:metadata_read"`, f.srv.URL, f.host(), repo))
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		return
	}
	obj, found := f.tags[repo+":"+tag]
	if !found {
		http.Error(w, `{"errors":[{"code":"TAG_UNKNOWN"}]}`, http.StatusNotFound)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"registry": f.host(), "imageName": repo, "tag": obj})
}

func TestVerify(t *testing.T) {
	f := newFakeACR(t, false)
	f.tags["demo/app:v1"] = map[string]any{"name": "v1", "digest": digestA, "signed": true}
	f.tags["demo/app:v2"] = map[string]any{"name": "v2", "digest": digestB, "signed": false}
	v, err := New("acr", Config{Registry: f.host(), CAFile: f.caFile(t)}, verify.Deps{RequestTimeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		ref        string
		wantDigest string
		wantErr    error
		wantMsg    string
		wantCalls  int64
	}{
		{"signed", f.host() + "/demo/app:v1", digestA, nil, "", 1},
		{"signed with matching digest", f.host() + "/demo/app:v1@" + digestA, digestA, nil, "", 1},
		{"signed with other digest", f.host() + "/demo/app:v1@" + digestB, "", verify.ErrUntrusted, "is " + digestA + " in the registry, not " + digestB, 1},
		{"unsigned", f.host() + "/demo/app:v2", "", verify.ErrUntrusted, "tag v2 of " + f.host() + "/demo/app is not signed", 1},
		{"unknown tag", f.host() + "/demo/app:v3", "", verify.ErrUntrusted, "does not exist", 1},
		{"digest only", f.host() + "/demo/app@" + digestA, "", verify.ErrUntrusted, "names no tag", 0},
		{"other registry", "other.example.com/demo/app:v1", "", verify.ErrUntrusted, "is not in registry " + f.host(), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.requests.Load()
			res, err := v.Verify(context.Background(), verify.Subject{Ref: imageref.MustParse(tc.ref)})
			if calls := f.requests.Load() - before; calls != tc.wantCalls {
				t.Errorf("%d requests, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("Verify(%s) error = %v, want %v mentioning %q", tc.ref, err, tc.wantErr, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify(%s): %v", tc.ref, err)
			}
			if res.Digest != tc.wantDigest {
				t.Errorf("Digest = %s, want %s", res.Digest, tc.wantDigest)
			}
		})
	}
}

func TestTokenFlow(t *testing.T) {
	f := newFakeACR(t, true)
	f.tags["demo/app:v1"] = map[string]any{"name": "v1", "digest": digestA, "signed": true}
	env := map[string]string{"ACR_USER": "bob", "ACR_PASS": "pw", "WRONG": "x"}
	getenv := func(k string) string { return env[k] }
	ref := imageref.MustParse(f.host() + "/demo/app:v1")

	v, err := New("acr", Config{Registry: f.host(), CAFile: f.caFile(t), Credentials: &credentials.Config{UsernameEnv: "ACR_USER", PasswordEnv: "ACR_PASS"}}, verify.Deps{}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		res, err := v.Verify(context.Background(), verify.Subject{Ref: ref})
		if err != nil {
			t.Fatalf("Verify #%d: %v", i, err)
		}
		if res.Digest != digestA {
			t.Errorf("Digest = %s, want %s", res.Digest, digestA)
		}
	}
	if got := f.tokens.Load(); got != 1 {
		t.Errorf("%d token requests for two lookups, want 1", got)
	}

	bad, err := New("acr", Config{Registry: f.host(), CAFile: f.caFile(t), Credentials: &credentials.Config{UsernameEnv: "ACR_USER", PasswordEnv: "WRONG"}}, verify.Deps{}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Verify(context.Background(), verify.Subject{Ref: ref}); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("Verify with a wrong password = %v, want ErrUnavailable", err)
	}
}

func TestSchemeConfig(t *testing.T) {
	tests := []struct {
		name, config, wantErr string
	}{
		{"valid", `{"registry":"myregistry.azurecr.io"}`, ""},
		{"missing registry", `{}`, "registry: required"},
		{"registry with scheme", `{"registry":"https://myregistry.azurecr.io"}`, "registry:"},
		{"unknown field", `{"registry":"r.io","server":"x"}`, `unknown field "server"`},
		{"missing CA", `{"registry":"r.io","caFile":"nope.crt"}`, "caFile: read nope.crt"},
		{"missing docker config", `{"registry":"r.io","credentials":{"dockerConfig":"nope.json"}}`, "credentials.dockerConfig"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := policytest.Build(Scheme, "acr", json.RawMessage(tc.config), verify.Deps{BaseDir: t.TempDir()})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				if v.Type() != "acrSignedTag" || v.Name() != "acr" {
					t.Errorf("Type, Name = %q, %q", v.Type(), v.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("build error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// hostKeychain answers one credential for one registry host.
type hostKeychain struct {
	host string
	cfg  authn.AuthConfig
}

func (k hostKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() != k.host {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(k.cfg), nil
}

// TestSubjectKeychain: without credentials of its own the verifier asks the
// registry with the subject's keychain (the pod's pull secrets), through the
// same token flow.
func TestSubjectKeychain(t *testing.T) {
	f := newFakeACR(t, true)
	f.tags["demo/app:v1"] = map[string]any{"name": "v1", "digest": digestA, "signed": true}
	ref := imageref.MustParse(f.host() + "/demo/app:v1")
	v, err := New("acr", Config{Registry: f.host(), CAFile: f.caFile(t)}, verify.Deps{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc := hostKeychain{host: f.host(), cfg: authn.AuthConfig{Username: "bob", Password: "pw"}}
	if _, err := v.Verify(context.Background(), verify.Subject{Ref: ref, Keychain: kc}); err != nil {
		t.Fatalf("Verify with the pod's pull secret: %v", err)
	}
	if _, err := v.Verify(context.Background(), verify.Subject{Ref: ref}); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("Verify without credentials = %v, want ErrUnavailable", err)
	}
}
