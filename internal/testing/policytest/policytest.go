// Package policytest builds policies for tests whose verifiers the test
// makes itself (fakes, stubs, or real verifiers with a fixed configuration).
package policytest

import (
	"encoding/json"
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
