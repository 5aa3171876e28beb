package verify

import (
	"context"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/imageref"
)

// Subject is what a verifier judges: one image, the manifest digest under
// judgement, and the credentials to reach its registry.
//
// This is the contract of the verifier model (issue 10). During the
// migration, the engine still calls Verifier.Verify(ctx, ref); schemes
// written for the model (cosign, notation) implement SubjectVerifier and the
// engine moves to it.
type Subject struct {
	// Ref is the normalized reference as written (tag and/or digest).
	Ref imageref.Ref
	// Digest is the manifest under judgement ("sha256:…"). The engine sets it
	// before digest-bound schemes run: from the reference, from a tag binder's
	// proof, or resolved once from the registry. Tag binders (notaryv1,
	// acrSignedTag) may be called with it empty and then say which digest
	// the tag means.
	Digest string
	// Keychain reaches the image's registry: the pod's pull secrets (serve
	// --pull-secrets), the verifier's own credentials, the local docker
	// config for the CLI. Never nil (authn.DefaultKeychain or
	// anonymous at worst).
	Keychain authn.Keychain
}

// SubjectVerifier is the verifier contract of the model: Verify judges a
// subject. The error rules are those of Verifier: a Result only when trusted,
// errors wrap ErrUntrusted (a definite no) or ErrUnavailable (could not
// complete). The Result's Digest must equal s.Digest when s.Digest is set.
type SubjectVerifier interface {
	Name() string
	Type() string
	VerifySubject(ctx context.Context, s Subject) (*Result, error)
}

// TagBinder is implemented by schemes whose signed metadata binds tags to
// digests (notaryv1, acrSignedTag): the engine asks them first and judges
// the digest they prove with the rule's other verifiers.
type TagBinder interface {
	BindsTags() bool
}
