// Package acr is a stand-in for Azure Container Registry's tag API, the one
// call the acrSignedTag verifier makes (GET /acr/v1/<repo>/_tags/<tag>),
// with knobs for what it answers: signed or not, which digest, a server
// error, a delay. It speaks plain HTTP (the verifier's insecureHTTP), so
// its host can stand for the registry in image references.
package acr

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Tag is what the stand-in says about one tag.
type Tag struct {
	Digest string
	Signed bool
}

// StandIn is a running stand-in server.
type StandIn struct {
	srv      *httptest.Server
	mu       sync.Mutex
	tags     map[string]Tag  // "repo:tag"
	down     map[string]bool // repo answering 503
	delay    atomic.Int64    // per answer, nanoseconds
	requests atomic.Int64
}

// Start starts a stand-in on a loopback port; Close stops it.
func Start() *StandIn {
	s := &StandIn{tags: map[string]Tag{}, down: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Host is host:port, the "registry" of the image references it answers for.
func (s *StandIn) Host() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// Close stops the server.
func (s *StandIn) Close() { s.srv.Close() }

// SetTag sets the answer for repo:tag (repo without the host).
func (s *StandIn) SetTag(repo, tag string, t Tag) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tags[repo+":"+tag] = t
}

// SetDown makes every tag of repo answer 503 Service Unavailable.
func (s *StandIn) SetDown(repo string, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down[repo] = down
}

// SetLatency delays every answer by d.
func (s *StandIn) SetLatency(d time.Duration) { s.delay.Store(int64(d)) }

// Requests counts the tag lookups served.
func (s *StandIn) Requests() int64 { return s.requests.Load() }

func (s *StandIn) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/acr/v1/")
	repo, tag, found := strings.Cut(rest, "/_tags/")
	if !ok || !found || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	s.requests.Add(1)
	if d := time.Duration(s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	s.mu.Lock()
	t, known := s.tags[repo+":"+tag]
	down := s.down[repo]
	s.mu.Unlock()
	switch {
	case down:
		http.Error(w, `{"errors":[{"code":"UNAVAILABLE"}]}`, http.StatusServiceUnavailable)
		return
	case !known:
		http.Error(w, `{"errors":[{"code":"TAG_UNKNOWN"}]}`, http.StatusNotFound)
		return
	}
	var body struct {
		Tag struct {
			Name   string `json:"name"`
			Digest string `json:"digest"`
			Signed bool   `json:"signed"`
		} `json:"tag"`
	}
	body.Tag.Name, body.Tag.Digest, body.Tag.Signed = tag, t.Digest, t.Signed
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}
