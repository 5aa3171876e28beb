package notation

import (
	"context"
	"testing"

	notationgo "github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/trustgate-dev/trustgate/internal/verify"
	harness "github.com/trustgate-dev/trustgate/test/harness/notation"
)

// FuzzCheckEnvelope feeds registry-controlled bytes (an envelope, with and
// without the manifest's subject) to the checks: never a panic, and never a
// pass unless the bytes are a genuine signature of the digest under
// judgement. The seeds are real JWS and COSE signatures made at start.
func FuzzCheckEnvelope(f *testing.F) {
	ca, err := harness.NewCA(harness.Subject("acme", "root"))
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	if err != nil {
		f.Fatal(err)
	}
	v, err := New("fuzz", &Config{
		TrustStores:       TrustStores{CA: []string{ca.PEM()}},
		TrustedIdentities: []string{harness.Identity("acme", "release")},
	}, verify.Deps{})
	if err != nil {
		f.Fatal(err)
	}
	target := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("image"), Size: 5}
	s, err := signer.NewGenericSigner(leaf.Key, leaf.Chain)
	if err != nil {
		f.Fatal(err)
	}
	mediaTypes := []string{harness.JWS, harness.COSE}
	for i, mt := range mediaTypes {
		env, _, err := s.Sign(context.Background(), target, notationgo.SignerSignOptions{SignatureMediaType: mt})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), true, env)
		f.Add(uint8(i), false, env)
	}
	f.Fuzz(func(t *testing.T, which uint8, withSubject bool, env []byte) {
		mt := mediaTypes[int(which)%len(mediaTypes)]
		var subject *ocispec.Descriptor
		if withSubject {
			subject = &target
		}
		res, err := v.check(context.Background(), target.Digest, "r.example/app@"+target.Digest.String(), "sha256:fuzz", mt, env, subject)
		if err == nil {
			// Only a genuine signature passes: the envelope verifies and
			// names exactly the target.
			got, err := signedTarget(mt, env)
			if err != nil || got.Digest != target.Digest || res.Digest != target.Digest.String() {
				t.Fatalf("passed: result %+v, signed target %+v (%v)", res, got, err)
			}
		}
	})
}
