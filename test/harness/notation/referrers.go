// Package notation is the test harness for Notation (Notary Project)
// signatures: a CA and leaf certificates made in the test, a CRL server,
// signing with notation-go's own signer (the code `notation sign` runs), and
// a registry that serves the OCI referrers API.
package notation

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReferrersRegistry is go-containerregistry's in-memory registry (pkg/registry)
// with the OCI 1.1 referrers API in front, as Notation needs it:
//   - a manifest PUT that carries a subject is answered with the OCI-Subject
//     header, so notation-go (oras) does not also write the tag index;
//   - the referrers list is indexed when a manifest with a subject is pushed,
//     as registries do, with artifactType taken from the manifest's own
//     artifactType field (ggcr's own referrers handler takes it from
//     config.mediaType, which for Notation signatures is the empty config,
//     so a client filtering on Notation's artifact type would find nothing,
//     and it parses every manifest of the repository on each call) and the
//     artifactType query filter applied, as OCI-Filters-Applied says.
//
// It counts the requests it serves; it can demand basic credentials or the
// registry token flow.
type ReferrersRegistry struct {
	srv          *httptest.Server
	inner        http.Handler
	referrersAPI bool
	requests     atomic.Int64
	user, pass   atomic.Pointer[string]
	bearer       atomic.Bool
	tokens       sync.Map // token → repository it grants pull on
	tokenSerial  atomic.Int64
	mu           sync.Mutex
	index        map[string][]ocispec.Descriptor // repo@subject → referrers
}

// RequireBearerToken makes the registry speak the registry token flow, as
// ACR, Docker Hub and most hosted registries do: a request without a valid
// token for its repository gets 401 with a Bearer challenge naming the
// realm (/token on this server), which issues pull tokens to anyone.
func (r *ReferrersRegistry) RequireBearerToken() { r.bearer.Store(true) }

// RequireBasicAuth makes every request need these basic credentials (401
// with a Basic challenge otherwise), as a private registry does.
func (r *ReferrersRegistry) RequireBasicAuth(user, pass string) {
	r.user.Store(&user)
	r.pass.Store(&pass)
}

// StartReferrersRegistry serves the registry on 127.0.0.1 over plain HTTP.
func StartReferrersRegistry() *ReferrersRegistry { return start(true) }

// StartTagSchemaRegistry serves the same registry without the referrers
// API (404, as Debian's docker-registry 2.8 answers): signatures live in the
// sha256-<hex> tag index.
func StartTagSchemaRegistry() *ReferrersRegistry { return start(false) }

func start(referrers bool) *ReferrersRegistry {
	r := &ReferrersRegistry{
		referrersAPI: referrers,
		inner:        registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0))),
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

// NewTagSchemaRegistry is StartTagSchemaRegistry for tests, closed at cleanup.
func NewTagSchemaRegistry(t testing.TB) *ReferrersRegistry {
	t.Helper()
	r := StartTagSchemaRegistry()
	t.Cleanup(r.Close)
	return r
}

// NewReferrersRegistry is StartReferrersRegistry for tests, closed at cleanup.
func NewReferrersRegistry(t testing.TB) *ReferrersRegistry {
	t.Helper()
	r := StartReferrersRegistry()
	t.Cleanup(r.Close)
	return r
}

// Host is 127.0.0.1:PORT.
func (r *ReferrersRegistry) Host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// Requests is the number of requests served so far.
func (r *ReferrersRegistry) Requests() int64 { return r.requests.Load() }

// Close stops the server.
func (r *ReferrersRegistry) Close() { r.srv.Close() }

func (r *ReferrersRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	if u := r.user.Load(); u != nil {
		user, pass, ok := req.BasicAuth()
		if !ok || user != *u || pass != *r.pass.Load() {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	n := len(parts)
	if r.bearer.Load() {
		if req.URL.Path == "/token" {
			r.issueToken(w, req)
			return
		}
		if !r.authorized(req, parts) {
			// The realm is on the host the client called (a proxy in front
			// of the registry stays in the path of token requests too).
			return401(w, req, "http://"+req.Host, parts)
			return
		}
	}
	switch {
	case !r.referrersAPI:
		r.inner.ServeHTTP(w, req)
	case req.Method == http.MethodGet && n >= 4 && parts[0] == "v2" && parts[n-2] == "referrers":
		r.referrers(w, req, strings.Join(parts[1:n-2], "/"), parts[n-1])
	case req.Method == http.MethodPut && n >= 4 && parts[0] == "v2" && parts[n-2] == "manifests":
		r.putManifest(w, req, strings.Join(parts[1:n-2], "/"))
	default:
		r.inner.ServeHTTP(w, req)
	}
}

// repoOf is the repository of a /v2/<name>/(manifests|blobs|referrers|tags)/… path.
func repoOf(parts []string) string {
	for i := len(parts) - 2; i >= 2; i-- {
		switch parts[i] {
		case "manifests", "blobs", "referrers", "tags":
			return strings.Join(parts[1:i], "/")
		}
	}
	return ""
}

func (r *ReferrersRegistry) authorized(req *http.Request, parts []string) bool {
	tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	repo, ok := r.tokens.Load(tok)
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		return ok // the ping: any token
	}
	return ok && repo == repoOf(parts)
}

// return401 challenges as distribution does: the scope a read needs is
// pull, a write pull,push.
func return401(w http.ResponseWriter, req *http.Request, base string, parts []string) {
	challenge := fmt.Sprintf(`Bearer realm="%s/token",service="test-registry"`, base)
	if repo := repoOf(parts); repo != "" {
		actions := "pull,push"
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			actions = "pull"
		}
		challenge += fmt.Sprintf(`,scope="repository:%s:%s"`, repo, actions)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
}

func (r *ReferrersRegistry) issueToken(w http.ResponseWriter, req *http.Request) {
	var repo string
	for _, scope := range req.URL.Query()["scope"] {
		// repository:<name>:<actions>
		if f := strings.Split(scope, ":"); len(f) == 3 && f[0] == "repository" {
			repo = f[1]
		}
	}
	tok := fmt.Sprintf("tok-%d", r.tokenSerial.Add(1))
	r.tokens.Store(tok, repo)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": 300})
}

func (r *ReferrersRegistry) putManifest(w http.ResponseWriter, req *http.Request, repo string) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	var m struct {
		MediaType    string              `json:"mediaType"`
		ArtifactType string              `json:"artifactType"`
		Subject      *ocispec.Descriptor `json:"subject"`
		Annotations  map[string]string   `json:"annotations"`
		Config       struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
	}
	_ = json.Unmarshal(body, &m)
	rec := httptest.NewRecorder()
	r.inner.ServeHTTP(rec, req)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	if m.Subject != nil && rec.Code == http.StatusCreated {
		w.Header().Set("OCI-Subject", m.Subject.Digest.String())
		// Index the referrer as a registry does when the manifest is
		// pushed (ggcr scans every manifest of the repository on each
		// referrers call, a cost that would grow with the test).
		at := m.ArtifactType
		if at == "" {
			at = m.Config.MediaType
		}
		mt := req.Header.Get("Content-Type")
		if mt == "" {
			mt = m.MediaType
		}
		d := ocispec.Descriptor{MediaType: mt, ArtifactType: at, Digest: digest.FromBytes(body), Size: int64(len(body)), Annotations: m.Annotations}
		r.mu.Lock()
		if r.index == nil {
			r.index = map[string][]ocispec.Descriptor{}
		}
		key := repo + "@" + m.Subject.Digest.String()
		r.index[key] = append(r.index[key], d)
		r.mu.Unlock()
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func (r *ReferrersRegistry) referrers(w http.ResponseWriter, req *http.Request, repo, subject string) {
	filter := req.URL.Query().Get("artifactType")
	if _, err := digest.Parse(subject); err != nil {
		http.Error(w, `{"errors":[{"code":"DIGEST_INVALID","message":"bad digest"}]}`, http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	all := append([]ocispec.Descriptor(nil), r.index[repo+"@"+subject]...)
	r.mu.Unlock()
	kept := []ocispec.Descriptor{}
	for _, d := range all {
		if filter == "" || d.ArtifactType == filter {
			kept = append(kept, d)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Digest < kept[j].Digest })
	out, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: kept})
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// CountingProxy is a reverse proxy on 127.0.0.1 in front of a registry
// (the Debian docker-registry), counting the requests that pass.
type CountingProxy struct {
	srv      *httptest.Server
	requests atomic.Int64
}

// StartCountingProxy proxies to upstream ("http://host:port").
func StartCountingProxy(upstream string) (*CountingProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	p := &CountingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p.requests.Add(1)
		rp.ServeHTTP(w, req)
	}))
	return p, nil
}

// Host is 127.0.0.1:PORT.
func (p *CountingProxy) Host() string { return strings.TrimPrefix(p.srv.URL, "http://") }

// Requests is the number of requests forwarded so far.
func (p *CountingProxy) Requests() int64 { return p.requests.Load() }

// Close stops the proxy.
func (p *CountingProxy) Close() { p.srv.Close() }
