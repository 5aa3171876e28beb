// Package notaryfake is an in-memory Notary v1 server for tests: the
// counterpart of go-containerregistry's registry.New for Docker Content
// Trust. It generates keys, signs root, targets, delegations, snapshot and
// timestamp at test time with chosen versions and expiries, serves them
// under /v2/<GUN>/_trust/tuf/<role>.json, and has knobs to tamper with the
// metadata, slow down or fail answers, and require token authentication.
package notaryfake

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a running fake notary server.
type Server struct {
	ts     *httptest.Server
	tls    bool
	closed chan struct{} // closed at cleanup so delayed answers end at once

	mu     sync.Mutex
	repos  map[string]*Repo
	status int           // when non-zero, every /v2/ metadata request answers it
	delay  time.Duration // wait before answering metadata requests
	auth   *tokenAuth
	counts map[string]int // per request path

	requests      atomic.Int64 // metadata requests (/v2/.../_trust/...)
	tokenRequests atomic.Int64
}

type tokenAuth struct {
	user, pass string
	token      string
	expiresIn  int
}

// Option configures a Server.
type Option func(*Server)

// PlainHTTP serves over plain HTTP instead of TLS.
func PlainHTTP() Option { return func(s *Server) { s.tls = false } }

// WithTokenAuth makes metadata requests require a bearer token, obtained
// from the server's /token endpoint with Basic credentials user:pass, as the
// Docker registry token flow does.
func WithTokenAuth(user, pass string) Option {
	return func(s *Server) {
		s.auth = &tokenAuth{user: user, pass: pass, token: fmt.Sprintf("tok-%d", time.Now().UnixNano()), expiresIn: 300}
	}
}

// New starts a TLS server (unless PlainHTTP) closed at the end of the test.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{tls: true, repos: map[string]*Repo{}, counts: map[string]int{}, closed: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	if s.tls {
		s.ts = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	} else {
		s.ts = httptest.NewServer(http.HandlerFunc(s.serve))
	}
	t.Cleanup(func() {
		close(s.closed)
		s.ts.Close()
	})
	return s
}

// URL is the server's base URL, e.g. https://127.0.0.1:PORT.
func (s *Server) URL() string { return s.ts.URL }

// Host is host:port of the server.
func (s *Server) Host() string {
	return strings.TrimPrefix(strings.TrimPrefix(s.ts.URL, "https://"), "http://")
}

// CAFile writes the server's certificate (its own CA) to a file in dir and
// returns the path, for a verifier's caFile.
func (s *Server) CAFile(t testing.TB) string {
	t.Helper()
	if !s.tls {
		t.Fatal("notaryfake: CAFile on a plain HTTP server")
	}
	p := filepath.Join(t.TempDir(), "notary-ca.crt")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ts.Certificate().Raw})
	if err := os.WriteFile(p, block, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// CertPool holds the server's certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ts.Certificate())
	return p
}

// Requests counts metadata requests served (any status).
func (s *Server) Requests() int { return int(s.requests.Load()) }

// TokenRequests counts requests to the token endpoint.
func (s *Server) TokenRequests() int { return int(s.tokenRequests.Load()) }

// RequestsFor counts requests for one path, e.g. "/v2/x/y/_trust/tuf/snapshot.json".
func (s *Server) RequestsFor(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

// ResetCounts zeroes the request counters.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests.Store(0)
	s.tokenRequests.Store(0)
	clear(s.counts)
}

// SetStatus makes every metadata request answer code (0 restores normal service).
func (s *Server) SetStatus(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = code
}

// SetDelay delays every metadata answer by d (or until the client gives up).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/token" {
		s.serveToken(w, r)
		return
	}
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	}
	gun, role, ok := splitPath(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.requests.Add(1)
	s.mu.Lock()
	s.counts[r.URL.Path]++
	status, delay, auth, repo := s.status, s.delay, s.auth, s.repos[gun]
	s.mu.Unlock()

	if auth != nil && r.Header.Get("Authorization") != "Bearer "+auth.token {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="notaryfake",scope="repository:%s:pull"`, s.ts.URL, gun))
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		return
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		}
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	var body []byte
	if repo != nil {
		body = repo.served(role)
	}
	if body == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"METADATA_NOT_FOUND","message":"You have requested metadata that does not exist."}]}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	s.mu.Lock()
	auth := s.auth
	s.mu.Unlock()
	if auth == nil {
		http.NotFound(w, r)
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != auth.user || pass != auth.pass {
		http.Error(w, `{"details":"incorrect username or password"}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": auth.token, "expires_in": auth.expiresIn})
}

// splitPath parses /v2/<gun>/_trust/tuf/<role>.json.
func splitPath(p string) (gun, role string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	gun, file, ok := strings.Cut(rest, "/_trust/tuf/")
	if !ok || gun == "" {
		return "", "", false
	}
	role, ok = strings.CutSuffix(file, ".json")
	return gun, role, ok && role != ""
}
