package verify

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

// redirectFixture is a TLS server that redirects /away to another server
// (whose connections and requests are counted), /here to its own /ok, and
// /plain to a plain-HTTP server.
type redirectFixture struct {
	srv, other, plain *httptest.Server
	otherConns        atomic.Int64 // connections the other host accepted
	otherReqs         atomic.Int64
}

func newRedirectFixture(t *testing.T) *redirectFixture {
	t.Helper()
	f := &redirectFixture{}
	f.other = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.otherReqs.Add(1)
		w.Write([]byte("other"))
	}))
	f.other.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.otherConns.Add(1)
		}
	}
	f.other.StartTLS()
	t.Cleanup(f.other.Close)
	f.plain = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("plain")) }))
	t.Cleanup(f.plain.Close)
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherURL, _ := url.Parse(f.other.URL)
		switch r.URL.Path {
		case "/away": // another port of the same address: another origin
			http.Redirect(w, r, f.other.URL+"/x", http.StatusFound)
		case "/away-by-name": // the other server under another host name
			http.Redirect(w, r, "https://localhost:"+otherURL.Port()+"/x", http.StatusTemporaryRedirect)
		case "/plain":
			http.Redirect(w, r, f.plain.URL+"/x", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/here-absolute": // same origin, the scheme in upper case
			http.Redirect(w, r, strings.ToUpper(f.srv.URL[:len("https://")])+strings.TrimPrefix(f.srv.URL, "https://")+"/ok", http.StatusMovedPermanently)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			w.Write([]byte("ok"))
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// TestRedirectsStayOnOrigin is issue 9 item 5 for both guards: the
// client's redirect policy (notary and ACR fetches, the token flow) and the
// transport wrapper (go-containerregistry's clients, whose redirect policy
// trustgate cannot set). A redirect to another host or port, or from https
// to http, is refused with a clear error and the other host sees nothing; a
// redirect within the server is followed.
func TestRedirectsStayOnOrigin(t *testing.T) {
	f := newRedirectFixture(t)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate()) // httptest servers share one certificate
	policy, err := NewHTTPClient(nil, pool)
	if err != nil {
		t.Fatal(err)
	}
	base := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	wrapped := &http.Client{Transport: RefuseCrossOriginRedirects(base)} // Go's default: follow anything
	clients := map[string]*http.Client{"CheckRedirect": policy, "RefuseCrossOriginRedirects": wrapped}
	tests := []struct {
		path, wantErr string
	}{
		{"/away", "redirected to another host, https://127.0.0.1:"},
		{"/away-by-name", "redirected to another host, https://localhost:"},
		{"/plain", "refusing redirect from https to http"},
		{"/loop", "stopped after 3 redirects"},
		{"/here", ""},
		{"/here-absolute", ""},
	}
	for cname, c := range clients {
		for _, tc := range tests {
			if cname == "RefuseCrossOriginRedirects" && tc.path == "/loop" {
				continue // the count of same-origin hops is the client's own policy
			}
			t.Run(cname+tc.path, func(t *testing.T) {
				resp, err := c.Get(f.srv.URL + tc.path)
				if tc.wantErr == "" {
					if err != nil {
						t.Fatalf("GET %s: %v, want the same-origin redirect followed", tc.path, err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(body) != "ok" {
						t.Fatalf("GET %s = %q, want ok", tc.path, body)
					}
					return
				}
				if err == nil {
					resp.Body.Close()
					t.Fatalf("GET %s followed the redirect (status %s), want it refused", tc.path, resp.Status)
				}
				if !errors.Is(err, ErrRedirect) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("GET %s: %v, want ErrRedirect saying %q", tc.path, err, tc.wantErr)
				}
			})
		}
	}
	if n, c := f.otherReqs.Load(), f.otherConns.Load(); n != 0 || c != 0 {
		t.Errorf("the other host got %d requests on %d connections, want none", n, c)
	}
}

// TestCheckBlobRedirect: a blob download may follow the registry to its
// storage host over https; nothing else leaves the origin, and nothing goes
// from https to http.
func TestCheckBlobRedirect(t *testing.T) {
	blob := "/v2/team/app/blobs/sha256:" + strings.Repeat("ab", 32)
	mk := func(raw string) *http.Request {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Request{URL: u}
	}
	tests := []struct {
		name, first, next string
		hops              int
		wantErr           string
	}{
		{"blob to storage host", "https://reg.example.com" + blob, "https://storage.example.net/x?sig=1", 1, ""},
		{"blob to http storage", "https://reg.example.com" + blob, "http://storage.example.net/x", 1, "https to http"},
		{"blob loop", "https://reg.example.com" + blob, "https://storage.example.net/x", 3, "stopped after 3"},
		{"manifest to another host", "https://reg.example.com/v2/team/app/manifests/v1", "https://evil.example.net/x", 1, "redirected to another host"},
		{"ping to another host", "https://reg.example.com/v2/", "https://evil.example.net/v2/", 1, "redirected to another host"},
		{"blob-looking tag path", "https://reg.example.com/v2/team/app/manifests/blobs", "https://evil.example.net/x", 1, "redirected to another host"},
		{"not a digest", "https://reg.example.com/v2/team/app/blobs/uploads/", "https://evil.example.net/x", 1, "redirected to another host"},
		{"manifest within the origin", "https://reg.example.com/v2/team/app/manifests/v1", "https://REG.example.com:443/v2/x", 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			via := []*http.Request{mk(tc.first)}
			for len(via) < tc.hops {
				via = append(via, mk(tc.next))
			}
			err := CheckBlobRedirect(mk(tc.next), via)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckBlobRedirect: %v, want the redirect followed", err)
				}
				return
			}
			if !errors.Is(err, ErrRedirect) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckBlobRedirect: %v, want ErrRedirect saying %q", err, tc.wantErr)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
