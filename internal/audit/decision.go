package audit

import (
	"strings"

	"github.com/trustgate-dev/trustgate/internal/engine"
)

// passedVerifiers names the verifiers whose check passed for d.
func passedVerifiers(d engine.Decision) []string {
	return nil
}

// Incomplete reports whether d is a deny because a check could not complete
// (a server down or slow), not a definite "not trusted".
func Incomplete(d engine.Decision) bool {
	return !d.Allowed && (strings.Contains(d.Reason, "could not complete") || strings.Contains(d.Reason, "timed out"))
}
