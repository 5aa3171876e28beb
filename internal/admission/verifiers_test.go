package admission

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

const otherDigest = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

// stubVerifier binds every tag to one digest ("" = signs nothing) or is
// down. It stands for a scheme; what matters here is how the webhook
// answers the combination the real engine makes of several.
type stubVerifier struct {
	name, digest string
	down         bool
}

func (v *stubVerifier) Name() string    { return v.name }
func (v *stubVerifier) Type() string    { return "stub" }
func (v *stubVerifier) BindsTags() bool { return true }
func (v *stubVerifier) Verify(_ context.Context, s verify.Subject) (*verify.Result, error) {
	switch {
	case v.down:
		return nil, fmt.Errorf("%w: stub %s: server answered 502", verify.ErrUnavailable, v.name)
	case v.digest == "" || (s.Digest != "" && s.Digest != v.digest):
		return nil, fmt.Errorf("%w: stub %s: %s is not signed", verify.ErrUntrusted, v.name, s.Ref)
	}
	return &verify.Result{Digest: v.digest, Reason: "signed"}, nil
}

const combinationPolicy = `
mode: enforce
unmatched: deny
settings: {deadline: 5s}
verifiers:
  - {name: ok, type: stub}
  - {name: ok2, type: stub}
  - {name: other, type: stub}
  - {name: unsigned, type: stub}
  - {name: unsigned2, type: stub}
  - {name: down, type: stub}
  - {name: dct, type: stub, deprecated: "DCT ends on Docker Hub on 2026-12-08"}
rules:
  - {name: all-pass, images: [registry.example/all-pass/*], verify: [ok, ok2], pinDigest: false}
  - {name: all-no, images: [registry.example/all-no/*], verify: [ok, unsigned], pinDigest: false}
  - {name: all-down, images: [registry.example/all-down/*], verify: [ok, down], pinDigest: false}
  - {name: any-pass, images: [registry.example/any-pass/*], verify: [unsigned, ok], require: any, pinDigest: false}
  - {name: any-down, images: [registry.example/any-down/*], verify: [unsigned, down], require: any, pinDigest: false}
  - {name: any-no, images: [registry.example/any-no/*], verify: [unsigned, unsigned2], require: any, pinDigest: false}
  - {name: two-of-three, images: [registry.example/two-of-three/*], verify: [ok, unsigned, ok2], require: 2, pinDigest: false}
  - {name: two-of-three-down, images: [registry.example/two-of-three-down/*], verify: [ok, unsigned, down], require: 2, pinDigest: false}
  - {name: disagree, images: [registry.example/disagree/*], verify: [ok, other], pinDigest: false}
  - {name: deprecated-only, images: [registry.example/deprecated-only/*], verify: [dct, unsigned], require: any, pinDigest: false}
  - {name: deprecated-and-new, images: [registry.example/deprecated-and-new/*], verify: [dct, ok], pinDigest: false}
`

func combinationEngine(t testing.TB) *engine.Engine {
	t.Helper()
	stubs := map[string]*stubVerifier{
		"ok": {name: "ok", digest: testDigest}, "ok2": {name: "ok2", digest: testDigest}, "other": {name: "other", digest: otherDigest},
		"unsigned": {name: "unsigned"}, "unsigned2": {name: "unsigned2"}, "down": {name: "down", down: true}, "dct": {name: "dct", digest: testDigest},
	}
	p := policytest.Parse(t, "test", "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\n"+combinationPolicy,
		policytest.Scheme("stub", func(name string, _ verify.Deps) (verify.Verifier, error) { return stubs[name], nil }))
	return engine.New(p)
}

// Each combination reaches the API server as what it is: admitted, a 403
// for a definite no, a 503 that says the check could not complete.
func TestCombinationsThroughTheWebhook(t *testing.T) {
	e := combinationEngine(t)
	for _, tc := range []struct {
		repo    string
		code    int32 // 0: admitted
		message []string
	}{
		{"all-pass", 0, nil},
		// Issue 9 item 10: under all, one "not trusted" denies though the other passed.
		{"all-no", http.StatusForbidden, []string{"stub unsigned: registry.example/all-no/app:1 is not signed"}},
		{"all-down", http.StatusServiceUnavailable, []string{"could not complete", "server answered 502"}},
		{"any-pass", 0, nil},
		{"any-down", http.StatusServiceUnavailable, []string{"could not complete", "no verifier passed (one of 2 needed)"}},
		{"any-no", http.StatusForbidden, []string{"not trusted: no verifier passed"}},
		{"two-of-three", 0, nil},
		{"two-of-three-down", http.StatusServiceUnavailable, []string{"1 of 3 verifiers passed (2 needed)"}},
		{"disagree", http.StatusForbidden, []string{"disagree", "ok proved " + testDigest, "other proved " + otherDigest}},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			image := "registry.example/" + tc.repo + "/app:1"
			body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", image}}, nil, nil), nil), nil))
			r := answer(t, newValidating(t, e), body).Response
			if tc.code == 0 {
				if !r.Allowed {
					t.Fatalf("denied: %+v", r.Result)
				}
				if ann := r.AuditAnnotations["image-0"]; !strings.Contains(ann, "decision=allow") || !strings.Contains(ann, "verifiers=") {
					t.Errorf("audit annotation %q does not record the verifiers' outcomes", ann)
				}
				return
			}
			if r.Allowed || r.Result == nil || r.Result.Code != tc.code {
				t.Fatalf("allowed=%v result=%+v, want code %d", r.Allowed, r.Result, tc.code)
			}
			wantReason := map[int32]string{http.StatusForbidden: "Forbidden", http.StatusServiceUnavailable: "ServiceUnavailable"}[tc.code]
			if string(r.Result.Reason) != wantReason {
				t.Errorf("reason %q, want %q", r.Result.Reason, wantReason)
			}
			for _, m := range tc.message {
				if !strings.Contains(r.Result.Message, m) {
					t.Errorf("message %q does not contain %q", r.Result.Message, m)
				}
			}
			wantDecision := map[int32]string{http.StatusForbidden: "decision=deny", http.StatusServiceUnavailable: "decision=unavailable"}[tc.code]
			if ann := r.AuditAnnotations["image-0"]; !strings.Contains(ann, wantDecision) {
				t.Errorf("audit annotation %q, want %s", ann, wantDecision)
			}
		})
	}
}

// One definite no among unavailable checks makes the whole answer a 403:
// retrying would not help.
func TestDefiniteDenyWinsOverUnavailable(t *testing.T) {
	e := combinationEngine(t)
	spec := podSpec([]ctr{{"a", "registry.example/all-down/app:1"}, {"b", "registry.example/any-no/app:1"}}, nil, nil)
	r := answer(t, newValidating(t, e), reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], spec, nil), nil))).Response
	if r.Allowed || r.Result.Code != http.StatusForbidden {
		t.Fatalf("allowed=%v result=%+v, want 403", r.Allowed, r.Result)
	}
}

// An image admitted only through a deprecated verifier is admitted with a
// warning naming the verifier and the reason, a log field and a metric; an
// image that a current verifier also admits is not.
func TestDeprecatedVerifierWarns(t *testing.T) {
	e := combinationEngine(t)
	var logs bytes.Buffer
	m := metrics.New(prometheus.NewRegistry())
	h := newValidating(t, e, func(o *Options) {
		o.Metrics = m
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	spec := podSpec([]ctr{{"old", "registry.example/deprecated-only/app:1"}, {"both", "registry.example/deprecated-and-new/app:1"}}, nil, nil)
	r := answer(t, h, reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], spec, nil), nil))).Response
	if !r.Allowed {
		t.Fatalf("denied: %+v", r.Result)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], `"registry.example/deprecated-only/app:1" only through deprecated verifier(s) dct (DCT ends on Docker Hub on 2026-12-08)`) {
		t.Fatalf("warnings %q", r.Warnings)
	}
	if got := testutil.ToFloat64(m.DeprecatedAdmissions.WithLabelValues("dct")); got != 1 {
		t.Errorf("trustgate_deprecated_admissions_total{verifier=dct} = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), `"deprecated":"dct (DCT ends on Docker Hub on 2026-12-08)"`) {
		t.Errorf("no deprecated log field in %s", logs.String())
	}
	// /mutate leaves the warning to /validate: kubectl would print it twice.
	mr := answer(t, newMutating(t, e), reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], spec, nil), nil))).Response
	if !mr.Allowed || len(mr.Warnings) != 0 {
		t.Errorf("mutate: allowed=%v warnings=%q", mr.Allowed, mr.Warnings)
	}
}
