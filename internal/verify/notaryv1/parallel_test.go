package notaryv1

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// warmGUN is a second repository a test verifies first, so the verifier has
// talked to the server (learnt it answers without a challenge, opened its
// connection) before the cold verification under test, as a running
// webhook has.
const warmGUN = "registry.example.com/demo/warmup"

// twoRepos publishes warmGUN:v1 in targets and testGUN:v1 in
// targets/releases, and returns a config pinning both root keys.
func twoRepos(t *testing.T, srv *notaryfake.Server) (*notaryfake.Repo, Config) {
	t.Helper()
	warm := srv.NewRepo(warmGUN)
	warm.AddTarget("targets", "v1", digestOf("warm"), 10)
	warm.Publish()
	repo := srv.NewRepo(testGUN)
	repo.AddDelegation("targets/releases", "ecdsa", "")
	repo.AddTarget("targets/releases", "v1", digestOf("a"), 10)
	repo.Publish()
	return repo, Config{RootKeys: []string{warm.RootKey().PublicPEM(), repo.RootKey().PublicPEM()}}
}

// TestColdVerificationRoundTrips checks that a cold verification sends its
// five requests in two sequential round trips: root.json with
// timestamp.json and snapshot.json, then targets.json with
// targets/releases.json. It counts round trips instead of timing them (a
// wall-clock bound failed under -race on a loaded 2-core machine, issue 9
// item 11): a gate in front of the server holds every request until the
// test releases the current wave, so a wave is exactly the set of requests
// the verifier had in flight at once. Sequential fetching never gets a
// second request into the first wave; a third round trip shows up as a
// wave the test did not expect.
func TestColdVerificationRoundTrips(t *testing.T) {
	srv := notaryfake.New(t)
	_, cfg := twoRepos(t, srv)
	g := newGate(t, srv)
	cfg.Server, cfg.CAFile = g.url, g.caFile
	v, err := New("test", cfg, verify.Deps{RequestTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyRef(t, v, warmGUN+":v1"); err != nil {
		t.Fatalf("warm-up Verify: %v", err)
	}
	srv.ResetCounts()
	g.hold(true)
	done := make(chan verifyResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := v.Verify(ctx, verify.Subject{Ref: imageref.MustParse(testGUN + ":v1")})
		done <- verifyResult{res, err}
	}()
	waves := [][]string{
		{"root", "snapshot", "timestamp"},
		{"targets", "targets/releases"},
	}
	for i, want := range waves {
		got := g.wave(len(want), done)
		if !slices.Equal(got, want) {
			g.hold(false)
			t.Fatalf("round trip %d fetched %v together, want %v", i+1, got, want)
		}
	}
	// Whatever comes after the expected waves would be a further round
	// trip: let it through and count it.
	g.hold(false)
	r := <-done
	if r.err != nil {
		t.Fatalf("cold Verify: %v", r.err)
	}
	if r.res.Digest != digestOf("a") || len(r.res.Signers) != 1 || r.res.Signers[0] != roleReleases {
		t.Errorf("cold Verify = %s by %v, want %s by %s", r.res.Digest, r.res.Signers, digestOf("a"), roleReleases)
	}
	if got := srv.Requests(); got != 5 {
		t.Errorf("cold verification sent %d requests, want 5 (in the 2 round trips above)", got)
	}
	if got := g.released(); got != 5 {
		t.Errorf("%d requests passed the gate, want 5", got)
	}
}

type verifyResult struct {
	res *verify.Result
	err error
}

// gate is a TLS reverse proxy in front of a notaryfake server that can hold
// requests in waves.
type gate struct {
	t           *testing.T
	url, caFile string

	mu       sync.Mutex
	holding  bool
	held     []string      // roles of the requests waiting in this wave
	open     chan struct{} // closed to let the current wave through
	arrived  chan struct{} // a request joined the wave
	passed   int
	upstream http.Handler
}

func newGate(t *testing.T, srv *notaryfake.Server) *gate {
	upstream, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool(), MinVersion: tls.VersionTLS12}}
	g := &gate{t: t, open: make(chan struct{}), arrived: make(chan struct{}, 64), upstream: rp}
	front := httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	// Handshakes cut short by Close at the end are not the test's business.
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.StartTLS()
	t.Cleanup(front.Close)
	t.Cleanup(func() { g.hold(false) }) // never leave a handler blocked
	g.url = front.URL
	g.caFile = filepath.Join(t.TempDir(), "gate-ca.crt")
	if err := os.WriteFile(g.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *gate) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	if g.holding {
		_, role, _ := strings.Cut(r.URL.Path, "/_trust/tuf/")
		g.held = append(g.held, strings.TrimSuffix(role, ".json"))
		wave := g.open
		g.mu.Unlock()
		g.arrived <- struct{}{}
		select {
		case <-wave:
		case <-r.Context().Done():
			return
		}
		g.mu.Lock()
	}
	g.passed++
	g.mu.Unlock()
	g.upstream.ServeHTTP(w, r)
}

// hold starts holding requests (and counting them from zero), or stops and
// lets everything waiting through.
func (g *gate) hold(on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holding = on
	if on {
		g.passed = 0
	} else {
		close(g.open)
		g.open = make(chan struct{})
		g.held = nil
	}
}

// wave waits until n requests are held (failing if the verification ends
// or 30 s pass first: a machine that slow is broken, not loaded),
// lets them through together, and returns their roles, sorted.
func (g *gate) wave(n int, done <-chan verifyResult) []string {
	g.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		g.mu.Lock()
		if len(g.held) >= n {
			got := slices.Clone(g.held)
			g.held = nil
			close(g.open)
			g.open = make(chan struct{})
			g.mu.Unlock()
			slices.Sort(got)
			return got
		}
		g.mu.Unlock()
		select {
		case <-g.arrived:
		case r := <-done:
			g.mu.Lock()
			held := slices.Clone(g.held)
			g.mu.Unlock()
			g.t.Fatalf("verification ended (%v) with %v in flight, want %d requests together", r.err, held, n)
		case <-timeout:
			g.mu.Lock()
			held := slices.Clone(g.held)
			g.mu.Unlock()
			g.hold(false)
			g.t.Fatalf("only %v in flight together, want %d requests", held, n)
		}
	}
}

func (g *gate) released() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.passed
}

// countingTransport is a transport whose dials are counted.
func countingTransport(dials *atomic.Int64) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	}
}

// forget drops what v holds about gun, so its next lookup is cold again
// while the connection pool stays.
func forget(v *Verifier, gun string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dropLocked(gun)
}

// TestConnectionReuse checks what parallel fetches do to the connection
// pool over HTTP/1.1 (the fake server does not speak HTTP/2): the first
// verification of the process keeps to one connection; the next ones open
// about one per request of their widest round (root, timestamp and
// snapshot: three), which the pool then keeps, so further cold
// verifications open none. One extra dial is tolerated per step: Go's
// transport dials when a request comes just before a connection is back
// in the pool, and keeps the result; under -race on a loaded machine that
// race can happen on each round of a step, so the bounds allow one per
// round. Without reuse the steps would open 30 and 60 connections.
func TestConnectionReuse(t *testing.T) {
	srv := notaryfake.New(t)
	_, cfg := twoRepos(t, srv)
	cfg.Server, cfg.CAFile = srv.URL(), srv.CAFile(t)
	var dials atomic.Int64
	v, err := New("test", cfg, verify.Deps{RequestTimeout: 2 * time.Second, Transport: countingTransport(&dials)})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		ref      string
		repeat   int
		maxDials int64 // connections opened during the step
		requests int   // per verification
	}{
		{name: "first verification of the process", ref: warmGUN + ":v1", repeat: 1, maxDials: 1, requests: 4},
		{name: "parallel cold verifications", ref: testGUN + ":v1", repeat: 10, maxDials: 3 + 2, requests: 5},
		{name: "more parallel cold verifications", ref: testGUN + ":v1", repeat: 20, maxDials: 2, requests: 5},
	}
	for _, st := range steps {
		before := dials.Load()
		for i := 0; i < st.repeat; i++ {
			forget(v, testGUN)
			srv.ResetCounts()
			if _, err := verifyRef(t, v, st.ref); err != nil {
				t.Fatalf("%s: Verify(%s): %v", st.name, st.ref, err)
			}
			if got := srv.Requests(); got != st.requests {
				t.Errorf("%s: %d requests, want %d", st.name, got, st.requests)
			}
		}
		if got := dials.Load() - before; got > st.maxDials {
			t.Errorf("%s: %d connections opened, want at most %d", st.name, got, st.maxDials)
		}
	}
}

// TestParallelFetchKeepsTUFOrder checks that files downloaded together are
// still verified in TUF order: the failure reported is that of the first
// file in the chain, whatever the files fetched alongside it hold.
func TestParallelFetchKeepsTUFOrder(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(repo *notaryfake.Repo, cfg *Config)
		wantErr []string
	}{
		{
			name: "unpinned root with a garbage timestamp",
			setup: func(repo *notaryfake.Repo, cfg *Config) {
				cfg.RootKeys = cfg.RootKeys[:1] // only warmGUN's key
				repo.Serve("timestamp", []byte("not json"))
			},
			wantErr: []string{"root of " + testGUN + " is not signed by a key in rootKeys"},
		},
		{
			name: "expired targets with a garbage delegation",
			setup: func(repo *notaryfake.Repo, _ *Config) {
				repo.SetExpires("targets", time.Now().Add(-time.Hour))
				repo.Publish()
				repo.Serve("targets/releases", []byte("not json"))
			},
			wantErr: []string{"targets of " + testGUN + " expired"},
		},
		{
			name: "snapshot not matching the timestamp",
			setup: func(repo *notaryfake.Repo, _ *Config) {
				repo.Serve("snapshot", []byte(`{"signed":{},"signatures":[]}`))
			},
			wantErr: []string{"snapshot of " + testGUN + " does not match its signed hash"},
		},
		{
			name: "delegation not matching the snapshot",
			setup: func(repo *notaryfake.Repo, _ *Config) {
				repo.Serve("targets/releases", []byte(`{"signed":{},"signatures":[]}`))
			},
			wantErr: []string{"targets/releases of " + testGUN + " does not match its signed hash"},
		},
		{
			name: "delegation listed but missing",
			setup: func(repo *notaryfake.Repo, _ *Config) {
				repo.Delete("targets/releases")
			},
			wantErr: []string{"targets/releases of " + testGUN + " is listed in the snapshot but missing"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo, cfg := twoRepos(t, srv)
			tc.setup(repo, &cfg)
			v := newTestVerifier(t, srv, cfg)
			if _, err := verifyRef(t, v, warmGUN+":v1"); err != nil {
				t.Fatalf("warm-up Verify: %v", err)
			}
			_, err := verifyRef(t, v, testGUN+":v1")
			wantErr(t, err, verify.ErrUntrusted, tc.wantErr...)
		})
	}
}

// TestHTTP2SharesOneConnection puts an HTTP/2 proxy in front of the fake
// server (which speaks HTTP/1.1 only), as the real notary server is often
// reached: parallel requests then share one connection, from the first
// verification on.
func TestHTTP2SharesOneConnection(t *testing.T) {
	srv := notaryfake.New(t)
	_, cfg := twoRepos(t, srv)
	upstream, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CertPool(), MinVersion: tls.VersionTLS12}}
	front := httptest.NewUnstartedServer(rp)
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	caFile := filepath.Join(t.TempDir(), "front-ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Server, cfg.CAFile = front.URL, caFile
	var dials atomic.Int64
	base := countingTransport(&dials)
	base.ForceAttemptHTTP2 = true
	v, err := New("test", cfg, verify.Deps{RequestTimeout: 2 * time.Second, Transport: base})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{warmGUN + ":v1", testGUN + ":v1"} {
		srv.ResetCounts()
		if _, err := verifyRef(t, v, ref); err != nil {
			t.Fatalf("Verify(%s): %v", ref, err)
		}
		if got, want := srv.Requests(), map[bool]int{true: 4, false: 5}[ref == warmGUN+":v1"]; got != want {
			t.Errorf("%s: %d requests, want %d", ref, got, want)
		}
	}
	if !v.fetch.seen.h2.Load() {
		t.Error("answers did not come over HTTP/2")
	}
	if got := dials.Load(); got != 1 {
		t.Errorf("%d connections opened, want 1 (HTTP/2 multiplexes the parallel requests)", got)
	}
}

// TestChallengingServerStaysSequentialAtFirst checks that against a server
// that asks for a token (one per repository), the first requests for a new
// repository are not sent together: each would draw its own 401 and token
// fetch. Once the token is cached, targets and its delegation still travel
// together.
func TestChallengingServerStaysSequentialAtFirst(t *testing.T) {
	srv := notaryfake.New(t, notaryfake.WithTokenAuth("alice", "s3cret"))
	_, cfg := twoRepos(t, srv)
	cfg.Credentials = &credentials.Config{UsernameEnv: "NOTARY_USER", PasswordEnv: "NOTARY_PASS"}
	env := map[string]string{"NOTARY_USER": "alice", "NOTARY_PASS": "s3cret"}
	v := newTestVerifier(t, srv, cfg, WithGetenv(func(k string) string { return env[k] }))
	if _, err := verifyRef(t, v, warmGUN+":v1"); err != nil {
		t.Fatalf("warm-up Verify: %v", err)
	}
	srv.ResetCounts()
	if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
		t.Fatalf("cold Verify: %v", err)
	}
	if got := srv.TokenRequests(); got != 1 {
		t.Errorf("%d token requests for a new repository, want 1", got)
	}
	// root.json twice (401, then with the token), then the other four.
	if got := srv.Requests(); got != 6 {
		t.Errorf("%d metadata requests, want 6", got)
	}
}

// TestReusable checks the rule deciding, before any download, which
// targets files a refresh may keep: the same file under an unchanged chain
// of parents. It must agree with loadTargets, or a file would be fetched
// twice or, worse, kept under changed keys.
func TestReusable(t *testing.T) {
	meta := func(s string) tuf.FileMeta { return tuf.MetaOf([]byte(s)) }
	old := &trustData{roles: map[string]*roleData{
		"targets":          {meta: meta("t1")},
		"targets/a":        {meta: meta("a1")},
		"targets/a/b":      {meta: meta("b1")},
		"targets/releases": {meta: meta("r1")},
	}}
	snap := func(files map[string]string) *tuf.Snapshot {
		s := &tuf.Snapshot{Meta: map[string]tuf.FileMeta{}}
		for name, body := range files {
			s.Meta[name] = meta(body)
		}
		return s
	}
	unchanged := map[string]string{"targets": "t1", "targets/a": "a1", "targets/a/b": "b1", "targets/releases": "r1"}
	with := func(name, body string) map[string]string {
		m := maps.Clone(unchanged)
		m[name] = body
		return m
	}
	tests := []struct {
		name  string
		old   *trustData
		files map[string]string
		role  string
		want  bool
	}{
		{"nothing held", nil, unchanged, "targets", false},
		{"targets unchanged", old, unchanged, "targets", true},
		{"delegation unchanged", old, unchanged, "targets/a/b", true},
		{"targets changed", old, with("targets", "t2"), "targets", false},
		{"parent changed, delegation the same", old, with("targets", "t2"), "targets/releases", false},
		{"parent delegation changed", old, with("targets/a", "a2"), "targets/a/b", false},
		{"sibling changed", old, with("targets/releases", "r2"), "targets/a/b", true},
		{"delegation changed", old, with("targets/releases", "r2"), "targets/releases", false},
		{"not held before", old, with("targets/ci", "c1"), "targets/ci", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := reusable(tc.old, snap(tc.files), tc.role); got != tc.want {
				t.Errorf("reusable(%s) = %v, want %v", tc.role, got, tc.want)
			}
		})
	}
}
