package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

const dC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

// countingResolver counts resolutions: a digest is resolved once per image,
// whatever the number of digest-bound verifiers.
type countingResolver struct {
	fixedResolver
	calls atomic.Int64
}

func (r *countingResolver) Resolve(ctx context.Context, ref imageref.Ref, auth resolve.Auth) (string, error) {
	r.calls.Add(1)
	return r.fixedResolver.Resolve(ctx, ref, auth)
}

// The verifiers of these tests and what they say about reg.io/x/<image>:v1:
//
//	ok1, ok2   tag binders that sign every image with dA
//	okB        a tag binder that signs with dB (disagrees with ok1)
//	no1, no2   tag binders that sign nothing (a definite no)
//	down1/2    tag binders whose server is down (could not complete)
//	late       a tag binder that signs nothing and answers last
//	cos, cos2  digest-bound (cosign-like): trust dA only, never bind tags
//
// so each row's verdict follows from the combination alone.
const requirePolicy = `
settings: {deadline: 2s}
verifiers:
  - {name: ok1, type: notaryv1}
  - {name: ok2, type: notaryv1}
  - {name: okB, type: notaryv1}
  - {name: no1, type: notaryv1}
  - {name: no2, type: notaryv1}
  - {name: down1, type: notaryv1}
  - {name: down2, type: notaryv1}
  - {name: late, type: notaryv1}
  - {name: cos, type: notaryv1}
  - {name: cos2, type: notaryv1}
  - {name: slowok, type: notaryv1}
rules:
  - {name: all-pass, images: [reg.io/all-pass], verify: [ok1, ok2]}
  - {name: all-late-no, images: [reg.io/all-late-no], verify: [ok1, late]}
  - {name: all-late-no-3, images: [reg.io/all-late-no-3], verify: [ok1, ok2, late], require: all}
  - {name: all-down, images: [reg.io/all-down], verify: [ok1, down1]}
  - {name: all-no-and-down, images: [reg.io/all-no-and-down], verify: [no1, down1]}
  - {name: all-disagree, images: [reg.io/all-disagree], verify: [ok1, okB]}
  - {name: any-one, images: [reg.io/any-one], verify: [no1, ok1], require: any}
  - {name: any-down, images: [reg.io/any-down], verify: [down1, ok1], require: any}
  - {name: any-no-and-down, images: [reg.io/any-no-and-down], verify: [no1, down1], require: any}
  - {name: any-none, images: [reg.io/any-none], verify: [no1, no2], require: any}
  - {name: any-disagree, images: [reg.io/any-disagree], verify: [okB, ok1], require: any}
  - {name: k-pass, images: [reg.io/k-pass], verify: [ok1, no1, ok2], require: 2}
  - {name: k-no, images: [reg.io/k-no], verify: [ok1, no1, no2], require: 2}
  - {name: k-down, images: [reg.io/k-down], verify: [ok1, no1, down1], require: 2}
  - {name: k-downs, images: [reg.io/k-downs], verify: [down1, down2, no1], require: 2}
  - {name: bound-pass, images: [reg.io/bound-pass], verify: [ok1, cos]}
  - {name: bound-no, images: [reg.io/bound-no], verify: [okB, cos]}
  - {name: bound-any, images: [reg.io/bound-any], verify: [no1, cos], require: any}
  - {name: resolved, images: ["reg.io/resolved*"], verify: [cos, cos2]}
  - {name: any-slow, images: [reg.io/any-slow], verify: [ok1, slowok], require: any}
`

func requireVerifiers() []*tableVerifier {
	all := func(d string) map[string]string {
		m := map[string]string{}
		for _, r := range []string{"all-pass", "all-late-no", "all-late-no-3", "all-down", "all-no-and-down", "all-disagree",
			"any-one", "any-down", "any-no-and-down", "any-none", "any-disagree", "k-pass", "k-no", "k-down", "k-downs",
			"bound-pass", "bound-no", "bound-any", "resolved", "resolved-other", "any-slow"} {
			m["reg.io/"+r+":v1"] = d
		}
		return m
	}
	return []*tableVerifier{
		{name: "ok1", signed: all(dA)},
		{name: "ok2", signed: all(dA)},
		{name: "okB", signed: all(dB)},
		{name: "no1"},
		{name: "no2"},
		{name: "down1", down: true},
		{name: "down2", down: true},
		// Answers well after the others: a combination that stops at the
		// first pass would admit without it.
		{name: "late", delay: 100 * time.Millisecond},
		{name: "cos", signed: all(dA), digestBound: true},
		{name: "cos2", signed: all(dA), digestBound: true},
		{name: "slowok", signed: all(dA), delay: 50 * time.Millisecond},
	}
}

func TestRequireCombinations(t *testing.T) {
	type want struct {
		allowed, unavailable bool
		digest               string
		reason               []string // every one must appear
		statuses             map[string]Status
	}
	tests := []struct {
		image string
		want  want
	}{
		{"reg.io/all-pass:v1", want{allowed: true, digest: dA, statuses: map[string]Status{"ok1": Passed, "ok2": Passed}}},
		// Issue 9 item 10: a later "not trusted" under require: all denies,
		// even when an earlier verifier passed first.
		{"reg.io/all-late-no:v1", want{reason: []string{"not trusted", "late: not trusted"}, statuses: map[string]Status{"late": NotTrusted}}},
		{"reg.io/all-late-no-3:v1", want{reason: []string{"not trusted", "(all needed)"}, statuses: map[string]Status{"ok1": Passed, "ok2": Passed, "late": NotTrusted}}},
		{"reg.io/all-down:v1", want{unavailable: true, reason: []string{"could not complete", "server down"}, statuses: map[string]Status{"down1": Unavailable}}},
		// A definite no decides, whatever the unreachable verifier would say.
		{"reg.io/all-no-and-down:v1", want{reason: []string{"not trusted"}, statuses: map[string]Status{}}},
		{"reg.io/all-disagree:v1", want{reason: []string{"disagree", "ok1 proved " + dA, "okB proved " + dB}}},
		{"reg.io/any-one:v1", want{allowed: true, digest: dA, statuses: map[string]Status{"ok1": Passed}}},
		{"reg.io/any-down:v1", want{allowed: true, digest: dA, statuses: map[string]Status{"ok1": Passed}}},
		{"reg.io/any-no-and-down:v1", want{unavailable: true, reason: []string{"no verifier passed (one of 2 needed)", "server down", "is not signed"}, statuses: map[string]Status{"no1": NotTrusted, "down1": Unavailable}}},
		{"reg.io/any-none:v1", want{reason: []string{"not trusted: no verifier passed"}, statuses: map[string]Status{"no1": NotTrusted, "no2": NotTrusted}}},
		{"reg.io/k-pass:v1", want{allowed: true, digest: dA, statuses: map[string]Status{"ok1": Passed, "ok2": Passed}}},
		{"reg.io/k-no:v1", want{reason: []string{"not trusted", "no1: not trusted", "no2: not trusted"}, statuses: map[string]Status{"no1": NotTrusted, "no2": NotTrusted}}},
		// 1 passed, 1 no, 1 unreachable of 2 needed: the unreachable one
		// could still make it pass.
		{"reg.io/k-down:v1", want{unavailable: true, reason: []string{"1 of 3 verifiers passed (2 needed)"}, statuses: map[string]Status{"ok1": Passed, "no1": NotTrusted, "down1": Unavailable}}},
		{"reg.io/k-downs:v1", want{unavailable: true, statuses: map[string]Status{"no1": NotTrusted}}},
		// Digest-bound verifiers judge the digest the tag binder proved.
		{"reg.io/bound-pass:v1", want{allowed: true, digest: dA, statuses: map[string]Status{"ok1": Passed, "cos": Passed}}},
		{"reg.io/bound-no:v1", want{reason: []string{"not trusted"}, statuses: map[string]Status{"okB": Passed, "cos": NotTrusted}}},
		// No binder proved a digest: it is resolved from the registry.
		{"reg.io/bound-any:v1", want{allowed: true, digest: dA, statuses: map[string]Status{"no1": NotTrusted, "cos": Passed}}},
		{"reg.io/resolved:v1", want{allowed: true, digest: dA, statuses: map[string]Status{"cos": Passed, "cos2": Passed}}},
		{"reg.io/resolved-other:v1", want{reason: []string{"not trusted", "signed digest is " + dA}}},
		{"reg.io/resolved-missing:v1", want{unavailable: true, reason: []string{"could not be resolved"}, statuses: map[string]Status{"cos": Unavailable, "cos2": Unavailable}}},
		// A digest in the reference is judged by every verifier at once.
		{"reg.io/bound-pass:v1@" + dA, want{allowed: true, digest: dA, statuses: map[string]Status{"ok1": Passed, "cos": Passed}}},
		{"reg.io/bound-pass:v1@" + dB, want{reason: []string{"not trusted"}}},
	}
	for _, tc := range tests {
		t.Run(tc.image, func(t *testing.T) {
			res := &countingResolver{fixedResolver: fixedResolver{"reg.io/resolved:v1": dA, "reg.io/resolved-other:v1": dC, "reg.io/bound-any:v1": dA}}
			vs := requireVerifiers()
			e := New(newPolicy(t, requirePolicy, vs...), WithResolver(res))
			d := e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{tc.image}, Pin: true}).Decisions[0]
			if d.Allowed != tc.want.allowed || d.Unavailable != tc.want.unavailable {
				t.Fatalf("allowed=%v unavailable=%v (%s); want allowed=%v unavailable=%v", d.Allowed, d.Unavailable, d.Reason, tc.want.allowed, tc.want.unavailable)
			}
			if d.Allowed && d.Digest != tc.want.digest {
				t.Fatalf("digest %s, want %s", d.Digest, tc.want.digest)
			}
			if d.Verdict() != map[bool]string{true: "allow", false: map[bool]string{true: "unavailable", false: "deny"}[tc.want.unavailable]}[tc.want.allowed] {
				t.Fatalf("verdict %s", d.Verdict())
			}
			for _, r := range tc.want.reason {
				if !strings.Contains(d.Reason, r) {
					t.Errorf("reason %q does not contain %q", d.Reason, r)
				}
			}
			rule := e.Policy().Match(d.Ref, "default")
			if len(d.Outcomes) != len(rule.Verifiers) {
				t.Fatalf("%d outcomes for %d verifiers", len(d.Outcomes), len(rule.Verifiers))
			}
			for _, o := range d.Outcomes {
				if w, ok := tc.want.statuses[o.Verifier]; ok && o.Status != w {
					t.Errorf("outcome of %s: %s (%s), want %s", o.Verifier, o.Status, o.Reason, w)
				}
			}
			if strings.HasPrefix(tc.image, "reg.io/resolved") && res.calls.Load() != 1 {
				t.Errorf("digest resolved %d times for two digest-bound verifiers, want once", res.calls.Load())
			}
			// From memory, the same verdict (or a decline where an answer
			// was never cached, as for unavailability).
			if c, ok := e.EvaluateCached(Request{Namespace: "default", Images: []string{tc.image}, Pin: true}); ok {
				if g := c.Decisions[0]; g.Allowed != d.Allowed || g.Unavailable != d.Unavailable {
					t.Errorf("cached verdict allowed=%v unavailable=%v, evaluated %v %v", g.Allowed, g.Unavailable, d.Allowed, d.Unavailable)
				}
			} else if d.Allowed {
				t.Errorf("an admitted image is not answered from memory")
			}
		})
	}
}

// meetVerifier passes only if every verifier of its group is running at the
// same time: run one after another, the first one gives up.
type meetVerifier struct {
	name  string
	group chan struct{}
	size  int
	seen  *atomic.Int64
}

func (v *meetVerifier) Name() string    { return v.name }
func (v *meetVerifier) Type() string    { return "meet" }
func (v *meetVerifier) BindsTags() bool { return true }
func (v *meetVerifier) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	if v.seen.Add(1) == int64(v.size) {
		close(v.group)
	}
	select {
	case <-v.group:
		return &verify.Result{Digest: dA, Reason: "met"}, nil
	case <-time.After(time.Second):
		return nil, fmt.Errorf("%w: %s ran alone", verify.ErrUnavailable, v.name)
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", verify.ErrUnavailable, ctx.Err())
	}
}

func TestVerifiersOfARuleRunInParallel(t *testing.T) {
	group, seen := make(chan struct{}), new(atomic.Int64)
	vs := []*meetVerifier{{"m1", group, 3, seen}, {"m2", group, 3, seen}, {"m3", group, 3, seen}}
	byName := map[string]verify.Verifier{}
	for _, v := range vs {
		byName[v.name] = v
	}
	p := newPolicyWith(t, `
verifiers: [{name: m1, type: notaryv1}, {name: m2, type: notaryv1}, {name: m3, type: notaryv1}]
rules: [{name: r, images: [reg.io/x], verify: [m1, m2, m3]}]
`, byName)
	d := New(p).Evaluate(context.Background(), Request{Namespace: "default", Images: []string{"reg.io/x:v1"}}).Decisions[0]
	if !d.Allowed {
		t.Fatalf("three verifiers did not run at the same time: %s", d.Reason)
	}
}

func TestDeprecatedOnly(t *testing.T) {
	vs := requireVerifiers()
	doc := strings.Replace(requirePolicy, "{name: ok1, type: notaryv1}", `{name: ok1, type: notaryv1, deprecated: "DCT ends on Docker Hub on 2026-12-08"}`, 1)
	e := New(newPolicy(t, doc, vs...))
	for _, tc := range []struct {
		image string
		want  []string
	}{
		{"reg.io/any-one:v1", []string{"ok1"}},  // admitted by ok1 alone
		{"reg.io/all-pass:v1", nil},             // ok2 is not deprecated
		{"reg.io/any-none:v1", nil},             // not admitted at all
		{"reg.io/bound-pass:v1", nil},           // cos is not deprecated
		{"reg.io/any-down:v1", []string{"ok1"}}, // down1 did not pass
		// ok1 (deprecated) passes first, but the slower current verifier is
		// awaited: it passes too, so the image does not depend on ok1 alone.
		{"reg.io/any-slow:v1", nil},
	} {
		d := e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{tc.image}}).Decisions[0]
		var got []string
		for _, o := range d.DeprecatedOnly() {
			got = append(got, o.Verifier)
			if o.Deprecated != "DCT ends on Docker Hub on 2026-12-08" {
				t.Errorf("%s: deprecation reason %q", tc.image, o.Deprecated)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: deprecated-only %v, want %v", tc.image, got, tc.want)
		}
	}
}

func TestSubjectKeychainIsLazy(t *testing.T) {
	var asked atomic.Int64
	vs := requireVerifiers()
	e := New(newPolicy(t, requirePolicy, vs...),
		WithResolver(fixedResolver{"reg.io/resolved:v1": dA}),
		WithKeychain(func(context.Context, resolve.Auth) (authn.Keychain, error) {
			asked.Add(1)
			return nil, errors.New("no secrets here")
		}))
	d := e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{"reg.io/resolved:v1"}}).Decisions[0]
	if !d.Allowed || asked.Load() != 0 {
		t.Fatalf("allowed=%v (%s); pod credentials read %d times by verifiers that never asked", d.Allowed, d.Reason, asked.Load())
	}
}

func newPolicyWith(t testing.TB, doc string, byName map[string]verify.Verifier) *policy.Policy {
	t.Helper()
	return policytest.Parse(t, "test", "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\n"+doc,
		policytest.Scheme("notaryv1", func(name string, _ verify.Deps) (verify.Verifier, error) { return byName[name], nil }))
}

// A digest that cannot be resolved for pinning is "could not complete"
// unless the registry says the tag does not exist.
func TestPinResolveFailureIsUnavailable(t *testing.T) {
	e := New(newPolicy(t, basePolicy, &tableVerifier{name: "dct"}, &tableVerifier{name: "cosign"}), WithResolver(fixedResolver{}))
	d := e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{"nginx:2"}, Pin: true}).Decisions[0]
	if d.Allowed || !d.Unavailable || d.Verdict() != "unavailable" {
		t.Fatalf("%+v, want unavailable", d)
	}
	if resolveUnavailable(&transport.Error{StatusCode: http.StatusNotFound}) || !resolveUnavailable(&transport.Error{StatusCode: http.StatusBadGateway}) {
		t.Fatal("404 is a definite no, 502 could not complete")
	}
}
