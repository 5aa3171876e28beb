package dct

import (
	"testing"

	harness "github.com/trustgate-dev/trustgate/test/harness/dct"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestSignerRules covers which signatures count: Docker's rule
// (targets/releases, else targets) by default, a named delegation when the
// policy lists it, and tag/digest binding.
func TestSignerRules(t *testing.T) {
	t.Parallel()
	b := env(t)
	path := unique("rules/app")
	gun, rootKey := initRepo(t, b, path)

	inTargets := pushSigned(t, b, path, "in-targets")
	if err := b.sg.AddSigner(gun, "alice"); err != nil {
		t.Fatal(err)
	}
	inReleases := pushSigned(t, b, path, "in-releases", "targets/releases", "targets/alice")
	if err := b.sg.AddDelegation(gun, "targets/bob", "bob"); err != nil {
		t.Fatal(err)
	}
	onlyBob := pushSigned(t, b, path, "only-bob", "targets/bob")
	unsigned := push(t, b.reg, path, "unsigned")
	// Signed, then the tag moved to a new, unsigned manifest in the registry.
	repushedOld := pushSigned(t, b, path, "repushed")
	repushedNew := push(t, b.reg, path, "repushed")
	noTrust := push(t, b.reg, unique("rules/never-signed"), "v1")

	docker := config{Server: b.srv.URL(), CAFile: b.srv.CAFile(), RootKeys: []string{rootKey}}
	bob := docker
	bob.Signers = []string{"targets/bob"}

	tests := []verifyCase{
		{"tag signed in targets", docker, inTargets.ref,
			outcome{digest: inTargets.digest, signers: []string{"targets"}}},
		{"tag signed in targets/releases by a delegate", docker, inReleases.ref,
			outcome{digest: inReleases.digest, signers: []string{"targets/releases"}}},
		{"tag signed only in another delegation, Docker's rule", docker, onlyBob.ref,
			outcome{err: verify.ErrUntrusted, msg: "is not signed in targets/releases or targets"}},
		{"tag signed only in another delegation, policy names it", bob, onlyBob.ref,
			outcome{digest: onlyBob.digest, signers: []string{"targets/bob"}}},
		{"policy names a delegation that did not sign the tag", bob, inTargets.ref,
			outcome{err: verify.ErrUntrusted, msg: "not signed in targets/bob"}},
		{"unsigned tag in a signed repository", docker, unsigned.ref,
			outcome{err: verify.ErrUntrusted, msg: "tag unsigned"}},
		{"repository without trust data", docker, noTrust.ref,
			outcome{err: verify.ErrUntrusted, msg: "has no trust data"}},
		{"re-pushed tag resolves to the signed digest", docker, repushedOld.ref,
			outcome{digest: repushedOld.digest, signers: []string{"targets"}}},
		{"re-pushed tag with the new unsigned digest", docker, repushedOld.ref + "@" + repushedNew.digest,
			outcome{err: verify.ErrUntrusted, msg: "is signed for " + repushedOld.digest}},
		{"re-pushed tag with the old signed digest", docker, repushedOld.ref + "@" + repushedOld.digest,
			outcome{digest: repushedOld.digest}},
		{"signed tag with another image's digest", docker, inTargets.ref + "@" + inReleases.digest,
			outcome{err: verify.ErrUntrusted, msg: "not " + inReleases.digest}},
		{"digest-only reference to a signed manifest", docker, b.reg.Repo(path) + "@" + inTargets.digest,
			outcome{digest: inTargets.digest, signers: []string{"targets"}}},
		{"digest-only reference to an unsigned manifest", docker, b.reg.Repo(path) + "@" + unsigned.digest,
			outcome{err: verify.ErrUntrusted, msg: "is not signed"}},
	}
	runVerifyCases(t, tests)
}

// TestRootTrust covers pinned root keys (file and inline PEM, right and
// wrong) and trust on first use.
func TestRootTrust(t *testing.T) {
	t.Parallel()
	b := env(t)
	path := unique("pinning/app")
	_, rootKey := initRepo(t, b, path)
	img := pushSigned(t, b, path, "v1")
	// The notary CLI reuses one root key for every repository of a trust
	// directory, so a wrong key must come from another signer.
	other := harness.NewSigner(t, b.srv)
	otherGUN := b.reg.Repo(unique("pinning/other"))
	if err := other.Init(otherGUN); err != nil {
		t.Fatal(err)
	}
	otherRootKey, err := other.WriteRootKeyPEM(otherGUN)
	if err != nil {
		t.Fatal(err)
	}
	gunPEM, _, err := b.sg.RootKeyPEM(b.reg.Repo(path))
	if err != nil {
		t.Fatal(err)
	}
	// Pins are public keys: a certificate for another repository over the
	// same key pins this one too (its CN is not compared).
	_, sameKeyOtherGUN := initRepo(t, b, unique("pinning/same-key"))

	base := config{Server: b.srv.URL(), CAFile: b.srv.CAFile()}
	with := func(f func(*config)) config { c := base; f(&c); return c }
	tests := []verifyCase{
		{"pinned root certificate file", with(func(c *config) { c.RootKeys = []string{rootKey} }), img.ref,
			outcome{digest: img.digest}},
		{"pinned root certificate inline", with(func(c *config) { c.RootKeys = []string{string(gunPEM)} }), img.ref,
			outcome{digest: img.digest}},
		{"root certificate of another repository with the same root key",
			with(func(c *config) { c.RootKeys = []string{sameKeyOtherGUN} }), img.ref,
			outcome{digest: img.digest}},
		{"pinned key among others", with(func(c *config) { c.RootKeys = []string{otherRootKey, rootKey} }), img.ref,
			outcome{digest: img.digest}},
		{"wrong pinned root key", with(func(c *config) { c.RootKeys = []string{otherRootKey} }), img.ref,
			outcome{err: verify.ErrUntrusted, msg: "not signed by a key in rootKeys"}},
		{"trust on first use", with(func(c *config) { c.TrustOnFirstUse = true }), img.ref,
			outcome{digest: img.digest}},
	}
	runVerifyCases(t, tests)

	t.Run("neither pinned keys nor trust on first use", func(t *testing.T) {
		t.Parallel()
		raw := []byte(`{"server":"` + b.srv.URL() + `","caFile":"` + b.srv.CAFile() + `"}`)
		if _, err := newFromBlock(raw); err == nil {
			t.Fatal("the notaryv1 scheme accepted a config that neither pins root keys nor enables trustOnFirstUse")
		}
	})
}

// TestThreshold covers signers with a threshold of 2: one signature is not
// enough, two delegates on the same digest are.
func TestThreshold(t *testing.T) {
	t.Parallel()
	b := env(t)
	path := unique("threshold/app")
	gun, rootKey := initRepo(t, b, path)
	for _, who := range []string{"alice", "bob"} {
		if err := b.sg.AddDelegation(gun, "targets/"+who, who); err != nil {
			t.Fatal(err)
		}
	}
	one := pushSigned(t, b, path, "one", "targets/alice")
	two := pushSigned(t, b, path, "two", "targets/alice", "targets/bob")
	// Two delegates that disagree on the digest must not add up.
	split := pushSigned(t, b, path, "split", "targets/alice")
	splitOther := push(t, b.reg, path, "split")
	if err := b.sg.Sign(gun, "split", splitOther.digest, splitOther.size, "targets/bob"); err != nil {
		t.Fatal(err)
	}

	cfg := func(threshold int) config {
		return config{Server: b.srv.URL(), CAFile: b.srv.CAFile(), RootKeys: []string{rootKey},
			Signers: []string{"targets/alice", "targets/bob"}, Threshold: threshold}
	}
	tests := []verifyCase{
		{"threshold 2, one signer", cfg(2), one.ref,
			outcome{err: verify.ErrUntrusted, msg: "signed by 1 of the 2 required roles"}},
		{"threshold 2, two signers", cfg(2), two.ref,
			outcome{digest: two.digest, signers: []string{"targets/alice", "targets/bob"}}},
		{"threshold 1, one signer", cfg(1), one.ref,
			outcome{digest: one.digest, signers: []string{"targets/alice"}}},
		{"threshold 2, signers disagree on the digest", cfg(2), split.ref,
			outcome{err: verify.ErrUntrusted, msg: "signed to different digests"}},
		{"threshold 2, digest-only reference signed by both", cfg(2), b.reg.Repo(path) + "@" + two.digest,
			outcome{digest: two.digest, signers: []string{"targets/alice", "targets/bob"}}},
	}
	runVerifyCases(t, tests)
}

// TestTrustOnFirstUse checks that a trust-on-first-use verifier keeps the
// root it saw first: when the repository is deleted and re-created under
// another root key, it denies, while a verifier without that memory trusts
// the new root.
func TestTrustOnFirstUse(t *testing.T) {
	t.Parallel()
	b := env(t)
	path := unique("tofu/app")
	gun := b.reg.Repo(path)
	first := harness.NewSigner(t, b.srv)
	img := push(t, b.reg, path, "v1")
	initAndSign(t, first, gun, "v1", img)
	cfg := config{Server: b.srv.URL(), CAFile: b.srv.CAFile(), TrustOnFirstUse: true}
	v := newFreshVerifier(t, cfg)
	res, err := verifyRef(t, v, img.ref)
	check(t, img.ref, res, err, outcome{digest: img.digest, signers: []string{"targets"}})

	// An attacker (or a careless re-init) replaces the trust data.
	if err := first.Delete(gun); err != nil {
		t.Fatal(err)
	}
	second := harness.NewSigner(t, b.srv)
	evil := push(t, b.reg, path, "v1")
	initAndSign(t, second, gun, "v1", evil)

	res, err = verifyRef(t, v, img.ref)
	check(t, img.ref, res, err, outcome{err: verify.ErrUntrusted, msg: "root of " + gun})
	res, err = verifyRef(t, newFreshVerifier(t, cfg), img.ref)
	check(t, img.ref, res, err, outcome{digest: evil.digest, signers: []string{"targets"}})
}

// TestKeyRotation rotates keys with the notary CLI under live verifiers:
// server-side timestamp and client-side targets rotations are followed
// whatever the pin, a root rotation is followed by trust on first use and by
// a pin of the new key, but not by a pin of the old one.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	b := env(t)
	tests := []struct {
		name      string
		role      string
		server    bool
		pinOld    outcome // a verifier pinned to the root key before rotation
		useNewPin bool    // also check a verifier pinned to the root key after it
	}{
		{name: "timestamp key on the server", role: "timestamp", server: true},
		{name: "targets key", role: "targets"},
		{name: "root key", role: "root", useNewPin: true,
			pinOld: outcome{err: verify.ErrUntrusted, msg: "not signed by a key in rootKeys"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := unique("rotate/" + tc.role)
			gun := b.reg.Repo(path)
			// A signer of its own: a root rotation must not touch the
			// shared signer's root key.
			sg := harness.NewSigner(t, b.srv)
			img := push(t, b.reg, path, "v1")
			initAndSign(t, sg, gun, "v1", img)
			oldPin := writeRootKey(t, sg, gun)
			base := config{Server: b.srv.URL(), CAFile: b.srv.CAFile()}
			tofu, pinned := base, base
			tofu.TrustOnFirstUse = true
			pinned.RootKeys = []string{oldPin}
			vTOFU, vPinned := newFreshVerifier(t, tofu), newFreshVerifier(t, pinned)
			admitted := outcome{digest: img.digest, signers: []string{"targets"}}
			for _, v := range []verify.Verifier{vTOFU, vPinned} {
				res, err := verifyRef(t, v, img.ref)
				check(t, img.ref, res, err, admitted)
			}

			if err := sg.RotateKey(gun, tc.role, tc.server); err != nil {
				t.Fatal(err)
			}
			// Sign again so targets is re-signed with the rotated key too.
			img2 := push(t, b.reg, path, "v2")
			if err := sg.Sign(gun, "v2", img2.digest, img2.size); err != nil {
				t.Fatal(err)
			}

			res, err := verifyRef(t, vTOFU, img2.ref)
			check(t, img2.ref, res, err, outcome{digest: img2.digest, signers: []string{"targets"}})
			wantPinned := tc.pinOld
			if wantPinned.err == nil {
				wantPinned = outcome{digest: img2.digest, signers: []string{"targets"}}
			}
			res, err = verifyRef(t, vPinned, img2.ref)
			check(t, img2.ref, res, err, wantPinned)
			if tc.useNewPin {
				newPin, err := sg.WriteRootKeyPEM(gun)
				if err != nil {
					t.Fatal(err)
				}
				pinnedNew := base
				pinnedNew.RootKeys = []string{newPin}
				res, err := verifyRef(t, newFreshVerifier(t, pinnedNew), img2.ref)
				check(t, img2.ref, res, err, outcome{digest: img2.digest, signers: []string{"targets"}})
			}
		})
	}
}
