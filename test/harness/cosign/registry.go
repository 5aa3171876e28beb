package cosign

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// NewReferrersRegistry starts an in-memory OCI registry (go-containerregistry
// pkg/registry) with a referrers API that works for cosign: the stock one
// takes a referrer's artifactType from its config media type (so a cosign
// bundle shows as application/vnd.oci.empty.v1+json) and ignores the
// artifactType filter; this wrapper fills artifactType from the manifest
// itself and applies the filter. Returns host:port.
func NewReferrersRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(ReferrersHandler())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// ReferrersHandler is the handler of NewReferrersRegistry, to wrap.
func ReferrersHandler() http.Handler {
	return referrersFix(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
}

func referrersFix(inner http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := strings.Index(r.URL.Path, "/referrers/")
		if r.Method != http.MethodGet || i < 0 {
			inner.ServeHTTP(w, r)
			return
		}
		// The inner registry filters on its wrong artifactType: ask for all.
		want := r.URL.Query().Get("artifactType")
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = ""
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, r2)
		if rec.Code != http.StatusOK {
			copyResponse(w, rec)
			return
		}
		var idx struct {
			SchemaVersion int              `json:"schemaVersion"`
			MediaType     string           `json:"mediaType"`
			Manifests     []map[string]any `json:"manifests"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &idx); err != nil {
			copyResponse(w, rec)
			return
		}
		repo := r.URL.Path[:i] // /v2/<repo>
		kept := []map[string]any{}
		for _, d := range idx.Manifests {
			dg, _ := d["digest"].(string)
			mreq := httptest.NewRequest(http.MethodGet, repo+"/manifests/"+dg, nil)
			mrec := httptest.NewRecorder()
			inner.ServeHTTP(mrec, mreq)
			var m struct {
				ArtifactType string            `json:"artifactType"`
				Annotations  map[string]string `json:"annotations"`
			}
			if json.Unmarshal(mrec.Body.Bytes(), &m) == nil && m.ArtifactType != "" {
				d["artifactType"] = m.ArtifactType
				if len(m.Annotations) > 0 {
					d["annotations"] = m.Annotations
				}
			}
			if want != "" && d["artifactType"] != want {
				continue
			}
			kept = append(kept, d)
		}
		idx.Manifests = kept
		b, _ := json.Marshal(idx)
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		if want != "" {
			w.Header().Set("OCI-Filters-Applied", "artifactType")
		}
		_, _ = w.Write(b)
	})
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = io.Copy(w, bytes.NewReader(rec.Body.Bytes()))
}

// Counter is a plain-HTTP reverse proxy on 127.0.0.1 that counts the
// requests it forwards to a registry.
type Counter struct {
	srv   *httptest.Server
	total atomic.Int64
	mu    sync.Mutex
	paths map[string]int64
}

// NewCounter proxies to upstream (http://host:port), closed at cleanup.
func NewCounter(t testing.TB, upstream string) *Counter {
	t.Helper()
	c, err := StartCounter(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartCounter is NewCounter without a test.
func StartCounter(upstream string) (*Counter, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	c := &Counter{paths: map[string]int64{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	// Enough idle upstream connections for clients that send requests in
	// parallel: the default two would make the proxy, not the client, open
	// new connections, and penalise parallel clients in benchmarks.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	rp.Transport = tr
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.total.Add(1)
		c.mu.Lock()
		c.paths[r.Method+" "+r.URL.Path]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	return c, nil
}

// Host is 127.0.0.1:PORT, to use as the registry of image references.
func (c *Counter) Host() string { u, _ := url.Parse(c.srv.URL); return u.Host }

// Count is the number of requests forwarded so far.
func (c *Counter) Count() int64 { return c.total.Load() }

// Paths counts requests per "METHOD /path".
func (c *Counter) Paths() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.paths))
	for k, v := range c.paths {
		out[k] = v
	}
	return out
}

// Reset zeroes the counts.
func (c *Counter) Reset() {
	c.total.Store(0)
	c.mu.Lock()
	c.paths = map[string]int64{}
	c.mu.Unlock()
}

// Close stops the proxy.
func (c *Counter) Close() { c.srv.Close() }
