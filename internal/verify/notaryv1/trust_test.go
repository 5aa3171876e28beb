package notaryv1

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
)

// publicKeyPEM converts a certificate PEM into a bare public key PEM.
func publicKeyPEM(t *testing.T, certPEM string) string {
	t.Helper()
	block, _ := pem.Decode([]byte(certPEM))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"role": "root"}, Bytes: der}))
}

func TestRootPinning(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	other := notaryfake.GenerateKey("ecdsa-x509", testGUN)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "root-pub.pem"), []byte(publicKeyPEM(t, repo.RootKey().PublicPEM())), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		keys    []string
		baseDir string
		wantErr bool
	}{
		{"certificate PEM inline", []string{repo.RootKey().PublicPEM()}, "", false},
		{"public key PEM file relative to base dir", []string{"root-pub.pem"}, dir, false},
		{"one of several pins", []string{other.PublicPEM(), repo.RootKey().PublicPEM()}, "", false},
		{"wrong key", []string{other.PublicPEM()}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Server: srv.URL(), CAFile: srv.CAFile(t), RootKeys: tc.keys}
			v, err := New("test", cfg, verify.Deps{BaseDir: tc.baseDir, RequestTimeout: 2 * time.Second})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			_, err = verifyRef(t, v, testGUN+":v1")
			if tc.wantErr {
				wantErr(t, err, verify.ErrUntrusted, "root of "+testGUN+" is not signed by a key in rootKeys")
			} else if err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestTrustOnFirstUseAndRootRotation(t *testing.T) {
	tests := []struct {
		name        string
		tofu        bool
		signWithOld bool
		wantErr     []string // nil: the rotated root is accepted
	}{
		{name: "tofu, rotation signed by old root", tofu: true, signWithOld: true},
		{name: "tofu, rotation not signed by old root", tofu: true, wantErr: []string{"not signed by the trusted root"}},
		{name: "pinned, rotation to an unpinned key", signWithOld: true, wantErr: []string{"not signed by a key in rootKeys"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			repo.AddTarget("targets", "v1", digestOf("a"), 10)
			repo.Publish()
			cfg := Config{TrustOnFirstUse: tc.tofu}
			if !tc.tofu {
				cfg = pinned(repo)
			}
			v := newTestVerifier(t, srv, cfg, WithFreshness(0))
			if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			repo.RotateKey("root", "ecdsa-x509", tc.signWithOld)
			repo.AddTarget("targets", "v2", digestOf("b"), 10)
			repo.Publish()
			res, err := verifyRef(t, v, testGUN+":v2")
			if tc.wantErr != nil {
				wantErr(t, err, verify.ErrUntrusted, tc.wantErr...)
				// The trusted root stays: an old-root attacker cannot reset it.
				if _, err := verifyRef(t, v, testGUN+":v2"); err == nil {
					t.Fatal("second Verify after a refused rotation succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify after rotation: %v", err)
			}
			if res.Digest != digestOf("b") {
				t.Errorf("Digest = %s, want %s", res.Digest, digestOf("b"))
			}
		})
	}
}

func TestRootRotatedSeveralTimes(t *testing.T) {
	for _, tc := range []struct {
		name         string
		middleSigned bool // the intermediate root is signed by the first
		wantErr      bool
	}{
		{name: "chain of signed rotations", middleSigned: true},
		{name: "intermediate root not signed by its predecessor", middleSigned: false, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			repo.AddTarget("targets", "v1", digestOf("a"), 10)
			repo.Publish()
			v := newTestVerifier(t, srv, Config{TrustOnFirstUse: true}, WithFreshness(0))
			if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			repo.RotateKey("root", "ecdsa-x509", tc.middleSigned)
			repo.Publish()
			repo.RotateKey("root", "ecdsa-x509", true)
			repo.Publish()
			srv.ResetCounts()
			_, err := verifyRef(t, v, testGUN+":v1")
			if tc.wantErr {
				wantErr(t, err, verify.ErrUntrusted, "is not signed by the trusted root")
				return
			}
			if err != nil {
				t.Fatalf("Verify after two rotations: %v", err)
			}
			if got := srv.RequestsFor("/v2/" + testGUN + "/_trust/tuf/2.root.json"); got != 1 {
				t.Errorf("%d requests for the intermediate 2.root.json, want 1", got)
			}
		})
	}
}

func TestTrustedRootExpires(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.SetExpires("timestamp", time.Now().Add(20*365*24*time.Hour))
	repo.SetExpires("snapshot", time.Now().Add(20*365*24*time.Hour))
	repo.SetExpires("targets", time.Now().Add(20*365*24*time.Hour))
	repo.Publish()
	clk := newClock()
	v := newTestVerifier(t, srv, Config{TrustOnFirstUse: true}, WithClock(clk.Now), WithFreshness(0))
	res, err := verifyRef(t, v, testGUN+":v1")
	if err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	if !res.Expires.Before(time.Now().Add(11 * 365 * 24 * time.Hour)) {
		t.Errorf("Expires = %v, want the root's expiry (10 years) as the earliest", res.Expires)
	}
	clk.Advance(11 * 365 * 24 * time.Hour)
	_, err = verifyRef(t, v, testGUN+":v1")
	wantErr(t, err, verify.ErrUntrusted, "root of "+testGUN+" expired")
}

func TestTimestampKeyRotation(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	v := newTestVerifier(t, srv, pinned(repo), WithFreshness(0))
	if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	// The server rotates its timestamp key: root changes, signed by the same root key.
	repo.RotateKey("timestamp", "ed25519", false)
	repo.Publish()
	if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
		t.Fatalf("Verify after timestamp key rotation: %v", err)
	}
}

func TestRollback(t *testing.T) {
	for _, role := range []string{"snapshot", "timestamp", "targets"} {
		t.Run(role, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			repo.AddTarget("targets", "v1", digestOf("a"), 10)
			repo.Publish()
			repo.AddTarget("targets", "v2", digestOf("b"), 10)
			repo.Publish() // every role is at version >= 2 now
			v := newTestVerifier(t, srv, pinned(repo), WithFreshness(0))
			if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			repo.SetVersion(role, 1)
			repo.AddTarget("targets", "v3", digestOf("c"), 10)
			repo.Publish()
			_, err := verifyRef(t, v, testGUN+":v1")
			wantErr(t, err, verify.ErrUntrusted, role+" of "+testGUN+": version 1 is older than version", "rollback")
		})
	}
}

func TestOversizedMetadata(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	repo.Serve("timestamp", []byte(`{"signed":{"_type":"Timestamp","pad":"`+strings.Repeat("x", 1<<20)+`"},"signatures":[]}`))
	v := newTestVerifier(t, srv, pinned(repo), WithMaxMetadataBytes(64<<10))
	_, err := verifyRef(t, v, testGUN+":v1")
	wantErr(t, err, verify.ErrUntrusted, "timestamp.json", "larger than the 65536 bytes allowed")
}

func TestServerFailures(t *testing.T) {
	// An address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()

	tests := []struct {
		name    string
		setup   func(srv *notaryfake.Server, repo *notaryfake.Repo)
		server  string // overrides the server URL
		ctxTime time.Duration
		wantMsg []string
	}{
		{name: "server down", server: "https://" + deadAddr, wantMsg: []string{"fetch root.json for " + testGUN}},
		{name: "500", setup: func(s *notaryfake.Server, _ *notaryfake.Repo) { s.SetStatus(http.StatusInternalServerError) }, wantMsg: []string{"500"}},
		{name: "503 on timestamp only", setup: func(_ *notaryfake.Server, r *notaryfake.Repo) { r.Serve("timestamp", []byte("not json")) }, wantMsg: []string{"timestamp of " + testGUN + " is malformed"}},
		{name: "garbage root", setup: func(_ *notaryfake.Server, r *notaryfake.Repo) { r.Serve("root", []byte("<html>proxy error</html>")) }, wantMsg: []string{"root of " + testGUN + " is malformed"}},
		{name: "slow server", setup: func(s *notaryfake.Server, _ *notaryfake.Repo) { s.SetDelay(5 * time.Second) }, ctxTime: 200 * time.Millisecond, wantMsg: []string{"timed out"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			repo.AddTarget("targets", "v1", digestOf("a"), 10)
			repo.Publish()
			if tc.setup != nil {
				tc.setup(srv, repo)
			}
			cfg := pinned(repo)
			cfg.Server, cfg.CAFile = srv.URL(), srv.CAFile(t)
			if tc.server != "" {
				cfg.Server = tc.server
			}
			v, err := New("test", cfg, verify.Deps{RequestTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			d := tc.ctxTime
			if d == 0 {
				d = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			start := time.Now()
			_, err = v.Verify(ctx, verify.Subject{Ref: imageref.MustParse(testGUN + ":v1")})
			wantErr(t, err, verify.ErrUnavailable, tc.wantMsg...)
			if tc.ctxTime > 0 && time.Since(start) > tc.ctxTime+time.Second {
				t.Errorf("Verify returned after %v, want about the ctx deadline %v", time.Since(start), tc.ctxTime)
			}
		})
	}
}

func TestTokenAuth(t *testing.T) {
	srv := notaryfake.New(t, notaryfake.WithTokenAuth("alice", "s3cret"))
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	env := map[string]string{"NOTARY_USER": "alice", "NOTARY_PASS": "s3cret", "BAD_PASS": "nope"}
	getenv := func(k string) string { return env[k] }

	t.Run("token flow", func(t *testing.T) {
		srv.ResetCounts()
		cfg := pinned(repo)
		cfg.Credentials = &credentials.Config{UsernameEnv: "NOTARY_USER", PasswordEnv: "NOTARY_PASS"}
		v := newTestVerifier(t, srv, cfg, WithGetenv(getenv), WithFreshness(0))
		for i := 0; i < 3; i++ {
			if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
				t.Fatalf("Verify #%d: %v", i, err)
			}
		}
		if got := srv.TokenRequests(); got != 1 {
			t.Errorf("token requests = %d, want 1 (the token is cached)", got)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		cfg := pinned(repo)
		cfg.Credentials = &credentials.Config{UsernameEnv: "NOTARY_USER", PasswordEnv: "BAD_PASS"}
		v := newTestVerifier(t, srv, cfg, WithGetenv(getenv))
		_, err := verifyRef(t, v, testGUN+":v1")
		wantErr(t, err, verify.ErrUnavailable, "access denied")
	})
	t.Run("anonymous", func(t *testing.T) {
		v := newTestVerifier(t, srv, pinned(repo))
		_, err := verifyRef(t, v, testGUN+":v1")
		wantErr(t, err, verify.ErrUnavailable, "access denied")
	})
}

func TestCaching(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddDelegation("targets/releases", "ecdsa", "")
	repo.AddTarget("targets/releases", "v1", digestOf("a"), 10)
	repo.AddTarget("targets/releases", "v2", digestOf("b"), 10)
	repo.Publish()
	clk := newClock()
	v := newTestVerifier(t, srv, pinned(repo), WithClock(clk.Now), WithFreshness(30*time.Second))
	base := "/v2/" + testGUN + "/_trust/tuf/"

	steps := []struct {
		name    string
		before  func()
		tag     string
		want    int // requests during this step
		wantFor map[string]int
	}{
		{name: "cold", tag: "v1", want: 5, wantFor: map[string]int{"root": 1, "timestamp": 1, "snapshot": 1, "targets": 1, "targets/releases": 1}},
		{name: "new tag within freshness", tag: "v2", want: 0},
		{name: "after freshness, unchanged", before: func() { clk.Advance(time.Minute) }, tag: "v1", want: 1, wantFor: map[string]int{"timestamp": 1}},
		{name: "after a new signature", before: func() {
			clk.Advance(time.Minute)
			repo.AddTarget("targets/releases", "v3", digestOf("c"), 10)
			repo.Publish()
		}, tag: "v3", want: 3, wantFor: map[string]int{"timestamp": 1, "snapshot": 1, "targets/releases": 1, "targets": 0}},
	}
	for _, st := range steps {
		if st.before != nil {
			st.before()
		}
		srv.ResetCounts()
		if _, err := verifyRef(t, v, testGUN+":"+st.tag); err != nil {
			t.Fatalf("%s: Verify: %v", st.name, err)
		}
		if got := srv.Requests(); got != st.want {
			t.Errorf("%s: %d requests, want %d", st.name, got, st.want)
		}
		for role, n := range st.wantFor {
			if got := srv.RequestsFor(base + role + ".json"); got != n {
				t.Errorf("%s: %d requests for %s.json, want %d", st.name, got, role, n)
			}
		}
	}
}

func TestConcurrentRefreshIsCoalesced(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	srv.SetDelay(50 * time.Millisecond)
	v := newTestVerifier(t, srv, pinned(repo))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(context.Background(), verify.Subject{Ref: imageref.MustParse(testGUN + ":v1")})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	// root, timestamp, snapshot, targets once; targets/releases is not delegated.
	if got := srv.Requests(); got != 4 {
		t.Errorf("%d requests for 20 concurrent lookups, want 4", got)
	}
}

func TestFetchRootKeys(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := FetchRootKeys(ctx, srv.URL(), testGUN, srv.CAFile(t))
	if err != nil {
		t.Fatalf("FetchRootKeys: %v", err)
	}
	if len(keys) != 1 || keys[0] != repo.RootKey().PublicPEM() {
		t.Fatalf("FetchRootKeys = %q, want the root certificate", keys)
	}
	v := newTestVerifier(t, srv, Config{RootKeys: keys})
	if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
		t.Fatalf("Verify with the fetched key pinned: %v", err)
	}
	if _, err := FetchRootKeys(ctx, srv.URL(), "registry.example.com/none", srv.CAFile(t)); err == nil || !strings.Contains(err.Error(), "no trust data") {
		t.Fatalf("FetchRootKeys(unknown GUN) error = %v, want no trust data", err)
	}
}

func TestPlainHTTPNeedsOptIn(t *testing.T) {
	srv := notaryfake.New(t, notaryfake.PlainHTTP())
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	cfg := pinned(repo)
	cfg.Server = srv.URL()
	if _, err := New("test", cfg, verify.Deps{}); err == nil || !strings.Contains(err.Error(), "insecureHTTP") {
		t.Fatalf("New with http server = %v, want an error naming insecureHTTP", err)
	}
	cfg.InsecureHTTP = true
	v := newTestVerifier(t, srv, cfg)
	if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
		t.Fatalf("Verify over http with insecureHTTP: %v", err)
	}
}
