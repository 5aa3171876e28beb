package audit

import (
	"time"

	"github.com/trustgate-dev/trustgate/internal/engine"
)

// passedVerifiers names the verifiers whose check passed for d.
func passedVerifiers(d engine.Decision) []string {
	var out []string
	for _, o := range d.Outcomes {
		if o.Status == engine.Passed {
			out = append(out, o.Verifier)
		}
	}
	return out
}

// deprecatedOnly names the verifiers an admission rests on when all of them
// are deprecated.
func deprecatedOnly(d engine.Decision) []string {
	var out []string
	for _, o := range d.DeprecatedOnly() {
		out = append(out, o.Verifier)
	}
	return out
}

// expiresOf is when the trust data behind d runs out (zero: not known).
func expiresOf(d engine.Decision) time.Time { return d.Expires() }
