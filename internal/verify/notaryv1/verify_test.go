package notaryv1

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

func TestVerifyDecisions(t *testing.T) {
	dA, dB := digestOf("a"), digestOf("b")
	hashPrefix := func(name string) string {
		sum := sha256.Sum256([]byte(name))
		return hex.EncodeToString(sum[:])[:2]
	}
	tests := []struct {
		name        string
		setup       func(r *notaryfake.Repo)
		signers     []string
		threshold   int
		ref         string
		wantDigest  string
		wantSigners []string
		wantErr     error
		wantMsg     []string
	}{
		{
			name:  "tag in targets",
			setup: func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 100) },
			ref:   testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets"},
		},
		{
			name: "tag in targets/releases",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "")
				r.AddTarget("targets/releases", "v1", dA, 100)
			},
			ref: testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets/releases"},
		},
		{
			name: "releases wins over targets as in docker pull",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "")
				r.AddTarget("targets/releases", "v1", dA, 100)
				r.AddTarget("targets", "v1", dB, 100)
			},
			ref: testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets/releases"},
		},
		{
			name: "only in targets while releases exists, as docker pull accepts",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "")
				r.AddTarget("targets/releases", "v0", dB, 100)
				r.AddTarget("targets", "v1", dA, 100)
			},
			ref: testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets"},
		},
		{
			name: "delegation listed in the snapshot but missing on the server",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "")
				r.AddTarget("targets/releases", "v1", dA, 100)
				r.Delete("targets/releases")
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"targets/releases of " + testGUN + " is listed in the snapshot but missing"},
		},
		{
			name: "snapshot pins a root.json the server does not serve",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				r.TamperMeta("snapshot", "root", func(m *tuf.FileMeta) { m.Hashes["sha256"][0] ^= 1 })
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"root of " + testGUN + " does not match the snapshot"},
		},
		{
			name: "only in another delegation is denied by docker's rule",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/alice", "ecdsa", "")
				r.AddTarget("targets/alice", "v1", dA, 100)
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"notaryv1 test: tag v1 of " + testGUN + " is not signed in targets/releases or targets"},
		},
		{
			name: "another delegation counts when listed in signers",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/alice", "ecdsa", "")
				r.AddTarget("targets/alice", "v1", dA, 100)
			},
			signers: []string{"targets/alice"},
			ref:     testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets/alice"},
		},
		{
			name: "nested delegation",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "")
				r.AddDelegation("targets/releases/ci", "ed25519", "")
				r.AddTarget("targets/releases/ci", "v1", dA, 100)
			},
			signers: []string{"targets/releases/ci"},
			ref:     testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets/releases/ci"},
		},
		{
			name: "paths restriction excludes the tag",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "prod-")
				r.AddTarget("targets/releases", "v1", dA, 100)
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"not signed"},
		},
		{
			name: "paths restriction allows the tag",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "prod-")
				r.AddTarget("targets/releases", "prod-1", dA, 100)
			},
			ref: testGUN + ":prod-1", wantDigest: dA, wantSigners: []string{"targets/releases"},
		},
		{
			name: "parent's paths restrict a nested delegation",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "prod-")
				r.AddDelegation("targets/releases/ci", "ecdsa", "")
				r.AddTarget("targets/releases/ci", "v1", dA, 100)
			},
			signers: []string{"targets/releases/ci"},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"not signed in targets/releases/ci"},
		},
		{
			name: "path hash prefix allows the tag",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa")
				r.SetPathHashPrefixes("targets/releases", hashPrefix("v1"))
				r.AddTarget("targets/releases", "v1", dA, 100)
			},
			ref: testGUN + ":v1", wantDigest: dA,
		},
		{
			name: "path hash prefix excludes the tag",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa")
				r.SetPathHashPrefixes("targets/releases", "zz")
				r.AddTarget("targets/releases", "v1", dA, 100)
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted,
		},
		{
			name:    "unsigned tag",
			setup:   func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 100) },
			ref:     testGUN + ":v2",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"tag v2 of " + testGUN + " is not signed in targets/releases or targets"},
		},
		{
			name:  "tag and matching digest",
			setup: func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 100) },
			ref:   testGUN + ":v1@" + dA, wantDigest: dA,
		},
		{
			name:    "tag and other digest",
			setup:   func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 100) },
			ref:     testGUN + ":v1@" + dB,
			wantErr: verify.ErrUntrusted, wantMsg: []string{"signed for " + dA + ", not " + dB},
		},
		{
			name:  "digest only, signed",
			setup: func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 100) },
			ref:   testGUN + "@" + dA, wantDigest: dA, wantSigners: []string{"targets"},
		},
		{
			name:    "digest only, unsigned",
			setup:   func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 100) },
			ref:     testGUN + "@" + dB,
			wantErr: verify.ErrUntrusted, wantMsg: []string{"digest " + dB},
		},
		{
			name: "threshold 2 met",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddDelegation("targets/b", "ed25519", "")
				r.AddTarget("targets/a", "v1", dA, 100)
				r.AddTarget("targets/b", "v1", dA, 100)
			},
			signers: []string{"targets/a", "targets/b"}, threshold: 2,
			ref: testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets/a", "targets/b"},
		},
		{
			name: "threshold 2 with one signer",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddDelegation("targets/b", "ecdsa", "")
				r.AddTarget("targets/a", "v1", dA, 100)
			},
			signers: []string{"targets/a", "targets/b"}, threshold: 2,
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"signed by 1 of the 2 required roles"},
		},
		{
			name: "threshold 1 of two listed",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddTarget("targets/a", "v1", dA, 100)
			},
			signers: []string{"targets/a", "targets/b"}, threshold: 1,
			ref: testGUN + ":v1", wantDigest: dA, wantSigners: []string{"targets/a"},
		},
		{
			name: "listed signers disagree on the digest",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddDelegation("targets/b", "ecdsa", "")
				r.AddTarget("targets/a", "v1", dA, 100)
				r.AddTarget("targets/b", "v1", dB, 100)
			},
			signers: []string{"targets/a", "targets/b"}, threshold: 1,
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"different digests"},
		},
		{
			name: "digest only with threshold 2",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddDelegation("targets/b", "ecdsa", "")
				r.AddTarget("targets/a", "v1", dA, 100)
				r.AddTarget("targets/b", "release", dA, 100)
			},
			signers: []string{"targets/a", "targets/b"}, threshold: 2,
			ref: testGUN + "@" + dA, wantDigest: dA, wantSigners: []string{"targets/a", "targets/b"},
		},
		{
			name: "expired timestamp",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				r.SetExpires("timestamp", time.Now().Add(-time.Minute))
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"timestamp of " + testGUN + " expired"},
		},
		{
			name: "expired delegation",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "")
				r.AddTarget("targets/releases", "v1", dA, 100)
				r.SetExpires("targets/releases", time.Now().Add(-time.Minute))
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"targets/releases of " + testGUN + " expired"},
		},
		{
			name: "snapshot pins another targets hash",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				r.TamperMeta("snapshot", "targets", func(m *tuf.FileMeta) { m.Hashes["sha256"][0] ^= 1 })
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"targets of " + testGUN + " does not match its signed hash"},
		},
		{
			name: "timestamp pins another snapshot length",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				r.TamperMeta("timestamp", "snapshot", func(m *tuf.FileMeta) { m.Length-- })
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"snapshot"},
		},
		{
			name: "targets signed by a key not in the role",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				r.SignWith("targets", notaryfake.GenerateKey("ecdsa", "x"))
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"targets of " + testGUN + " is not signed by its keys"},
		},
		{
			name: "delegation signed by a key not in the role",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "")
				r.AddTarget("targets/releases", "v1", dA, 100)
				r.SignWith("targets/releases", notaryfake.GenerateKey("ecdsa", "x"))
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"targets/releases of " + testGUN + " is not signed by its keys"},
		},
		{
			name: "targets threshold not met",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				k := r.AddKey("targets", "ecdsa")
				r.SetThreshold("targets", 2)
				r.SignWith("targets", k)
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"1 valid signature(s), threshold is 2"},
		},
		{
			name: "targets threshold 2 met",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				r.AddKey("targets", "ed25519")
				r.SetThreshold("targets", 2)
			},
			ref: testGUN + ":v1", wantDigest: dA,
		},
		{
			name: "snapshot signed by the timestamp key",
			setup: func(r *notaryfake.Repo) {
				r.AddTarget("targets", "v1", dA, 100)
				r.SignWith("snapshot", notaryfake.GenerateKey("ed25519", "x"))
			},
			ref:     testGUN + ":v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"snapshot of " + testGUN + " is not signed by its keys"},
		},
		{
			name:    "unknown repository",
			setup:   func(r *notaryfake.Repo) {},
			ref:     "registry.example.com/other/app:v1",
			wantErr: verify.ErrUntrusted, wantMsg: []string{"registry.example.com/other/app has no trust data"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			tc.setup(repo)
			repo.Publish()
			cfg := pinned(repo)
			cfg.Signers, cfg.Threshold = tc.signers, tc.threshold
			v := newTestVerifier(t, srv, cfg)
			res, err := verifyRef(t, v, tc.ref)
			if tc.wantErr != nil {
				wantErr(t, err, tc.wantErr, tc.wantMsg...)
				return
			}
			if err != nil {
				t.Fatalf("Verify(%s): %v", tc.ref, err)
			}
			if res.Digest != tc.wantDigest {
				t.Errorf("Verify(%s).Digest = %s, want %s", tc.ref, res.Digest, tc.wantDigest)
			}
			if tc.wantSigners != nil && !slices.Equal(res.Signers, tc.wantSigners) {
				t.Errorf("Verify(%s).Signers = %v, want %v", tc.ref, res.Signers, tc.wantSigners)
			}
			if res.Expires.IsZero() || res.Expires.After(time.Now().Add(15*24*time.Hour)) {
				t.Errorf("Verify(%s).Expires = %v, want the timestamp's expiry (about 14 days)", tc.ref, res.Expires)
			}
		})
	}
}

func TestKeyTypes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []notaryfake.RepoOption
		delType string
	}{
		{"ecdsa", nil, "ecdsa"},
		{"ed25519", []notaryfake.RepoOption{notaryfake.KeyType("ed25519")}, "ed25519"},
		// RSA key generation is slow: RSA for root (rsa-x509) and the
		// delegation (rsa) covers both RSA key types.
		{"rsa", []notaryfake.RepoOption{notaryfake.RootKeyType("rsa-x509")}, "rsa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN, tc.opts...)
			repo.AddDelegation("targets/releases", tc.delType, "")
			repo.AddTarget("targets/releases", "v1", digestOf("k"), 10)
			repo.Publish()
			v := newTestVerifier(t, srv, pinned(repo))
			res, err := verifyRef(t, v, testGUN+":v1")
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if res.Digest != digestOf("k") {
				t.Errorf("Digest = %s, want %s", res.Digest, digestOf("k"))
			}
		})
	}
}

// A tag signed after the metadata was cached must not be denied for the
// length of the freshness window: a "no" is only said after revalidating,
// while a "yes" may come from memory alone.
func TestNewlySignedTagWithinFreshness(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo(testGUN)
	repo.AddTarget("targets", "v1", digestOf("v1"), 100)
	repo.Publish()
	v := newTestVerifier(t, srv, pinned(repo), WithFreshness(time.Hour))
	if _, err := verifyRef(t, v, testGUN+":v1"); err != nil {
		t.Fatal(err)
	}
	repo.AddTarget("targets", "v2", digestOf("v2"), 100)
	repo.Publish()
	srv.ResetCounts()
	res, err := verifyRef(t, v, testGUN+":v2")
	if err != nil || res.Digest != digestOf("v2") {
		t.Fatalf("newly signed tag: %v %v", res, err)
	}
	if got := srv.Requests(); got == 0 {
		t.Fatal("the newly signed tag was answered without asking the server")
	}
	srv.ResetCounts()
	if _, err := verifyRef(t, v, testGUN+":v1"); err != nil || srv.Requests() != 0 {
		t.Fatalf("known tag within freshness: err=%v requests=%d, want 0 requests", err, srv.Requests())
	}
	// An unsigned tag costs one revalidation (the timestamp), then the deny.
	srv.ResetCounts()
	_, err = verifyRef(t, v, testGUN+":nope")
	wantErr(t, err, verify.ErrUntrusted, "nope")
	if got := srv.Requests(); got != 1 {
		t.Fatalf("deny within freshness made %d requests, want 1 (timestamp)", got)
	}
}
