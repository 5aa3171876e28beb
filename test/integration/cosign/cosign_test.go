// Package cosign holds integration tests of the cosign verifier against
// signatures written by the real cosign CLI (v3.1.3, offline) into the real
// Debian docker-registry (no referrers API: cosign falls back to the
// `sha256-<hex>` tag index) and into an in-memory registry with a working
// referrers API, plus keyless signatures from an offline Sigstore
// cross-checked with the CLI.
package cosign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/cosign"
	ch "github.com/trustgate-dev/trustgate/test/harness/cosign"
	dct "github.com/trustgate-dev/trustgate/test/harness/dct"
)

var (
	regOnce sync.Once
	reg     *dct.Registry
	regErr  error
	regDir  string
	seq     atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if reg != nil {
		reg.Close()
	}
	if regDir != "" {
		os.RemoveAll(regDir)
	}
	os.Exit(code)
}

// debianRegistry is the one docker-registry of the package.
func debianRegistry(t testing.TB) *dct.Registry {
	t.Helper()
	dct.RequireBinaries(t, "docker-registry")
	regOnce.Do(func() {
		if regDir, regErr = os.MkdirTemp("", "cosign-integration-"); regErr != nil {
			return
		}
		reg, regErr = dct.StartRegistry(dct.RegistryOptions{Dir: regDir})
	})
	if regErr != nil {
		t.Fatalf("start docker-registry: %v", regErr)
	}
	return reg
}

// push pushes a random image to host/path-N (a repository of its own)
// and returns its digest reference.
func push(t testing.TB, host, path string) name.Digest {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(fmt.Sprintf("%s/%s-%d:v1", host, path, seq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	// The digest as the registry serves it, not as computed here.
	desc, err := remote.Head(tag, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(desc.Digest.String())
}

func subject(d name.Digest) verify.Subject {
	return verify.Subject{Ref: imageref.MustParse(d.Context().Name() + ":v1@" + d.DigestStr()), Digest: d.DigestStr()}
}

func keysVerifier(t testing.TB, threshold int, pubs ...string) *cosign.Verifier {
	t.Helper()
	v, err := cosign.New("it", cosign.Config{Keys: pubs, Threshold: threshold}, verify.Deps{RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// registries are the two places signatures are written to: the Debian
// docker-registry (tag schema) and an in-memory referrers-API registry.
func registries(t *testing.T) map[string]string {
	return map[string]string{
		"docker-registry": debianRegistry(t).Host(),
		"referrers":       ch.NewReferrersRegistry(t),
	}
}

func TestCLISignedKeys(t *testing.T) {
	cli := ch.NewCLI(t)
	keyA, pubA, err := cli.GenerateKeyPair("a")
	if err != nil {
		t.Fatal(err)
	}
	keyB, pubB, err := cli.GenerateKeyPair("b")
	if err != nil {
		t.Fatal(err)
	}
	for regName, host := range registries(t) {
		for _, legacy := range []bool{false, true} {
			format := map[bool]string{false: "bundle", true: "legacy"}[legacy]
			t.Run(regName+"/"+format, func(t *testing.T) {
				signedA := push(t, host, "app")
				if err := cli.Sign(keyA, signedA.String(), legacy); err != nil {
					t.Fatal(err)
				}
				// The CLI agrees the image is signed: what trustgate accepts
				// below is what cosign itself accepts.
				if err := cli.VerifyKey(pubA, signedA.String()); err != nil {
					t.Fatalf("cosign verify: %v", err)
				}
				res, err := keysVerifier(t, 1, pubA).Verify(context.Background(), subject(signedA))
				if err != nil {
					t.Fatalf("signed with A, verify with A: %v", err)
				}
				if res.Digest != signedA.DigestStr() || len(res.Signers) != 1 || !strings.HasPrefix(res.Signers[0], "key sha256:") {
					t.Fatalf("result = %+v", res)
				}
				if _, err := keysVerifier(t, 1, pubB).Verify(context.Background(), subject(signedA)); !errors.Is(err, verify.ErrUntrusted) {
					t.Fatalf("signed with A, verify with B = %v, want untrusted", err)
				}
				if _, err := keysVerifier(t, 2, pubA, pubB).Verify(context.Background(), subject(signedA)); !errors.Is(err, verify.ErrUntrusted) ||
					!strings.Contains(err.Error(), "1 of the 2 required key(s)") {
					t.Fatalf("one of two keys, threshold 2 = %v, want untrusted naming 1 of 2", err)
				}
				if err := cli.Sign(keyB, signedA.String(), legacy); err != nil {
					t.Fatal(err)
				}
				res, err = keysVerifier(t, 2, pubA, pubB).Verify(context.Background(), subject(signedA))
				if err != nil || len(res.Signers) != 2 {
					t.Fatalf("two of two keys, threshold 2 = %+v, %v", res, err)
				}

				unsigned := push(t, host, "unsigned")
				if _, err := keysVerifier(t, 1, pubA).Verify(context.Background(), subject(unsigned)); !errors.Is(err, verify.ErrUntrusted) ||
					!strings.Contains(err.Error(), "no cosign signature found") {
					t.Fatalf("unsigned = %v, want untrusted 'no cosign signature found'", err)
				}
			})
		}
	}
}

// TestCLIAttestationIsNotASignature: `cosign verify --key` accepts an image
// that only has an attestation by the key (the library checks no predicate
// type); trustgate does not.
func TestCLIAttestationIsNotASignature(t *testing.T) {
	cli := ch.NewCLI(t)
	key, pub, err := cli.GenerateKeyPair("att")
	if err != nil {
		t.Fatal(err)
	}
	host := debianRegistry(t).Host()
	img := push(t, host, "attested")
	if err := cli.Attest(key, img.String(), "https://example.com/x"); err != nil {
		t.Fatal(err)
	}
	if err := cli.VerifyKey(pub, img.String()); err != nil {
		t.Logf("cosign verify refused the attestation-only image (its gotcha may be fixed): %v", err)
	} else {
		t.Logf("cosign verify --key accepts the attestation-only image, as signing-schemes.md says")
	}
	_, err = keysVerifier(t, 1, pub).Verify(context.Background(), subject(img))
	if !errors.Is(err, verify.ErrUntrusted) || !strings.Contains(err.Error(), "attestation") {
		t.Fatalf("attestation only = %v, want untrusted naming the attestation", err)
	}
}

// TestCLISignatureForAnotherDigest: signature artifacts copied from image A
// to the tags of image B prove nothing about B.
func TestCLISignatureForAnotherDigest(t *testing.T) {
	cli := ch.NewCLI(t)
	key, pub, err := cli.GenerateKeyPair("copy")
	if err != nil {
		t.Fatal(err)
	}
	host := debianRegistry(t).Host()
	for _, legacy := range []bool{false, true} {
		a := push(t, host, "copy-a")
		b := a.Context().Digest(push(t, host, "copy-b").DigestStr())
		// b lives in its own repository; copy A's artifacts next to b's
		// digest in A's repository, where a verifier of b@A-repo looks.
		bRef, err := name.NewDigest(a.Context().Name() + "@" + b.DigestStr())
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.Sign(key, a.String(), legacy); err != nil {
			t.Fatal(err)
		}
		suffix := ""
		if legacy {
			suffix = ".sig"
		}
		src := a.Context().Tag(strings.Replace(a.DigestStr(), ":", "-", 1) + suffix)
		dst := a.Context().Tag(strings.Replace(b.DigestStr(), ":", "-", 1) + suffix)
		desc, err := remote.Get(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Put(dst, desc); err != nil {
			t.Fatal(err)
		}
		_, err = keysVerifier(t, 1, pub).Verify(context.Background(), verify.Subject{Ref: imageref.MustParse(bRef.String()), Digest: b.DigestStr()})
		if !errors.Is(err, verify.ErrUntrusted) {
			t.Fatalf("legacy=%v: A's signature under B's tag = %v, want untrusted", legacy, err)
		}
	}
}

// TestKeyless: signatures from an offline Sigstore on the Debian registry,
// in both formats, checked by trustgate and cross-checked by the CLI.
func TestKeyless(t *testing.T) {
	cli := ch.NewCLI(t)
	ss, err := ch.NewSigstore()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ss.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	trPath := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(trPath, tr, 0o600); err != nil {
		t.Fatal(err)
	}
	const iss, sub = "https://issuer.example.com", "dev@example.com"
	host := debianRegistry(t).Host()
	newV := func(t *testing.T, mut func(*cosign.Config)) *cosign.Verifier {
		cfg := cosign.Config{TrustedRoot: trPath, CertificateTransparency: cosign.Ignore,
			Keyless: &cosign.KeylessConfig{Identities: []cosign.Identity{{Issuer: iss, Subject: sub}}}}
		if mut != nil {
			mut(&cfg)
		}
		v, err := cosign.New("keyless", cfg, verify.Deps{RequestTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	attach := func(t *testing.T, img name.Digest, legacy bool, o ch.KeylessOptions) {
		t.Helper()
		if legacy {
			p, ann, err := ss.Legacy(img, o)
			if err == nil {
				err = ch.AttachLegacy(context.Background(), img, nil, p, ann)
			}
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		b, err := ss.Bundle(img, o)
		if err == nil {
			pt := o.PredicateType
			if pt == "" {
				pt = ch.SignPredicateType
			}
			err = ch.AttachBundle(context.Background(), img, nil, b, pt)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, legacy := range []bool{false, true} {
		format := map[bool]string{false: "bundle", true: "legacy"}[legacy]
		t.Run(format, func(t *testing.T) {
			img := push(t, host, "keyless")
			attach(t, img, legacy, ch.KeylessOptions{Subject: sub, Issuer: iss})
			if err := cli.VerifyKeyless(trPath, sub, iss, img.String()); err != nil {
				t.Fatalf("cosign verify (cross-check): %v", err)
			}
			if _, err := newV(t, nil).Verify(context.Background(), subject(img)); err != nil {
				t.Fatalf("right identity: %v", err)
			}
			wrongSub := newV(t, func(c *cosign.Config) { c.Keyless.Identities[0].Subject = "other@example.com" })
			if _, err := wrongSub.Verify(context.Background(), subject(img)); !errors.Is(err, verify.ErrUntrusted) {
				t.Fatalf("wrong subject = %v, want untrusted", err)
			}
			wrongIss := newV(t, func(c *cosign.Config) { c.Keyless.Identities[0].Issuer = "https://other.example.com" })
			if _, err := wrongIss.Verify(context.Background(), subject(img)); !errors.Is(err, verify.ErrUntrusted) {
				t.Fatalf("wrong issuer = %v, want untrusted", err)
			}

			// A certificate that expired 40 minutes ago: its log entry
			// proves it signed in time; without one, it is just expired.
			old := push(t, host, "keyless-expired")
			attach(t, old, legacy, ch.KeylessOptions{Subject: sub, Issuer: iss, NotBefore: time.Now().Add(-50 * time.Minute)})
			logOnly := newV(t, func(c *cosign.Config) { c.SignedTimestamp = cosign.Ignore })
			if _, err := logOnly.Verify(context.Background(), subject(old)); err != nil {
				t.Fatalf("expired cert with log timestamp: %v", err)
			}
			noTime := newV(t, func(c *cosign.Config) { c.SignedTimestamp, c.TransparencyLog = cosign.Ignore, cosign.Ignore })
			if _, err := noTime.Verify(context.Background(), subject(old)); !errors.Is(err, verify.ErrUntrusted) {
				t.Fatalf("expired cert without log timestamp = %v, want untrusted", err)
			}

			noLog := push(t, host, "keyless-nolog")
			attach(t, noLog, legacy, ch.KeylessOptions{Subject: sub, Issuer: iss, NoTlog: true})
			if _, err := newV(t, nil).Verify(context.Background(), subject(noLog)); !errors.Is(err, verify.ErrUntrusted) {
				t.Fatalf("no tlog entry, required by default = %v, want untrusted", err)
			}
			relaxed := newV(t, func(c *cosign.Config) { c.TransparencyLog = cosign.Ignore })
			if _, err := relaxed.Verify(context.Background(), subject(noLog)); err != nil {
				t.Fatalf("no tlog entry, transparencyLog: ignore: %v", err)
			}
		})
	}
}

// TestSlowRegistry: a registry slower than the request timeout is
// "unavailable", answered within the timeout, never "untrusted".
func TestSlowRegistry(t *testing.T) {
	cli := ch.NewCLI(t)
	key, pub, err := cli.GenerateKeyPair("slow")
	if err != nil {
		t.Fatal(err)
	}
	r := debianRegistry(t)
	img := push(t, r.Host(), "slow")
	if err := cli.Sign(key, img.String(), false); err != nil {
		t.Fatal(err)
	}
	proxy := dct.NewSlowProxy(t, r.Host())
	proxy.SetLatency(3 * time.Second)
	slowImg, err := name.NewDigest(proxy.Addr() + "/" + img.Context().RepositoryStr() + "@" + img.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	v, err := cosign.New("slow", cosign.Config{Keys: []string{pub}}, verify.Deps{RequestTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = v.Verify(ctx, subject(slowImg))
	if !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("slow registry = %v, want unavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("Verify outlived its caller's context: %v", err)
	}
	// The same image through the proxy without latency verifies: the
	// failure above was the delay, not the proxy.
	proxy.SetLatency(0)
	if _, err := keysVerifier(t, 1, pub).Verify(context.Background(), subject(slowImg)); err != nil {
		t.Fatalf("through the proxy without latency: %v", err)
	}
}
