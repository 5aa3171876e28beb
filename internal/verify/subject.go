package verify

import (
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/imageref"
)

// Subject is what a verifier judges: one image, the manifest digest under
// judgement, and the credentials to reach its registry.
type Subject struct {
	// Ref is the normalized reference as written (tag and/or digest).
	Ref imageref.Ref
	// Digest is the manifest under judgement ("sha256:…"). The engine sets it
	// before digest-bound schemes run: from the reference, from a tag binder's
	// proof, or resolved once from the registry. Tag binders (notaryv1,
	// acrSignedTag) are called with the reference's own digest (empty for a
	// tag) and say which digest the tag means; given a digest, they judge
	// tag@digest.
	Digest string
	// Keychain reaches the image's registry: the pod's pull secrets (serve
	// --pull-secrets), the local docker config for the CLI. The engine sets
	// it (lazily: nothing is read until a verifier asks); a verifier with
	// credentials of its own may ignore it. Nil means anonymous.
	Keychain authn.Keychain
}

// Reference returns the reference to judge: Ref, with Digest attached when
// the reference names none.
func (s Subject) Reference() imageref.Ref {
	if s.Digest != "" && s.Ref.Digest() == "" && !s.Ref.IsZero() {
		return s.Ref.WithDigest(s.Digest)
	}
	return s.Ref
}

// TagBinder is implemented by schemes whose signed metadata binds tags to
// digests (notaryv1, acrSignedTag): the engine asks them first and judges
// the digest they prove with the rule's other verifiers. Other schemes judge
// a digest the engine resolved once from the registry.
type TagBinder interface {
	BindsTags() bool
}

// BindsTags reports whether v says which digest a tag means.
func BindsTags(v Verifier) bool {
	b, ok := v.(TagBinder)
	return ok && b.BindsTags()
}
