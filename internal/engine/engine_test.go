package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

const (
	dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// tableVerifier trusts the tags in its table, each to one digest, and
// counts its calls. It stands for a signature scheme; the schemes themselves
// are tested against real servers in their own packages.
type tableVerifier struct {
	name   string
	signed map[string]string // repository:tag → digest
	delay  time.Duration
	down   bool
	calls  atomic.Int64
	// digestBound makes it a scheme that judges a digest the engine gives
	// it (cosign, Notation) instead of binding tags.
	digestBound bool
}

func (v *tableVerifier) BindsTags() bool { return !v.digestBound }

func (v *tableVerifier) Name() string { return v.name }
func (v *tableVerifier) Type() string { return "table" }
func (v *tableVerifier) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	v.calls.Add(1)
	ref := s.Reference()
	if v.delay > 0 {
		select {
		case <-time.After(v.delay):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v", verify.ErrUnavailable, ctx.Err())
		}
	}
	if v.down {
		return nil, fmt.Errorf("%w: server down", verify.ErrUnavailable)
	}
	if ref.Tag() == "" {
		for _, d := range v.signed {
			if d == ref.Digest() {
				return &verify.Result{Digest: d, Reason: "signed"}, nil
			}
		}
		return nil, fmt.Errorf("%w: digest not signed", verify.ErrUntrusted)
	}
	d, ok := v.signed[ref.Repository()+":"+ref.Tag()]
	if !ok {
		return nil, fmt.Errorf("%w: %s is not signed", verify.ErrUntrusted, ref)
	}
	if ref.Digest() != "" && ref.Digest() != d {
		return nil, fmt.Errorf("%w: signed digest is %s", verify.ErrUntrusted, d)
	}
	return &verify.Result{Digest: d, Signers: []string{v.name}, Reason: "signed"}, nil
}

type fixedResolver map[string]string

func (r fixedResolver) Resolve(_ context.Context, ref imageref.Ref, _ resolve.Auth) (string, error) {
	if d, ok := r[ref.String()]; ok {
		return d, nil
	}
	return "", fmt.Errorf("manifest unknown")
}

func newPolicy(t testing.TB, doc string, vs ...*tableVerifier) *policy.Policy {
	t.Helper()
	byName := map[string]*tableVerifier{}
	for _, v := range vs {
		byName[v.name] = v
	}
	return policytest.Parse(t, "test", "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\n"+doc,
		policytest.Scheme("notaryv1", func(name string, _ verify.Deps) (verify.Verifier, error) { return byName[name], nil }))
}

const basePolicy = `
exemptNamespaces: [kube-system]
settings: {deadline: 2s}
verifiers:
  - {name: dct, type: notaryv1}
  - {name: cosign, type: notaryv1}
rules:
  - {name: ours, images: ["reg.io/team/**"], verify: [dct]}
  - {name: both, images: ["reg.io/strict/*"], verify: [dct, cosign]}
  - {name: either, images: ["reg.io/migrating/*"], verify: [dct, cosign], require: any}
  - {name: base, images: ["docker.io/library/*"], action: allow}
  - {name: nopin, images: ["reg.io/nopin/*"], action: allow, pinDigest: false}
  - {name: banned, images: ["reg.io/banned/**"], action: deny}
`

func TestEvaluate(t *testing.T) {
	dct := &tableVerifier{name: "dct", signed: map[string]string{
		"reg.io/team/app:v1": dA, "reg.io/strict/app:v1": dA, "reg.io/strict/split:v1": dA, "reg.io/migrating/app:v1": dA,
		"reg.io/strict/only-dct:v1": dA,
	}}
	cosign := &tableVerifier{name: "cosign", signed: map[string]string{
		"reg.io/strict/app:v1": dA, "reg.io/strict/split:v1": dB, "reg.io/migrating/new:v1": dB,
	}}
	e := New(newPolicy(t, basePolicy, dct, cosign), WithResolver(fixedResolver{"docker.io/library/nginx:1": dB}))

	tests := []struct {
		name, image, ns string
		pin             bool
		allowed         bool
		rule, digest    string
		pinTo           string
		reason          string
	}{
		{name: "signed tag", image: "reg.io/team/app:v1", allowed: true, rule: "ours", digest: dA},
		{name: "signed tag pinned", image: "reg.io/team/app:v1", pin: true, allowed: true, rule: "ours", digest: dA, pinTo: "reg.io/team/app:v1@" + dA},
		{name: "signed tag with its digest", image: "reg.io/team/app:v1@" + dA, pin: true, allowed: true, rule: "ours", digest: dA},
		{name: "signed tag with other digest", image: "reg.io/team/app:v1@" + dB, pin: true, rule: "ours", reason: "signed digest is"},
		{name: "digest only", image: "reg.io/team/app@" + dA, allowed: true, rule: "ours", digest: dA},
		{name: "unsigned tag", image: "reg.io/team/app:v2", rule: "ours", reason: "is not signed"},
		{name: "all of two", image: "reg.io/strict/app:v1", pin: true, allowed: true, rule: "both", digest: dA, pinTo: "reg.io/strict/app:v1@" + dA},
		// Issue 9 item 10: the second verifier's "not trusted" denies although the first passed.
		{name: "all of two, one missing", image: "reg.io/strict/only-dct:v1", rule: "both", reason: "cosign: not trusted: reg.io/strict/only-dct:v1 is not signed"},
		{name: "invalid reference", image: "reg.io/team/../strict/x:v1", rule: "", reason: "invalid image reference"},
		{name: "verifiers disagree", image: "reg.io/strict/split:v1", rule: "both", reason: "disagree"},
		{name: "any: old scheme", image: "reg.io/migrating/app:v1", allowed: true, rule: "either", digest: dA},
		{name: "any: new scheme", image: "reg.io/migrating/new:v1", allowed: true, rule: "either", digest: dB},
		{name: "any: neither", image: "reg.io/migrating/none:v1", rule: "either", reason: "no verifier passed"},
		{name: "allow rule", image: "nginx:1", allowed: true, rule: "base"},
		{name: "allow rule pins by resolving", image: "nginx:1", pin: true, allowed: true, rule: "base", digest: dB, pinTo: "docker.io/library/nginx:1@" + dB},
		{name: "allow rule cannot resolve", image: "nginx:2", pin: true, rule: "base", reason: "could not be resolved"},
		{name: "allow rule without pinning", image: "reg.io/nopin/x:1", pin: true, allowed: true, rule: "nopin"},
		{name: "deny rule", image: "reg.io/banned/x:1", rule: "banned", reason: "denies"},
		{name: "unmatched", image: "evil.io/app:v1", reason: "no rule matches evil.io/app"},
		{name: "unparsable", image: "UPPER/Case", reason: "lower case"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{tc.image}, Pin: tc.pin})
			if len(rep.Decisions) != 1 {
				t.Fatalf("got %d decisions", len(rep.Decisions))
			}
			d := rep.Decisions[0]
			if d.Allowed != tc.allowed || d.Rule != tc.rule || d.Digest != tc.digest || d.Pin != tc.pinTo {
				t.Fatalf("decision %+v; want allowed=%v rule=%q digest=%q pin=%q", d, tc.allowed, tc.rule, tc.digest, tc.pinTo)
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestEvaluateExemptAndDedup(t *testing.T) {
	dct := &tableVerifier{name: "dct", signed: map[string]string{"reg.io/team/app:v1": dA}}
	e := New(newPolicy(t, basePolicy, dct, &tableVerifier{name: "cosign"}))
	rep := e.Evaluate(context.Background(), Request{Namespace: "kube-system", Images: []string{"evil.io/x"}})
	if !rep.Exempt || len(rep.Decisions) != 0 || dct.calls.Load() != 0 {
		t.Fatalf("exempt namespace judged: %+v", rep)
	}
	rep = e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{"reg.io/team/app:v1", "evil.io/x", "reg.io/team/app:v1"}})
	if len(rep.Decisions) != 2 || rep.Decisions[0].Image != "reg.io/team/app:v1" || rep.Decisions[1].Image != "evil.io/x" {
		t.Fatalf("decisions not deduplicated in order: %+v", rep.Decisions)
	}
	if len(rep.Denied()) != 1 || dct.calls.Load() != 1 {
		t.Fatalf("denied=%d calls=%d", len(rep.Denied()), dct.calls.Load())
	}
}

func TestConcurrentIdenticalVerificationsCoalesce(t *testing.T) {
	dct := &tableVerifier{name: "dct", delay: 50 * time.Millisecond, signed: map[string]string{"reg.io/team/app:v1": dA}}
	e := New(newPolicy(t, basePolicy, dct, &tableVerifier{name: "cosign"}))
	var wg sync.WaitGroup
	var allowed atomic.Int64
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep := e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{"reg.io/team/app:v1"}})
			if len(rep.Denied()) == 0 {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := dct.calls.Load(); got != 1 {
		t.Fatalf("500 concurrent admissions caused %d verifier calls, want 1", got)
	}
	if allowed.Load() != 500 {
		t.Fatalf("%d of 500 admitted", allowed.Load())
	}
}

func TestCacheSemantics(t *testing.T) {
	dct := &tableVerifier{name: "dct", signed: map[string]string{"reg.io/team/app:v1": dA}}
	cosign := &tableVerifier{name: "cosign"}
	e := New(newPolicy(t, basePolicy, dct, cosign))
	eval := func(img string) Decision {
		return e.Evaluate(context.Background(), Request{Namespace: "default", Images: []string{img}, Pin: true}).Decisions[0]
	}
	if d := eval("reg.io/team/app:v1"); !d.Allowed || d.Cached {
		t.Fatalf("first: %+v", d)
	}
	// The pinned form a template rewrite produces is answered from the cache.
	if d := eval("reg.io/team/app:v1@" + dA); !d.Allowed || !d.Cached || dct.calls.Load() != 1 {
		t.Fatalf("pinned form: %+v, calls=%d", d, dct.calls.Load())
	}
	// Definite denies are cached briefly; unavailability is never cached.
	eval("reg.io/team/app:v9")
	eval("reg.io/team/app:v9")
	if dct.calls.Load() != 2 {
		t.Fatalf("deny not cached: calls=%d", dct.calls.Load())
	}
	dct.down = true
	eval("reg.io/team/other:v1")
	dct.down = false
	dct.signed["reg.io/team/other:v1"] = dB
	if d := eval("reg.io/team/other:v1"); !d.Allowed {
		t.Fatalf("transient failure was cached: %+v", d)
	}
	// A new policy generation never reuses decisions of the old one.
	before := dct.calls.Load()
	e.SetPolicy(newPolicy(t, basePolicy+"  - {name: extra, images: [x.io/y], action: allow}\n", dct, cosign))
	eval("reg.io/team/app:v1")
	if dct.calls.Load() != before+1 {
		t.Fatal("cached decision survived a policy change")
	}
}

func TestDeadline(t *testing.T) {
	dct := &tableVerifier{name: "dct", delay: time.Hour, signed: map[string]string{"reg.io/team/app:v1": dA}}
	e := New(newPolicy(t, basePolicy, dct, &tableVerifier{name: "cosign"}))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep := e.Evaluate(ctx, Request{Namespace: "default", Images: []string{"reg.io/team/app:v1", "nginx"}})
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Evaluate took %s past a 100ms deadline", el)
	}
	d := rep.Decisions[0]
	if d.Allowed || !strings.Contains(d.Reason, "timed out") {
		t.Fatalf("slow verification: %+v, want a deny that says timed out", d)
	}
	if !rep.Decisions[1].Allowed {
		t.Fatalf("the fast image was not decided: %+v", rep.Decisions[1])
	}
}

func TestEvaluateCached(t *testing.T) {
	dct := &tableVerifier{name: "dct", signed: map[string]string{"reg.io/team/app:v1": dA}}
	e := New(newPolicy(t, basePolicy, dct, &tableVerifier{name: "cosign"}), WithResolver(fixedResolver{"docker.io/library/nginx:1": dB}))
	req := func(ns string, pin bool, imgs ...string) Request {
		return Request{Namespace: ns, Images: imgs, Pin: pin}
	}

	// Decided by the policy alone: no verification needed.
	for _, r := range []Request{req("kube-system", true, "evil.io/x"), req("default", false, "evil.io/x", "reg.io/banned/x:1", "UPPER/x", "nginx:1")} {
		if _, ok := e.EvaluateCached(r); !ok {
			t.Fatalf("EvaluateCached(%+v) declined a request the policy alone decides", r)
		}
	}
	// Needs a verification or a resolution: declined, without calling anything.
	for _, r := range []Request{req("default", false, "reg.io/team/app:v1"), req("default", true, "nginx:1"), req("default", false, "evil.io/x", "reg.io/team/app:v1")} {
		if _, ok := e.EvaluateCached(r); ok {
			t.Fatalf("EvaluateCached(%+v) answered without the cache", r)
		}
	}
	if dct.calls.Load() != 0 {
		t.Fatalf("EvaluateCached called the verifier %d times", dct.calls.Load())
	}
	// Once Evaluate has verified and resolved, the same request is answered
	// from memory, with the same decisions.
	r := req("default", true, "reg.io/team/app:v1", "nginx:1", "reg.io/team/app:v2")
	want := e.Evaluate(context.Background(), r)
	got, ok := e.EvaluateCached(r)
	if !ok {
		t.Fatal("EvaluateCached declined a warm request")
	}
	if len(got.Decisions) != len(want.Decisions) {
		t.Fatalf("decisions: %+v vs %+v", got.Decisions, want.Decisions)
	}
	for i := range want.Decisions {
		g, w := got.Decisions[i], want.Decisions[i]
		if g.Allowed != w.Allowed || g.Pin != w.Pin || g.Digest != w.Digest || g.Reason != w.Reason || g.Rule != w.Rule {
			t.Errorf("cached decision %+v, evaluated %+v", g, w)
		}
	}
	if calls := dct.calls.Load(); calls != 2 {
		t.Fatalf("verifier calls = %d, want 2 (v1 and v2 once each)", calls)
	}
}

func TestDistinct(t *testing.T) {
	many := make([]string, 0, 60)
	for i := range 30 {
		many = append(many, fmt.Sprintf("reg.io/x/%d", i%20))
	}
	for _, tc := range []struct {
		in   []string
		want int
	}{
		{[]string{"a", "b", "c"}, 3},
		{[]string{"a", "b", "a", "c", "b"}, 3},
		{many, 20},
	} {
		got := distinct(tc.in)
		if len(got) != tc.want {
			t.Fatalf("distinct(%v) = %v, want %d images", tc.in, got, tc.want)
		}
		for i, img := range got {
			if slices.Contains(got[:i], img) || !slices.Contains(tc.in, img) {
				t.Fatalf("distinct(%v) = %v", tc.in, got)
			}
		}
		if got[0] != tc.in[0] {
			t.Fatalf("first-seen order lost: %v", got)
		}
	}
}
