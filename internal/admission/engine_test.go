package admission

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
)

// These tests run the webhook with the real engine: what one decides and
// the other answers (and counts) must fit together.

func realEngine(t testing.TB, doc string, opts ...engine.Option) *engine.Engine {
	t.Helper()
	p := policytest.Parse(t, "test", "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\n"+doc)
	return engine.New(p, opts...)
}

// Allow rules stand for verified images here: the pin check applies to every
// rule that pins, and needs no verifier to be shown.
const pinningPolicy = `
mode: enforce
unmatched: allow
settings: {deadline: 5s%s}
rules:
  - {name: pinned, images: ["registry.example/team/*"], action: allow}
  - {name: loose, images: ["registry.example/loose/*"], action: allow, pinDigest: false}
`

// /validate refuses a tag-only image of a pinning rule with a message that
// says /mutate did not pin it; the pinned form, a rule that does not pin, and
// a policy that relaxes the check for /validate-only clusters are admitted.
func TestValidateRefusesUnpinnedTag(t *testing.T) {
	strict := realEngine(t, strings.Replace(pinningPolicy, "%s", "", 1))
	relaxed := realEngine(t, strings.Replace(pinningPolicy, "%s", ", validateRequiresDigest: false", 1))
	for _, tc := range []struct {
		name    string
		e       *engine.Engine
		image   string
		allowed bool
	}{
		{"tag left unpinned", strict, "registry.example/team/app:1", false},
		{"pinned by /mutate", strict, "registry.example/team/app:1@" + testDigest, true},
		{"rule does not pin", strict, "registry.example/loose/app:1", true},
		{"unmatched", strict, "other.example/app:1", true},
		{"relaxed for /validate-only clusters", relaxed, "registry.example/team/app:1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kc := range []kindCase{kindCases[0], kindCases[2]} {
				body := reviewBody(t, apiVersionV1, request("CREATE", kc.group, kc.version, kc.kind, "", object(kc, podSpec([]ctr{{"app", tc.image}}, nil, nil), nil), nil))
				r := answer(t, newValidating(t, tc.e), body).Response
				if r.Allowed != tc.allowed {
					t.Fatalf("%s: allowed = %v, want %v (%+v)", kc.kind, r.Allowed, tc.allowed, r.Result)
				}
				if !tc.allowed && (r.Result == nil || r.Result.Code != 403 ||
					!strings.Contains(r.Result.Message, "the mutating webhook (/mutate) did not pin it, or a later mutating webhook removed the pin")) {
					t.Fatalf("%s: result %+v, want a 403 saying the mutating webhook did not pin it", kc.kind, r.Result)
				}
			}
		})
	}
	t.Run("only /validate asks", func(t *testing.T) {
		body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil), nil))
		v, m := &fakeEngine{}, &fakeEngine{}
		answer(t, newValidating(t, v), body)
		answer(t, newMutating(t, m), body)
		if reqs := v.requests(); len(reqs) != 1 || !reqs[0].RequireDigest || reqs[0].Pin {
			t.Errorf("/validate asked %+v, want RequireDigest without Pin", reqs)
		}
		if reqs := m.requests(); len(reqs) != 1 || reqs[0].RequireDigest || !reqs[0].Pin {
			t.Errorf("/mutate asked %+v, want Pin without RequireDigest", reqs)
		}
	})
}

// trustgate_image_decisions_total counts each decision once (the engine
// counts; the webhook used to count again), and images no rule decides
// (unmatched, unparsable) under one label, "(none)".
func TestDecisionsCountedOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	e := realEngine(t, strings.Replace(pinningPolicy, "%s", "", 1), engine.WithMetrics(m))
	h := newValidating(t, e, func(o *Options) { o.Metrics = m })
	spec := podSpec([]ctr{
		{"a", "registry.example/loose/app:1"},
		{"b", "other.example/app:1"},
		{"c", "UPPER/case:1"},
		{"d", "registry.example/team/app:1"},
	}, nil, nil)
	answer(t, h, reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], spec, nil), nil)))
	for _, c := range []struct {
		rule, decision string
		want           float64
	}{
		{"loose", "allow", 1},
		{"(none)", "allow", 1}, // unmatched: allow
		{"(none)", "deny", 1},  // unparsable
		{"pinned", "deny", 1},  // tag left unpinned
	} {
		if got := testutil.ToFloat64(m.Decisions.WithLabelValues(c.rule, c.decision)); got != c.want {
			t.Errorf("decisions{rule=%q,decision=%q} = %v, want %v", c.rule, c.decision, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.Decisions); n != 4 {
		t.Errorf("%d decision series, want 4 (no rule=\"\" series)", n)
	}
}

// A pod naming more distinct images than the engine judges in one request is
// denied whole, with a message that says so (and not that no rule matched).
func TestOverCapDenied(t *testing.T) {
	e := realEngine(t, strings.Replace(pinningPolicy, "%s", "", 1), engine.WithMaxImages(2))
	spec := podSpec([]ctr{{"a", "registry.example/loose/a:1"}, {"b", "registry.example/loose/b:1"}, {"c", "registry.example/loose/c:1"}}, nil, nil)
	r := answer(t, newValidating(t, e), reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], spec, nil), nil))).Response
	want := `"registry.example/loose/a:1" at /spec/containers/0/image (not judged): the object names 3 distinct images; trustgate judges at most 2 in one request`
	if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, want) {
		t.Fatalf("response %+v, want a deny containing %q", r.Result, want)
	}
}
