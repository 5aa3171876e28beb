package engine

import (
	"context"
	"strings"
	"testing"
)

// /validate (RequireDigest) refuses a tag-only reference under a rule that
// pins: the mutating webhook should have pinned it. Everything else decides
// as before, and the CLI (no RequireDigest) is not affected.
func TestValidateRequiresDigest(t *testing.T) {
	dct := &tableVerifier{name: "dct", signed: map[string]string{"reg.io/team/app:v1": dA}}
	resolver := fixedResolver{"docker.io/library/nginx:1": dB}
	strict := New(newPolicy(t, basePolicy, dct, &tableVerifier{name: "cosign"}), WithResolver(resolver))
	relaxed := New(newPolicy(t, strings.Replace(basePolicy, "settings: {deadline: 2s}", "settings: {deadline: 2s, validateRequiresDigest: false}", 1),
		dct, &tableVerifier{name: "cosign"}), WithResolver(resolver))
	explicit := New(newPolicy(t, strings.Replace(basePolicy, "settings: {deadline: 2s}", "settings: {deadline: 2s, validateRequiresDigest: true}", 1),
		dct, &tableVerifier{name: "cosign"}), WithResolver(resolver))

	const notPinned = "the mutating webhook (/mutate) did not pin it"
	tests := []struct {
		name    string
		e       *Engine
		image   string
		require bool // RequireDigest (/validate)
		pin     bool // Pin (/mutate, check --pin)
		allowed bool
		reason  string
	}{
		{name: "validate: signed tag left unpinned", e: strict, image: "reg.io/team/app:v1", require: true, reason: notPinned},
		{name: "validate: explicit default", e: explicit, image: "reg.io/team/app:v1", require: true, reason: notPinned},
		{name: "validate: pinned by mutate", e: strict, image: "reg.io/team/app:v1@" + dA, require: true, allowed: true},
		{name: "validate: digest only", e: strict, image: "reg.io/team/app@" + dA, require: true, allowed: true},
		{name: "validate: unsigned tag says unsigned", e: strict, image: "reg.io/team/app:v2", require: true, reason: "is not signed"},
		{name: "validate: allow rule that pins", e: strict, image: "nginx:1", require: true, reason: notPinned},
		{name: "validate: allow rule that does not pin", e: strict, image: "reg.io/nopin/x:1", require: true, allowed: true},
		{name: "validate: deny rule", e: strict, image: "reg.io/banned/x:1", require: true, reason: "denies"},
		{name: "validate: unmatched", e: strict, image: "evil.io/x:1", require: true, reason: "no rule matches"},
		{name: "validate only: relaxed by the policy", e: relaxed, image: "reg.io/team/app:v1", require: true, allowed: true},
		{name: "mutate pins as before", e: strict, image: "reg.io/team/app:v1", pin: true, allowed: true},
		{name: "check/verify unaffected", e: strict, image: "reg.io/team/app:v1", allowed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{Namespace: "default", Images: []string{tc.image}, Pin: tc.pin, RequireDigest: tc.require}
			d := tc.e.Evaluate(context.Background(), req).Decisions[0]
			if d.Allowed != tc.allowed || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("decision %+v; want allowed=%v, reason containing %q", d, tc.allowed, tc.reason)
			}
			if !d.Allowed && d.Pin != "" {
				t.Fatalf("a denied decision carries a pin: %+v", d)
			}
			// The fast path decides the same once the cache is warm.
			if c, ok := tc.e.EvaluateCached(req); ok && (c.Decisions[0].Allowed != d.Allowed || c.Decisions[0].Reason != d.Reason) {
				t.Fatalf("EvaluateCached decided %+v, Evaluate %+v", c.Decisions[0], d)
			}
		})
	}
}
