// Package policytest builds policies for tests whose verifiers the test
// makes itself (fakes, stubs, or real verifiers with a fixed configuration).
package policytest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Scheme registers type typ with verifiers made by build. The verifier's
// block, if any, is accepted as written and not read: the test decides
// what each verifier is, by name.
func Scheme(typ string, build func(name string, deps verify.Deps) (verify.Verifier, error)) verify.Scheme {
	return verify.Scheme{
		Type:   typ,
		Config: func() any { return new(json.RawMessage) },
		New: func(name string, _ any, deps verify.Deps) (verify.Verifier, error) {
			return build(name, deps)
		},
	}
}

// Parse builds the policy doc (source names it in errors) with schemes,
// failing tb if the schemes do not register or the policy does not load.
func Parse(tb testing.TB, source, doc string, schemes ...verify.Scheme) *policy.Policy {
	tb.Helper()
	r, err := verify.NewRegistry(schemes...)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := policy.NewLoader(r, verify.Deps{}).Parse([]byte(doc), source)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Build builds one verifier of scheme s from its configuration block as
// written, as the policy loader does (strict decoding into s.Config(), then
// s.New), for tests of a scheme's configuration. A decoding error is
// prefixed "<type> <name>: ", as the scheme's own errors are.
func Build(s verify.Scheme, name string, block json.RawMessage, deps verify.Deps) (verify.Verifier, error) {
	cfg := s.Config()
	if err := verify.DecodeStrict(block, cfg); err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.Type, name, err)
	}
	return s.New(name, cfg, deps)
}
