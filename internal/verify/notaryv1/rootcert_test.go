package notaryv1

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

const otherGUN = "registry.example.com/demo/other"

// TestRootCertificateMustNameGUN serves, under testGUN, the complete trust
// data of another repository whose root uses the same root key (as the
// notary CLI does for every repository of a trust directory) but a
// certificate for its own GUN. The signatures and the pinned key all match;
// only the certificate's CommonName tells the roots apart.
func TestRootCertificateMustNameGUN(t *testing.T) {
	tests := []struct {
		name    string
		tofu    bool
		mirror  bool // serve the other repository's metadata under testGUN
		wantMsg []string
	}{
		{name: "pinned, own root", mirror: false},
		{name: "tofu, own root", tofu: true, mirror: false},
		{name: "pinned, root of another repository", mirror: true,
			wantMsg: []string{"root of " + testGUN + " (version", "not signed by a valid root certificate for " + testGUN, `certificate is for "` + otherGUN + `"`}},
		{name: "tofu, root of another repository", tofu: true, mirror: true,
			wantMsg: []string{"not signed by a valid root certificate for " + testGUN, `certificate is for "` + otherGUN + `"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			own := srv.NewRepo(testGUN)
			own.AddTarget("targets", "v1", digestOf("good"), 10)
			own.Publish()
			other := srv.NewRepo(otherGUN)
			now := time.Now()
			other.ReplaceKey("root", own.RootKey().WithCert(otherGUN, now.Add(-time.Hour), now.Add(24*time.Hour)), false)
			other.AddTarget("targets", "v1", digestOf("evil"), 10)
			other.Publish()
			if tc.mirror {
				for _, role := range []string{"root", "timestamp", "snapshot", "targets"} {
					own.Serve(role, other.Raw(role))
				}
			}
			cfg := pinned(own)
			if tc.tofu {
				cfg = Config{TrustOnFirstUse: true}
			}
			v := newTestVerifier(t, srv, cfg)
			res, err := verifyRef(t, v, testGUN+":v1")
			if tc.wantMsg != nil {
				wantErr(t, err, verify.ErrUntrusted, tc.wantMsg...)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.Digest != digestOf("good") {
				t.Errorf("Digest = %s, want %s", res.Digest, digestOf("good"))
			}
		})
	}
}

// TestRootCertificateValidity checks the root certificate's validity window
// against the injected clock, at first use and while the root is trusted.
func TestRootCertificateValidity(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		advance   time.Duration // clock moved forward before a second Verify
		successor bool          // the publisher rotates the root key first
		wantFirst []string      // nil: the first Verify admits
		wantLater []string      // nil: the second Verify admits
	}{
		{name: "expired at first use", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-24 * time.Hour),
			wantFirst: []string{"not signed by a valid root certificate", "expired at"}},
		{name: "not yet valid at first use", notBefore: now.Add(24 * time.Hour), notAfter: now.Add(48 * time.Hour),
			wantFirst: []string{"not signed by a valid root certificate", "not valid before"}},
		{name: "expires while trusted", notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour), advance: 2 * time.Hour,
			wantLater: []string{"root certificate of " + testGUN + " expired at", "notary key rotate " + testGUN + " root"}},
		{name: "expires while trusted, root key rotated in time", notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour), advance: 2 * time.Hour,
			successor: true},
		{name: "valid", notBefore: now.Add(-time.Hour), notAfter: now.Add(time.Hour), advance: 30 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			repo.ReplaceKey("root", repo.RootKey().WithCert(testGUN, tc.notBefore, tc.notAfter), false)
			repo.AddTarget("targets", "v1", digestOf("a"), 10)
			repo.Publish()
			clk := &clock{t: now}
			v := newTestVerifier(t, srv, Config{TrustOnFirstUse: true}, WithClock(clk.Now), WithFreshness(0))
			res, err := verifyRef(t, v, testGUN+":v1")
			if tc.wantFirst != nil {
				wantErr(t, err, verify.ErrUntrusted, tc.wantFirst...)
				return
			}
			if err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			if res.Expires.After(tc.notAfter) {
				t.Errorf("Expires = %v, want no later than the root certificate's end %v", res.Expires, tc.notAfter)
			}
			if tc.successor {
				repo.RotateKey("root", "ecdsa-x509", true)
				repo.Publish()
			}
			clk.Advance(tc.advance)
			_, err = verifyRef(t, v, testGUN+":v1")
			if tc.wantLater != nil {
				wantErr(t, err, verify.ErrUntrusted, tc.wantLater...)
				return
			}
			if err != nil {
				t.Fatalf("second Verify: %v", err)
			}
		})
	}
}

// TestReplacedRootMessage checks that a root replaced under another key is
// reported as such, not as a rollback, whatever its version number.
func TestReplacedRootMessage(t *testing.T) {
	tests := []struct {
		name    string
		change  func(r *notaryfake.Repo)
		wantMsg []string
		notMsg  string
	}{
		{
			name: "re-created under a new key with the same version",
			change: func(r *notaryfake.Repo) {
				r.RotateKey("root", "ecdsa-x509", false)
				r.SetVersion("root", 1)
			},
			wantMsg: []string{"root of " + testGUN + " was replaced by one (version 1) not signed by the trusted root key(s) (version 1)", "pin its new root key"},
			notMsg:  "rollback",
		},
		{
			name: "signed by the trusted key with the same version",
			change: func(r *notaryfake.Repo) {
				r.AddKey("targets", "ecdsa")
				r.SetVersion("root", 1)
			},
			wantMsg: []string{"version 1 is not newer than trusted version 1 (rollback)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			repo.AddTarget("targets", "v1", digestOf("a"), 10)
			repo.Publish()
			v := newTestVerifier(t, srv, Config{TrustOnFirstUse: true}, WithFreshness(0))
			if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			tc.change(repo)
			repo.Publish()
			_, err := verifyRef(t, v, testGUN+":v1")
			wantErr(t, err, verify.ErrUntrusted, tc.wantMsg...)
			if tc.notMsg != "" && strings.Contains(err.Error(), tc.notMsg) {
				t.Errorf("Verify error %q mentions %q", err, tc.notMsg)
			}
		})
	}
}

// TestVersionFloorsAfterKeyRotation: a server that lost its timestamp and
// snapshot keys makes new ones and starts their versions over at 1; once
// the root rotates those keys, the old versions are no rollback floor
// (TUF 5.3.11). Without a key change the floors stay.
func TestVersionFloorsAfterKeyRotation(t *testing.T) {
	tests := []struct {
		name    string
		rotate  []string // roles whose keys the root replaces
		restart []string // roles whose version starts over at 1
		// failOnce makes the first Verify after the change fail after the
		// new root was accepted (a bad snapshot), before the next one.
		failOnce bool
		wantMsg  []string // nil: admitted
	}{
		{name: "timestamp and snapshot keys rotated", rotate: []string{"timestamp", "snapshot"}, restart: []string{"timestamp", "snapshot"}},
		{name: "timestamp key rotated", rotate: []string{"timestamp"}, restart: []string{"timestamp"}},
		{name: "snapshot key rotated", rotate: []string{"snapshot"}, restart: []string{"snapshot"}},
		{name: "rotation noticed by an update that failed", rotate: []string{"timestamp", "snapshot"}, restart: []string{"timestamp", "snapshot"}, failOnce: true},
		{name: "only the targets key rotated", rotate: []string{"targets"}, restart: []string{"timestamp"},
			wantMsg: []string{"timestamp of " + testGUN + ": version 1 is older than version 3 seen before (rollback)"}},
		{name: "no key rotated", restart: []string{"snapshot"},
			wantMsg: []string{"snapshot of " + testGUN + ": version 1 is older than version 3 seen before (rollback)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			for _, tag := range []string{"v1", "v2"} {
				repo.AddTarget("targets", tag, digestOf(tag), 10)
				repo.Publish()
			}
			// timestamp and snapshot are at version 3 now
			v := newTestVerifier(t, srv, pinned(repo), WithFreshness(0))
			if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			for _, role := range tc.rotate {
				repo.RotateKey(role, "ecdsa", false)
			}
			for _, role := range tc.restart {
				repo.SetVersion(role, 1)
			}
			repo.AddTarget("targets", "v4", digestOf("v4"), 10)
			repo.Publish()
			if tc.failOnce {
				repo.Serve("snapshot", []byte(`{"signed":{},"signatures":[]}`))
				_, err := verifyRef(t, v, testGUN+":v4")
				wantErr(t, err, verify.ErrUntrusted, "snapshot of "+testGUN+" does not match its signed hash")
				repo.Serve("snapshot", nil)
			}
			res, err := verifyRef(t, v, testGUN+":v4")
			if tc.wantMsg != nil {
				wantErr(t, err, verify.ErrUntrusted, tc.wantMsg...)
				return
			}
			if err != nil {
				t.Fatalf("Verify after the rotation: %v", err)
			}
			if res.Digest != digestOf("v4") {
				t.Errorf("Digest = %s, want %s", res.Digest, digestOf("v4"))
			}
			// The floors are the new versions from now on.
			repo.AddTarget("targets", "v5", digestOf("v5"), 10)
			repo.Publish()
			if _, err := verifyRef(t, v, testGUN+":v5"); err != nil {
				t.Fatalf("Verify after the next publish: %v", err)
			}
			repo.SetVersion("timestamp", 1)
			repo.AddTarget("targets", "v6", digestOf("v6"), 10)
			repo.Publish()
			if _, err := verifyRef(t, v, testGUN+":v6"); err == nil || !strings.Contains(err.Error(), "rollback") {
				t.Errorf("Verify with a timestamp rolled back after the rotation = %v, want a rollback error", err)
			}
		})
	}
}

func TestCertValidUntil(t *testing.T) {
	now := time.Now()
	cert := func(end time.Time) *notaryfake.Key {
		return notaryfake.GenerateKey("ecdsa", "").WithCert(testGUN, now.Add(-time.Hour), end)
	}
	early, late := cert(now.Add(time.Hour)), cert(now.Add(48*time.Hour))
	plain := notaryfake.GenerateKey("ecdsa", "")
	notAfter := func(k *notaryfake.Key) time.Time {
		_, c, err := k.Public.PublicKey()
		if err != nil || c == nil {
			t.Fatalf("key %s has no certificate: %v", k.ID, err)
		}
		return c.NotAfter
	}
	tests := []struct {
		name      string
		signers   []*notaryfake.Key
		threshold int
		want      time.Time
	}{
		{"one certificate", []*notaryfake.Key{early}, 1, notAfter(early)},
		{"threshold 1: the latest certificate", []*notaryfake.Key{early, late}, 1, notAfter(late)},
		{"threshold 2: the second latest", []*notaryfake.Key{late, early}, 2, notAfter(early)},
		{"a plain key never expires", []*notaryfake.Key{early, plain}, 1, time.Time{}},
		{"threshold 2 with a plain key", []*notaryfake.Key{plain, early}, 2, notAfter(early)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &tuf.Root{Keys: map[string]tuf.Key{}, Roles: map[string]tuf.RoleKeys{}}
			var ids []string
			for _, k := range tc.signers {
				r.Keys[k.ID] = k.Public
				ids = append(ids, k.ID)
			}
			r.Roles[tuf.RoleRoot] = tuf.RoleKeys{KeyIDs: ids, Threshold: tc.threshold}
			if got := certValidUntil(r, ids); !got.Equal(tc.want) {
				t.Errorf("certValidUntil = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestIntermediateRootCertificateMustNameGUN walks two root rotations whose
// middle root is signed by a certificate for another repository.
func TestIntermediateRootCertificateMustNameGUN(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cn      string
		wantMsg []string
	}{
		{name: "certificate for this repository", cn: testGUN},
		{name: "certificate for another repository", cn: otherGUN,
			wantMsg: []string{"root version 2 of " + testGUN + " is not signed by a root certificate for " + testGUN, `certificate is for "` + otherGUN + `"`}},
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
			repo.ReplaceKey("root", notaryfake.GenerateKey("ecdsa-x509", tc.cn), true)
			repo.Publish()
			repo.RotateKey("root", "ecdsa-x509", true)
			repo.Publish()
			_, err := verifyRef(t, v, testGUN+":v1")
			if tc.wantMsg != nil {
				wantErr(t, err, verify.ErrUntrusted, tc.wantMsg...)
				return
			}
			if err != nil {
				t.Fatalf("Verify after two rotations: %v", err)
			}
		})
	}
}

// TestFetchRootKeysChecksCertificate: the pinning helper must not offer a
// key whose certificate names another repository; the verifier would
// refuse every root signed with it.
func TestFetchRootKeysChecksCertificate(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	now := time.Now()
	repo.ReplaceKey("root", repo.RootKey().WithCert(otherGUN, now.Add(-time.Hour), now.Add(time.Hour)), false)
	repo.Publish()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := FetchRootKeys(ctx, srv.URL(), testGUN, srv.CAFile(t))
	if err == nil || !strings.Contains(err.Error(), `certificate is for "`+otherGUN+`"`) {
		t.Fatalf("FetchRootKeys = %d keys, %v; want an error naming the certificate's CN", len(keys), err)
	}
}
