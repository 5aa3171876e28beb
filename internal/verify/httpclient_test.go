package verify

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvePath(t *testing.T) {
	for _, tc := range []struct{ base, p, want string }{
		{"/etc/tg", "ca.crt", "/etc/tg/ca.crt"},
		{"/etc/tg", "/abs/ca.crt", "/abs/ca.crt"},
		{"", "ca.crt", "ca.crt"},
	} {
		if got := ResolvePath(tc.base, tc.p); got != tc.want {
			t.Errorf("ResolvePath(%q, %q) = %q, want %q", tc.base, tc.p, got, tc.want)
		}
	}
}

func TestLoadCAFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "junk.crt"), []byte("not PEM"), 0o600)
	for file, want := range map[string]string{"missing.crt": "read missing.crt", "junk.crt": "junk.crt holds no PEM certificate"} {
		if _, err := LoadCAFile(dir, file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadCAFile(%s) = %v, want an error containing %q", file, err, want)
		}
	}
}

// The client trusts the CA file, and never follows a redirect from https to
// plain http (which would hand metadata or tokens to anyone on the path).
func TestNewHTTPClient(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("plain")) }))
	defer plain.Close()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Redirect(w, r, plain.URL+"/x", http.StatusFound)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	pool, err := LoadCAFile("", caFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewHTTPClient(nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(srv.URL + "/")
	if err != nil {
		t.Fatalf("GET with the CA file: %v", err)
	}
	resp.Body.Close()
	if _, err := c.Get(srv.URL + "/down"); err == nil || !strings.Contains(err.Error(), "https to http") {
		t.Fatalf("redirect to http: %v, want it refused", err)
	}
	if _, err := NewHTTPClient(roundTripFunc(nil), pool); err == nil {
		t.Fatal("a CA was added to a transport that cannot take one")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
