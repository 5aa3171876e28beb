// Package engine turns a list of image references into admission decisions:
// normalize, match the policy's rules, verify (through the decision cache, with
// concurrent identical verifications coalesced), and work out the digest to pin.
// It knows nothing of HTTP or AdmissionReview, so the webhook, `trustgate
// verify` and `trustgate check` make exactly the same decision.
package engine

import (
	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/policy"
)

// Request is one evaluation.
type Request struct {
	// Namespace of the object; exempt namespaces are not judged.
	Namespace string
	// Images as written in the object; duplicates are judged once.
	Images []string
	// Pin asks for a digest for every allowed image of a pinning rule, resolving
	// it from the registry when the verifier proved none (the mutate path).
	Pin bool
	// RequireDigest refuses a reference without a digest under a rule that
	// pins (the /validate path: /mutate should have pinned it), unless the
	// policy sets settings.validateRequiresDigest: false. `trustgate check`
	// and `verify` leave it off.
	RequireDigest bool
	// ServiceAccount and PullSecrets name the credentials the pod pulls with
	// (imagePullSecrets), for resolving digests from private registries.
	ServiceAccount string
	PullSecrets    []string
}

// Decision is the verdict for one distinct image.
type Decision struct {
	Image   string       // as written in the object
	Ref     imageref.Ref // zero when Image did not parse
	Rule    string       // matched rule, "" when none matched
	Action  string       // "verify", "allow", "deny" or "unmatched"
	Allowed bool
	// Digest is the verified (or, for allow rules, resolved) digest, if known.
	Digest string
	// Pin is the reference to write instead of Image ("" = leave as written).
	Pin     string
	Signers []string
	Reason  string
	Cached  bool
	// Unavailable marks a deny because a check could not complete
	// (timeout, server error) rather than a definite no: the API server is
	// told so (a 503, not a 403), and it is never cached.
	Unavailable bool
	// Outcomes records what each verifier of the rule said (combine.go).
	Outcomes []Outcome
}

// Report is the outcome of one Request.
type Report struct {
	Mode      policy.Mode
	Exempt    bool       // the namespace is exempt: nothing was judged
	Decisions []Decision // one per distinct image, in first-seen order
}

// Denied returns the decisions that did not pass, whatever the mode.
func (r Report) Denied() []Decision {
	var out []Decision
	for _, d := range r.Decisions {
		if !d.Allowed {
			out = append(out, d)
		}
	}
	return out
}

// PinFor returns the pinned reference decided for image, or "".
func (r Report) PinFor(image string) string {
	for _, d := range r.Decisions {
		if d.Image == image && d.Allowed {
			return d.Pin
		}
	}
	return ""
}
