package dct

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	harness "github.com/trustgate-dev/trustgate/test/harness/dct"
)

// downDeadline bounds how long a deny may take when the server is down:
// a refused connection must not wait for any timeout.
const downDeadline = 2 * time.Second

// TestNotaryDownAndRestart kills notary-server under a live verifier:
// Verify must deny quickly with the connection failure as the reason, and
// after the server restarts (and its data is back) the same verifier must
// admit again, without being rebuilt.
func TestNotaryDownAndRestart(t *testing.T) {
	t.Parallel()
	b := env(t)
	// A server of its own: this test stops it.
	srv := harness.NewNotaryServer(t, harness.NotaryOptions{ECDSAServerKeys: true})
	sg := harness.NewSigner(t, srv)
	path := unique("restart/app")
	gun := b.reg.Repo(path)
	img := push(t, b.reg, path, "v1")
	initAndSign(t, sg, gun, "v1", img)
	rootKey := writeRootKey(t, sg, gun)
	cfg := config{Server: srv.URL(), CAFile: srv.CAFile(), RootKeys: []string{rootKey}}
	v := newFreshVerifier(t, cfg)
	res, err := verifyRef(t, v, img.ref)
	check(t, img.ref, res, err, outcome{digest: img.digest, signers: []string{"targets"}})

	backup, err := sg.Backup(gun)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()

	down := outcome{err: verify.ErrUnavailable, msg: "connection refused"}
	for _, tc := range []struct {
		name string
		v    verify.Verifier
	}{
		{"verifier that saw the repository", v},
		{"new verifier", newFreshVerifier(t, cfg)},
		{"new verifier with default freshness", newVerifier(t, cfg)},
	} {
		t.Run("down/"+tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := verifyRef(t, tc.v, img.ref)
			if el := time.Since(start); el > downDeadline {
				t.Errorf("Verify took %s with the server down, want < %s", el, downDeadline)
			}
			check(t, img.ref, res, err, down)
		})
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Memory storage came back empty: still a deny, now a definite one.
	res, err = verifyRef(t, v, img.ref)
	check(t, img.ref, res, err, outcome{err: verify.ErrUntrusted, msg: gun})

	if err := sg.Restore(backup); err != nil {
		t.Fatal(err)
	}
	res, err = verifyRef(t, v, img.ref)
	check(t, img.ref, res, err, outcome{digest: img.digest, signers: []string{"targets"}})
}

// TestSlowNotary puts a SlowProxy between the verifier and the notary
// server: a slow or silent server must produce a "timed out" deny within
// the caller's deadline (or the per-request timeout), never a hang.
func TestSlowNotary(t *testing.T) {
	t.Parallel()
	b := env(t)
	path := unique("slow/app")
	_, rootKey := initRepo(t, b, path)
	img := pushSigned(t, b, path, "v1")

	tests := []struct {
		name       string
		latency    time.Duration
		blackhole  bool
		ctxTimeout time.Duration
		reqTimeout time.Duration
		maxElapsed time.Duration
		want       outcome
	}{
		{name: "slower than the caller's deadline", latency: 3 * time.Second, ctxTimeout: 400 * time.Millisecond,
			reqTimeout: 5 * time.Second, maxElapsed: 1500 * time.Millisecond,
			want: outcome{err: verify.ErrUnavailable, msg: "timed out"}},
		{name: "accepts and never answers", blackhole: true, ctxTimeout: 400 * time.Millisecond,
			reqTimeout: 5 * time.Second, maxElapsed: 1500 * time.Millisecond,
			want: outcome{err: verify.ErrUnavailable, msg: "timed out"}},
		{name: "slower than the request timeout", latency: 3 * time.Second, ctxTimeout: 10 * time.Second,
			reqTimeout: 300 * time.Millisecond, maxElapsed: 2 * time.Second,
			want: outcome{err: verify.ErrUnavailable, msg: "timed out"}},
		{name: "slow but within the deadline", latency: 20 * time.Millisecond, ctxTimeout: 10 * time.Second,
			reqTimeout: 5 * time.Second, maxElapsed: 5 * time.Second,
			want: outcome{digest: img.digest, signers: []string{"targets"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := harness.NewSlowProxy(t, b.srv.Addr())
			p.SetLatency(tc.latency)
			p.SetBlackhole(tc.blackhole)
			cfg := config{Server: p.URL(), CAFile: b.srv.CAFile(), RootKeys: []string{rootKey}}
			v := newTuned(t, cfg, verify.Deps{RequestTimeout: tc.reqTimeout}, notaryv1.WithFreshness(0))
			start := time.Now()
			res, err := verifyWithin(t, v, img.ref, tc.ctxTimeout)
			if el := time.Since(start); el > tc.maxElapsed {
				t.Errorf("Verify took %s, want < %s", el, tc.maxElapsed)
			}
			check(t, img.ref, res, err, tc.want)
			if p.Accepted() == 0 {
				t.Error("no connection went through the proxy")
			}
		})
	}
}

// TestServerKeyTypes verifies against both kinds of server keys: ed25519
// from notary-server's local trust service and ECDSA from notary-signer.
func TestServerKeyTypes(t *testing.T) {
	t.Parallel()
	b := env(t)
	for _, tc := range []struct {
		name  string
		ecdsa bool
	}{
		{"ed25519 local trust service", false},
		{"ecdsa notary-signer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := harness.NewNotaryServer(t, harness.NotaryOptions{ECDSAServerKeys: tc.ecdsa})
			sg := harness.NewSigner(t, srv)
			path := unique("keytypes/ed25519")
			if tc.ecdsa {
				path = unique("keytypes/ecdsa")
			}
			gun := b.reg.Repo(path)
			img := push(t, b.reg, path, "v1")
			if err := sg.Init(gun); err != nil {
				t.Fatal(err)
			}
			if err := sg.AddSigner(gun, "ci"); err != nil {
				t.Fatal(err)
			}
			if err := sg.Sign(gun, "v1", img.digest, img.size, "targets/releases", "targets/ci"); err != nil {
				t.Fatal(err)
			}
			rootKey := writeRootKey(t, sg, gun)
			v := newVerifier(t, config{Server: srv.URL(), CAFile: srv.CAFile(), RootKeys: []string{rootKey}})
			res, err := verifyRef(t, v, img.ref)
			check(t, img.ref, res, err, outcome{digest: img.digest, signers: []string{"targets/releases"}})
		})
	}
}

// TestRequestCounts counts the requests that reach notary-server: a cold
// lookup fetches each role once, a warm one within the freshness window
// fetches nothing, and revalidation without freshness fetches only the
// timestamp when nothing changed.
func TestRequestCounts(t *testing.T) {
	t.Parallel()
	b := env(t)
	path := unique("counts/app")
	_, rootKey := initRepo(t, b, path)
	v1 := pushSigned(t, b, path, "v1")
	v2 := pushSigned(t, b, path, "v2")

	rc := harness.NewRequestCounter(t, b.srv)
	cfg := config{Server: rc.URL(), CAFile: b.srv.CAFile(), RootKeys: []string{rootKey}}
	prefix := "/v2/" + b.reg.Repo(path) + "/_trust/tuf/"

	t.Run("default freshness", func(t *testing.T) {
		rc.Reset()
		v := newVerifier(t, cfg)
		res, err := verifyRef(t, v, v1.ref)
		check(t, v1.ref, res, err, outcome{digest: v1.digest})
		paths := rc.Paths()
		for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
			if paths[prefix+role+".json"] != 1 {
				t.Errorf("cold Verify fetched %s.json %d times, want 1 (all: %v)", role, paths[prefix+role+".json"], paths)
			}
		}
		cold := rc.Count()
		res, err = verifyRef(t, v, v1.ref)
		check(t, v1.ref, res, err, outcome{digest: v1.digest})
		res, err = verifyRef(t, v, v2.ref)
		check(t, v2.ref, res, err, outcome{digest: v2.digest})
		if got := rc.Count() - cold; got != 0 {
			t.Errorf("warm Verify of the same repository sent %d requests, want 0 (paths %v)", got, rc.Paths())
		}
	})

	t.Run("no freshness window", func(t *testing.T) {
		rc.Reset()
		v := newFreshVerifier(t, cfg)
		res, err := verifyRef(t, v, v1.ref)
		check(t, v1.ref, res, err, outcome{digest: v1.digest})
		rc.Reset()
		res, err = verifyRef(t, v, v2.ref)
		check(t, v2.ref, res, err, outcome{digest: v2.digest})
		if got, ts := rc.Count(), rc.Paths()[prefix+"timestamp.json"]; got != 1 || ts != 1 {
			t.Errorf("revalidating Verify sent %d requests (%v), want only timestamp.json", got, rc.Paths())
		}
	})

	t.Run("concurrent cold lookups share one fetch", func(t *testing.T) {
		rc.Reset()
		v := newVerifier(t, cfg)
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				img := v1
				if i%2 == 1 {
					img = v2
				}
				res, err := verifyRef(t, v, img.ref)
				if err == nil && res.Digest != img.digest {
					err = fmt.Errorf("Verify(%s).Digest = %s, want %s", img.ref, res.Digest, img.digest)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if got := rc.Paths()[prefix+"root.json"]; got != 1 {
			t.Errorf("%d concurrent cold Verify calls fetched root.json %d times, want 1 (paths %v)", n, got, rc.Paths())
		}
		if got := rc.Paths()[prefix+"timestamp.json"]; got != 1 {
			t.Errorf("%d concurrent cold Verify calls fetched timestamp.json %d times, want 1 (paths %v)", n, got, rc.Paths())
		}
	})
}
