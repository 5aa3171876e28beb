package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
)

// kindCase is a judged kind and where its pod spec lives.
type kindCase struct {
	group, version, kind string
	path                 []string
	typed                func() any // a typed value the patched object must decode into
}

var kindCases = []kindCase{
	{"", "v1", "Pod", []string{"spec"}, func() any { return &corev1.Pod{} }},
	{"", "v1", "ReplicationController", []string{"spec", "template", "spec"}, func() any { return &corev1.ReplicationController{} }},
	{"apps", "v1", "Deployment", []string{"spec", "template", "spec"}, func() any { return &appsv1.Deployment{} }},
	{"apps", "v1", "ReplicaSet", []string{"spec", "template", "spec"}, func() any { return &appsv1.ReplicaSet{} }},
	{"apps", "v1", "StatefulSet", []string{"spec", "template", "spec"}, func() any { return &appsv1.StatefulSet{} }},
	{"apps", "v1", "DaemonSet", []string{"spec", "template", "spec"}, func() any { return &appsv1.DaemonSet{} }},
	{"batch", "v1", "Job", []string{"spec", "template", "spec"}, func() any { return &batchv1.Job{} }},
	{"batch", "v1", "CronJob", []string{"spec", "jobTemplate", "spec", "template", "spec"}, func() any { return &batchv1.CronJob{} }},
}

type ctr struct{ name, image string }

// podSpec builds a pod spec with the given containers of each kind.
func podSpec(containers, inits, ephemerals []ctr) map[string]any {
	list := func(cs []ctr) []any {
		out := []any{}
		for _, c := range cs {
			out = append(out, map[string]any{"name": c.name, "image": c.image, "imagePullPolicy": "IfNotPresent"})
		}
		return out
	}
	spec := map[string]any{"containers": list(containers), "restartPolicy": "Always"}
	if inits != nil {
		spec["initContainers"] = list(inits)
	}
	if ephemerals != nil {
		spec["ephemeralContainers"] = list(ephemerals)
	}
	return spec
}

// object wraps spec at kc.path inside an object of kind kc.
func object(kc kindCase, spec map[string]any, meta map[string]any) map[string]any {
	var v any = spec
	for i := len(kc.path) - 1; i >= 0; i-- {
		v = map[string]any{kc.path[i]: v}
	}
	obj := v.(map[string]any)
	apiVersion := kc.version
	if kc.group != "" {
		apiVersion = kc.group + "/" + kc.version
	}
	obj["apiVersion"], obj["kind"] = apiVersion, kc.kind
	if meta == nil {
		meta = map[string]any{"name": "web", "namespace": "prod"}
	}
	obj["metadata"] = meta
	return obj
}

func newValidating(t testing.TB, eval Evaluator, opts ...func(*Options)) *Webhook {
	t.Helper()
	o := Options{Evaluator: eval}
	for _, f := range opts {
		f(&o)
	}
	w, err := NewValidating(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newMutating(t testing.TB, eval Evaluator, opts ...func(*Options)) *Webhook {
	t.Helper()
	o := Options{Evaluator: eval}
	for _, f := range opts {
		f(&o)
	}
	w, err := NewMutating(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestValidateEveryKindAndContainerKind(t *testing.T) {
	spec := podSpec(
		[]ctr{{"app", "registry.example/app:1"}},
		[]ctr{{"init", "registry.example/bad-init:1"}},
		[]ctr{{"debug", "stranger/debug:1"}},
	)
	for _, kc := range kindCases {
		t.Run(kc.kind, func(t *testing.T) {
			eng := &fakeEngine{}
			h := newValidating(t, eng)
			out := answer(t, h, reviewBody(t, apiVersionV1, request("CREATE", kc.group, kc.version, kc.kind, "", object(kc, spec, nil), nil)))
			reqs := eng.requests()
			if len(reqs) != 1 {
				t.Fatalf("evaluator called %d times, want 1", len(reqs))
			}
			want := engine.Request{Namespace: "prod", Images: []string{"registry.example/app:1", "registry.example/bad-init:1", "stranger/debug:1"}, RequireDigest: true}
			if !reflect.DeepEqual(reqs[0], want) {
				t.Errorf("engine request = %+v, want %+v", reqs[0], want)
			}
			r := out.Response
			if r.Allowed {
				t.Fatal("allowed, want denied")
			}
			if string(r.UID) != "uid-"+strings.ToLower(kc.kind)+"-create" {
				t.Errorf("uid = %q not echoed", r.UID)
			}
			if r.Result == nil || r.Result.Code != 403 || r.Result.Reason != "Forbidden" {
				t.Fatalf("result = %+v, want 403 Forbidden", r.Result)
			}
			prefix := "/" + strings.Join(kc.path, "/")
			wantMsg := `trustgate denied 2 image(s): "registry.example/bad-init:1" at ` + prefix + `/initContainers/0/image (rule public): no valid signature for tag; "stranger/debug:1" at ` + prefix + `/ephemeralContainers/0/image (no rule matched): no rule matches and unmatched is deny`
			if r.Result.Message != wantMsg {
				t.Errorf("message:\n got %s\nwant %s", r.Result.Message, wantMsg)
			}
			if r.Patch != nil || r.PatchType != nil {
				t.Error("validating response carries a patch")
			}
		})
	}
}

func TestEphemeralContainersSubresource(t *testing.T) {
	pod := kindCases[0]
	old := object(pod, podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil)
	cur := object(pod, podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, []ctr{{"debugger", "registry.example/bad-debug:1"}}), nil)
	eng := &fakeEngine{}
	out := answer(t, newValidating(t, eng), reviewBody(t, apiVersionV1, request("UPDATE", "", "v1", "Pod", "ephemeralcontainers", cur, old)))
	if out.Response.Allowed {
		t.Error("allowed, want denied for the new ephemeral container")
	}
	reqs := eng.requests()
	if len(reqs) != 1 || !slices.Equal(reqs[0].Images, []string{"registry.example/bad-debug:1"}) {
		t.Errorf("engine requests = %+v, want only the new ephemeral image", reqs)
	}
}

func TestModes(t *testing.T) {
	spec := podSpec([]ctr{{"app", "registry.example/app:1"}, {"side", "registry.example/bad:2"}}, nil, nil)
	body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], spec, nil), nil))
	tests := []struct {
		name         string
		eng          *fakeEngine
		wantAllowed  bool
		wantWarnings []string
		wantAudit    map[string]string
	}{
		{name: "enforce", eng: &fakeEngine{mode: policy.Enforce}, wantAllowed: false},
		{name: "warn", eng: &fakeEngine{mode: policy.Warn}, wantAllowed: true,
			wantWarnings: []string{`trustgate would deny "registry.example/bad:2" (rule public): no valid signature for tag`},
			wantAudit: map[string]string{
				"image-0": "decision=allow rule=ours image=registry.example/app:1 digest=" + testDigest,
				"image-1": "decision=deny rule=public image=registry.example/bad:2",
			}},
		{name: "audit", eng: &fakeEngine{mode: policy.Audit}, wantAllowed: true,
			wantAudit: map[string]string{
				"image-0": "decision=allow rule=ours image=registry.example/app:1 digest=" + testDigest,
				"image-1": "decision=deny rule=public image=registry.example/bad:2",
			}},
		{name: "unknown mode fails closed", eng: &fakeEngine{mode: "bogus"}, wantAllowed: false},
		{name: "exempt namespace", eng: &fakeEngine{exempt: true}, wantAllowed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := answer(t, newValidating(t, tc.eng), body).Response
			if r.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v (result %+v)", r.Allowed, tc.wantAllowed, r.Result)
			}
			if !slices.Equal(r.Warnings, tc.wantWarnings) {
				t.Errorf("warnings = %q, want %q", r.Warnings, tc.wantWarnings)
			}
			if tc.wantAudit != nil && !reflect.DeepEqual(r.AuditAnnotations, tc.wantAudit) {
				t.Errorf("audit annotations = %v, want %v", r.AuditAnnotations, tc.wantAudit)
			}
			for k := range r.AuditAnnotations {
				if strings.Contains(k, "/") {
					t.Errorf("audit annotation key %q contains '/': the API server prefixes the webhook name and would reject it", k)
				}
			}
		})
	}
}

func TestOperationsAndKindsNotJudged(t *testing.T) {
	pod := object(kindCases[0], podSpec([]ctr{{"app", "registry.example/bad:1"}}, nil, nil), nil)
	tests := []struct {
		name string
		req  map[string]any
	}{
		{"delete", request("DELETE", "", "v1", "Pod", "", nil, pod)},
		{"connect", request("CONNECT", "", "v1", "Pod", "exec", nil, nil)},
		{"configmap", request("CREATE", "", "v1", "ConfigMap", "", map[string]any{"data": map[string]string{"image": "bad"}}, nil)},
		{"pod status", request("UPDATE", "", "v1", "Pod", "status", pod, pod)},
		{"deployment scale", request("UPDATE", "autoscaling", "v1", "Scale", "scale", map[string]any{"spec": map[string]any{"replicas": 3}}, nil)},
		{"custom Deployment kind", request("CREATE", "example.com", "v1", "Deployment", "", pod, nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eng := &fakeEngine{}
			r := answer(t, newValidating(t, eng), reviewBody(t, apiVersionV1, tc.req)).Response
			if !r.Allowed || r.Result != nil || len(r.Warnings) != 0 {
				t.Errorf("response = %+v, want plain allow", r)
			}
			if n := len(eng.requests()); n != 0 {
				t.Errorf("evaluator called %d times, want 0", n)
			}
		})
	}
}

func TestUpdateSemantics(t *testing.T) {
	dep := kindCases[2]
	base := podSpec([]ctr{{"app", "registry.example/bad-app:1"}, {"side", "registry.example/side:1"}}, []ctr{{"init", "registry.example/bad-init:1"}}, nil)
	tests := []struct {
		name       string
		cur, old   map[string]any
		meta       map[string]any
		wantImages []string // nil: evaluator not called
		wantAllow  bool
	}{
		{name: "nothing changed", cur: base, old: base, wantAllow: true},
		{name: "containers reordered", old: base,
			cur:       podSpec([]ctr{{"side", "registry.example/side:1"}, {"app", "registry.example/bad-app:1"}}, []ctr{{"init", "registry.example/bad-init:1"}}, nil),
			wantAllow: true},
		{name: "one image changed", old: base,
			cur:        podSpec([]ctr{{"app", "registry.example/bad-app:1"}, {"side", "registry.example/side:2"}}, []ctr{{"init", "registry.example/bad-init:1"}}, nil),
			wantImages: []string{"registry.example/side:2"}, wantAllow: true},
		{name: "changed image already used elsewhere is still judged", old: base,
			cur:        podSpec([]ctr{{"app", "registry.example/bad-app:1"}, {"side", "registry.example/bad-init:1"}}, []ctr{{"init", "registry.example/bad-init:1"}}, nil),
			wantImages: []string{"registry.example/bad-init:1"}, wantAllow: false},
		{name: "container added", old: base,
			cur:        podSpec([]ctr{{"app", "registry.example/bad-app:1"}, {"side", "registry.example/side:1"}, {"new", "registry.example/new:1"}}, []ctr{{"init", "registry.example/bad-init:1"}}, nil),
			wantImages: []string{"registry.example/new:1"}, wantAllow: true},
		{name: "init container renamed is new", old: base,
			cur:        podSpec([]ctr{{"app", "registry.example/bad-app:1"}, {"side", "registry.example/side:1"}}, []ctr{{"init2", "registry.example/bad-init:1"}}, nil),
			wantImages: []string{"registry.example/bad-init:1"}, wantAllow: false},
		{name: "being deleted: finalizer removal changes no image and is allowed", old: base, cur: base,
			meta: map[string]any{"name": "web", "deletionTimestamp": "2026-11-29T10:00:00Z", "finalizers": []string{}}, wantAllow: true},
		{name: "being deleted: a changed image is still judged", old: base,
			cur:        podSpec([]ctr{{"app", "registry.example/bad-other:1"}}, nil, nil),
			meta:       map[string]any{"name": "web", "deletionTimestamp": "2026-11-29T10:00:00Z", "finalizers": []string{}},
			wantImages: []string{"registry.example/bad-other:1"}, wantAllow: false},
		{name: "no oldObject: everything judged", cur: base,
			wantImages: []string{"registry.example/bad-app:1", "registry.example/side:1", "registry.example/bad-init:1"}, wantAllow: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var old any
			if tc.old != nil {
				old = object(dep, tc.old, nil)
			}
			eng := &fakeEngine{}
			r := answer(t, newValidating(t, eng), reviewBody(t, apiVersionV1, request("UPDATE", "apps", "v1", "Deployment", "", object(dep, tc.cur, tc.meta), old))).Response
			if r.Allowed != tc.wantAllow {
				t.Errorf("allowed = %v, want %v (%+v)", r.Allowed, tc.wantAllow, r.Result)
			}
			reqs := eng.requests()
			if tc.wantImages == nil {
				if len(reqs) != 0 {
					t.Errorf("evaluator called with %+v, want no call", reqs)
				}
				return
			}
			if len(reqs) != 1 || !slices.Equal(reqs[0].Images, tc.wantImages) {
				t.Errorf("engine requests = %+v, want images %q", reqs, tc.wantImages)
			}
		})
	}
}

func TestAdmissionReviewVersions(t *testing.T) {
	obj := object(kindCases[0], podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil)
	for _, v := range []string{apiVersionV1, apiVersionV1beta1} {
		t.Run(v, func(t *testing.T) {
			for _, h := range []http.Handler{newValidating(t, &fakeEngine{}), newMutating(t, &fakeEngine{})} {
				out := answer(t, h, reviewBody(t, v, request("CREATE", "", "v1", "Pod", "", obj, nil)))
				if out.APIVersion != v || out.Kind != "AdmissionReview" {
					t.Errorf("answered %s %s, want %s AdmissionReview", out.APIVersion, out.Kind, v)
				}
				if out.Response.UID != "uid-pod-create" || out.Request != nil {
					t.Errorf("uid %q not echoed or request echoed back", out.Response.UID)
				}
				if !out.Response.Allowed {
					t.Errorf("denied: %+v", out.Response.Result)
				}
			}
		})
	}
}

// slowEngine ignores its context entirely, the worst case for the deadline.
type slowEngine struct{ delay time.Duration }

func (s slowEngine) Evaluate(_ context.Context, req engine.Request) engine.Report {
	time.Sleep(s.delay)
	return engine.Report{Mode: policy.Enforce, Decisions: []engine.Decision{{Image: req.Images[0], Allowed: true}}}
}

func TestDeadline(t *testing.T) {
	body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil), nil))
	const deadline = 300 * time.Millisecond

	t.Run("evaluator ignoring ctx is cut off at the deadline and denied", func(t *testing.T) {
		for _, h := range []http.Handler{
			newValidating(t, slowEngine{delay: 5 * time.Second}, func(o *Options) { o.Deadline = deadline }),
			newMutating(t, slowEngine{delay: 5 * time.Second}, func(o *Options) { o.Deadline = deadline }),
		} {
			start := time.Now()
			r := answer(t, h, body).Response
			took := time.Since(start)
			// Generous slack for a loaded machine; the evaluator would take 5s.
			if took > deadline+time.Second {
				t.Errorf("answered after %v, deadline %v", took, deadline)
			}
			if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, "timed out") {
				t.Errorf("response = %+v, want deny saying timed out", r.Result)
			}
		}
	})

	t.Run("evaluator honouring ctx gets to answer before the cut-off, mode respected", func(t *testing.T) {
		var gotDeadline time.Duration
		eval := EvaluatorFunc(func(ctx context.Context, req engine.Request) engine.Report {
			dl, _ := ctx.Deadline()
			gotDeadline = time.Until(dl)
			<-ctx.Done()
			return engine.Report{Mode: policy.Warn, Decisions: []engine.Decision{{Image: req.Images[0], Reason: "timed out verifying"}}}
		})
		// Long enough that the 200ms grace beats scheduling noise.
		const deadline = 2 * time.Second
		start := time.Now()
		r := answer(t, newValidating(t, eval, func(o *Options) { o.Deadline = deadline }), body).Response
		if took := time.Since(start); took > deadline {
			t.Errorf("answered after %v, deadline %v", took, deadline)
		}
		if gotDeadline <= 0 || gotDeadline > deadline-100*time.Millisecond {
			t.Errorf("evaluator context deadline %v, want shorter than the %v hard deadline", gotDeadline, deadline)
		}
		if !r.Allowed || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "timed out verifying") {
			t.Errorf("response = %+v, want allowed with the engine's timed-out warning", r)
		}
	})
}

func TestMalformedRequests(t *testing.T) {
	pod := object(kindCases[0], podSpec([]ctr{{"app", "x"}}, nil, nil), nil)
	good := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", pod, nil))
	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		wantCode    int
		wantMsg     string
	}{
		{name: "GET", method: http.MethodGet, body: good, wantCode: 405},
		{name: "PUT", method: http.MethodPut, body: good, wantCode: 405},
		{name: "text/plain", contentType: "text/plain", body: good, wantCode: 415},
		{name: "no content type", contentType: "-", body: good, wantCode: 415},
		{name: "json with charset is fine", contentType: "application/json; charset=utf-8", body: good, wantCode: 200},
		{name: "empty body", body: nil, wantCode: 400, wantMsg: "empty body"},
		{name: "not JSON", body: []byte("hello"), wantCode: 400, wantMsg: "not JSON"},
		{name: "trailing garbage", body: append(append([]byte{}, good...), []byte("}")...), wantCode: 400, wantMsg: "not JSON"},
		{name: "JSON array", body: []byte("[]"), wantCode: 400, wantMsg: "not JSON"},
		{name: "wrong apiVersion", body: []byte(`{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u"}}`), wantCode: 400, wantMsg: "apiVersion"},
		{name: "wrong kind", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}`), wantCode: 400, wantMsg: "kind"},
		{name: "missing request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), wantCode: 400, wantMsg: "no request"},
		{name: "missing uid", body: reviewBody(t, apiVersionV1, map[string]any{"operation": "CREATE", "kind": map[string]string{"version": "v1", "kind": "Pod"}}), wantCode: 400, wantMsg: "uid"},
		{name: "missing operation", body: reviewBody(t, apiVersionV1, map[string]any{"uid": "u", "kind": map[string]string{"version": "v1", "kind": "Pod"}}), wantCode: 400, wantMsg: "operation"},
		{name: "missing object", body: reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", nil, nil)), wantCode: 400, wantMsg: "without an object"},
		{name: "object does not decode", body: reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", map[string]any{"spec": map[string]any{"containers": "x"}}, nil)), wantCode: 400, wantMsg: "request.object"},
		{name: "oldObject does not decode", body: reviewBody(t, apiVersionV1, request("UPDATE", "", "v1", "Pod", "", pod, map[string]any{"spec": 5})), wantCode: 400, wantMsg: "request.oldObject"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, "/validate", bytes.NewReader(tc.body))
			switch tc.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tc.contentType)
			}
			rec := httptest.NewRecorder()
			newValidating(t, &fakeEngine{}).ServeHTTP(rec, r)
			if rec.Code != tc.wantCode {
				t.Fatalf("status = %d (%s), want %d", rec.Code, rec.Body.String(), tc.wantCode)
			}
			if !strings.Contains(rec.Body.String(), tc.wantMsg) {
				t.Errorf("body %q does not mention %q", rec.Body.String(), tc.wantMsg)
			}
			if tc.wantCode == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow header = %q, want POST", rec.Header().Get("Allow"))
			}
		})
	}
}

func TestPanicsBecome500(t *testing.T) {
	body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", "x"}}, nil, nil), nil), nil))
	panicky := EvaluatorFunc(func(context.Context, engine.Request) engine.Report { panic("boom") })
	for _, h := range []http.Handler{newValidating(t, panicky), newMutating(t, panicky)} {
		if rec := post(t, h, body); rec.Code != http.StatusInternalServerError {
			t.Errorf("status = %d, want 500", rec.Code)
		}
	}
	// A panic on the handler's own goroutine (here: from the logger, while
	// recording decisions) must be recovered too.
	broken := newValidating(t, &fakeEngine{}, func(o *Options) { o.Logger = slog.New(panicHandler{}) })
	if rec := post(t, broken, body); rec.Code != http.StatusInternalServerError {
		t.Errorf("status with a panicking logger = %d, want 500", rec.Code)
	}
}

// panicHandler panics on decision log lines and drops everything else.
type panicHandler struct{}

func (panicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (panicHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "admission decision" {
		panic("logger exploded")
	}
	return nil
}
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicHandler) WithGroup(string) slog.Handler      { return h }

func TestIncompleteReportFailsClosed(t *testing.T) {
	body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"a", "x"}, {"b", "y"}}, nil, nil), nil), nil))
	eval := EvaluatorFunc(func(_ context.Context, req engine.Request) engine.Report {
		return engine.Report{Mode: policy.Enforce, Decisions: []engine.Decision{{Image: "x", Allowed: true}}}
	})
	r := answer(t, newValidating(t, eval), body).Response
	if r.Allowed || !strings.Contains(r.Result.Message, `"y"`) {
		t.Errorf("response = %+v, want deny naming the image without a decision", r.Result)
	}
}

func TestMutatePinsEveryKind(t *testing.T) {
	spec := podSpec(
		[]ctr{{"app", "registry.example/app:1"}, {"app2", "registry.example/app:1"}, {"digest", "registry.example/fixed@" + testDigest}},
		[]ctr{{"init", "registry.example/init:1"}},
		[]ctr{{"debug", "registry.example/debug:1"}},
	)
	metas := map[string]map[string]any{
		"no annotations":             {"name": "web", "namespace": "prod"},
		"other annotations":          {"name": "web", "annotations": map[string]any{"team": "a/b"}},
		"null annotations":           {"name": "web", "annotations": nil},
		"earlier original-images":    {"name": "web", "annotations": map[string]any{OriginalImagesAnnotation: `{"/spec/old/0/image":"old:1"}`}},
		"unreadable original-images": {"name": "web", "annotations": map[string]any{OriginalImagesAnnotation: `not json`}},
	}
	for _, kc := range kindCases {
		for metaName, meta := range metas {
			t.Run(kc.kind+"/"+metaName, func(t *testing.T) {
				eng := &fakeEngine{}
				obj := object(kc, spec, meta)
				raw, _ := json.Marshal(obj)
				r := answer(t, newMutating(t, eng), reviewBody(t, apiVersionV1, request("CREATE", kc.group, kc.version, kc.kind, "", obj, nil))).Response
				if !r.Allowed {
					t.Fatalf("denied: %+v", r.Result)
				}
				if reqs := eng.requests(); len(reqs) != 1 || !reqs[0].Pin {
					t.Fatalf("engine requests = %+v, want one with Pin", reqs)
				}
				if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
					t.Fatalf("patchType = %v, want JSONPatch", r.PatchType)
				}
				patched := applyPatch(t, raw, r.Patch)

				typed := kc.typed()
				dec := json.NewDecoder(bytes.NewReader(patched))
				dec.DisallowUnknownFields()
				if err := dec.Decode(typed); err != nil {
					t.Fatalf("patched object does not decode as %T: %v\n%s", typed, err, patched)
				}
				prefix := "/" + strings.Join(kc.path, "/")
				wantImages := map[string]string{
					prefix + "/containers/0/image":          "registry.example/app:1@" + testDigest,
					prefix + "/containers/1/image":          "registry.example/app:1@" + testDigest,
					prefix + "/containers/2/image":          "registry.example/fixed@" + testDigest,
					prefix + "/initContainers/0/image":      "registry.example/init:1@" + testDigest,
					prefix + "/ephemeralContainers/0/image": "registry.example/debug:1@" + testDigest,
				}
				var generic any
				_ = json.Unmarshal(patched, &generic)
				for p, want := range wantImages {
					if got := lookup(generic, p); got != want {
						t.Errorf("%s = %v, want %s", p, got, want)
					}
				}
				originals := originalImages(t, generic)
				wantOriginals := map[string]string{
					prefix + "/containers/0/image":          "registry.example/app:1",
					prefix + "/containers/1/image":          "registry.example/app:1",
					prefix + "/initContainers/0/image":      "registry.example/init:1",
					prefix + "/ephemeralContainers/0/image": "registry.example/debug:1",
				}
				if metaName == "earlier original-images" {
					wantOriginals["/spec/old/0/image"] = "old:1"
				}
				if !reflect.DeepEqual(originals, wantOriginals) {
					t.Errorf("original-images = %v, want %v", originals, wantOriginals)
				}
				ann, _ := lookup(generic, "/metadata/annotations").(map[string]any)
				if metaName == "other annotations" && ann["team"] != "a/b" {
					t.Errorf("existing annotation lost: %v", ann)
				}
			})
		}
	}
}

// lookup follows a JSON pointer without escapes through decoded JSON.
func lookup(v any, pointer string) any {
	for _, tok := range strings.Split(pointer[1:], "/") {
		switch x := v.(type) {
		case map[string]any:
			v = x[tok]
		case []any:
			i := 0
			for _, c := range tok {
				i = i*10 + int(c-'0')
			}
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func TestMutateModesAndUpdate(t *testing.T) {
	pod := kindCases[0]
	spec := podSpec([]ctr{{"app", "registry.example/app:1"}, {"side", "registry.example/bad:1"}}, nil, nil)
	create := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(pod, spec, nil), nil))

	t.Run("enforce deny: same message as validate, no patch", func(t *testing.T) {
		m := answer(t, newMutating(t, &fakeEngine{}), create).Response
		v := answer(t, newValidating(t, &fakeEngine{}), create).Response
		if m.Allowed || m.Patch != nil || m.PatchType != nil {
			t.Fatalf("mutate response = %+v, want deny without patch", m)
		}
		if m.Result.Message != v.Result.Message || m.Result.Code != 403 {
			t.Errorf("mutate deny %q (%d) differs from validate %q", m.Result.Message, m.Result.Code, v.Result.Message)
		}
	})
	for _, mode := range []policy.Mode{policy.Warn, policy.Audit} {
		t.Run(string(mode)+": pins the good image, leaves warnings to validate", func(t *testing.T) {
			m := answer(t, newMutating(t, &fakeEngine{mode: mode}), create).Response
			if !m.Allowed || len(m.Warnings) != 0 || len(m.AuditAnnotations) != 0 {
				t.Fatalf("response = %+v, want allowed without warnings or annotations", m)
			}
			var ops []PatchOp
			if err := json.Unmarshal(m.Patch, &ops); err != nil {
				t.Fatal(err)
			}
			if len(ops) != 2 || ops[0].Path != "/spec/containers/0/image" || ops[0].Op != "replace" {
				t.Errorf("ops = %+v, want a replace of containers/0 and the annotation", ops)
			}
		})
	}
	t.Run("update pins only the changed image", func(t *testing.T) {
		old := object(pod, podSpec([]ctr{{"app", "registry.example/app:1"}, {"side", "registry.example/side:1"}}, nil, nil), nil)
		cur := object(pod, podSpec([]ctr{{"app", "registry.example/app:1"}, {"side", "registry.example/side:2"}}, nil, nil), nil)
		eng := &fakeEngine{}
		m := answer(t, newMutating(t, eng), reviewBody(t, apiVersionV1, request("UPDATE", "", "v1", "Pod", "", cur, old))).Response
		var ops []PatchOp
		if err := json.Unmarshal(m.Patch, &ops); err != nil {
			t.Fatal(err)
		}
		if len(ops) != 2 || ops[0].Path != "/spec/containers/1/image" || ops[0].Value != "registry.example/side:2@"+testDigest {
			t.Errorf("ops = %+v, want only containers/1 pinned", ops)
		}
		if reqs := eng.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].Images, []string{"registry.example/side:2"}) {
			t.Errorf("engine requests = %+v", reqs)
		}
	})
	t.Run("nothing to pin: no patch", func(t *testing.T) {
		digestOnly := podSpec([]ctr{{"app", "registry.example/app@" + testDigest}}, nil, nil)
		m := answer(t, newMutating(t, &fakeEngine{}), reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(pod, digestOnly, nil), nil))).Response
		if !m.Allowed || m.Patch != nil || m.PatchType != nil {
			t.Errorf("response = %+v, want allowed without patch", m)
		}
	})
	t.Run("dry run behaves the same", func(t *testing.T) {
		req := request("CREATE", "", "v1", "Pod", "", object(pod, podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil), nil)
		req["dryRun"] = true
		m := answer(t, newMutating(t, &fakeEngine{}), reviewBody(t, apiVersionV1, req)).Response
		if !m.Allowed || m.Patch == nil {
			t.Errorf("dry-run response = %+v, want the same pin", m)
		}
	})
}

func TestLogsAndMetrics(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	h := newValidating(t, &fakeEngine{}, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
		o.Metrics = m
	})
	spec := podSpec([]ctr{{"app", "registry.example/app:1"}, {"side", "registry.example/bad:1"}}, nil, nil)
	answer(t, h, reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], spec, nil), nil)))
	post(t, h, []byte("junk"))

	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(l, &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["msg"] == "admission decision" {
			lines = append(lines, rec)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("got %d decision lines, want 2: %s", len(lines), buf.String())
	}
	for _, key := range []string{"uid", "namespace", "kind", "name", "image", "rule", "decision", "digest", "duration"} {
		if _, ok := lines[0][key]; !ok {
			t.Errorf("decision log line lacks %q: %v", key, lines[0])
		}
	}
	if lines[0]["image"] != "registry.example/app:1" || lines[0]["decision"] != "allow" || lines[0]["digest"] != testDigest || lines[0]["uid"] != "uid-pod-create" {
		t.Errorf("first line = %v", lines[0])
	}
	if lines[1]["decision"] != "deny" || lines[1]["rule"] != "public" {
		t.Errorf("second line = %v", lines[1])
	}

	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"denied requests", testutil.ToFloat64(m.AdmissionRequests.WithLabelValues("validate", "denied")), 1},
		{"error requests", testutil.ToFloat64(m.AdmissionRequests.WithLabelValues("validate", "error")), 1},
		// Decisions are counted by the engine alone (this evaluator is a
		// fake): the webhook counting them too counted every one twice.
		{"decision series", float64(testutil.CollectAndCount(m.Decisions)), 0},
		{"duration observations", float64(testutil.CollectAndCount(m.AdmissionDuration)), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := NewValidating(Options{}); err == nil {
		t.Error("NewValidating without evaluator succeeded")
	}
	if _, err := NewMutating(Options{Evaluator: &fakeEngine{}, Deadline: -1}); err == nil {
		t.Error("negative deadline accepted")
	}
}

func TestTruncate(t *testing.T) {
	s := strings.Repeat("é", 300) // 2 bytes each
	got := truncate(s, 101)
	if len(got) > 101 || !strings.HasSuffix(got, "…") || !json.Valid([]byte(`"`+got+`"`)) {
		t.Errorf("truncate produced %q (len %d)", got, len(got))
	}
	if truncate("short", 10) != "short" {
		t.Error("short string changed")
	}
}

func TestManyDeniedImagesAreSummarised(t *testing.T) {
	var cs []ctr
	for i := 0; i < 30; i++ {
		cs = append(cs, ctr{fmt.Sprintf("c%d", i), fmt.Sprintf("registry.example/bad-%d:1", i)})
	}
	body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec(cs, nil, nil), nil), nil))

	deny := answer(t, newValidating(t, &fakeEngine{}), body).Response
	msg := deny.Result.Message
	if !strings.HasPrefix(msg, "trustgate denied 30 image(s): ") || !strings.HasSuffix(msg, "; and 10 more") ||
		!strings.Contains(msg, `"registry.example/bad-19:1"`) || strings.Contains(msg, `"registry.example/bad-20:1"`) {
		t.Errorf("message = %s", msg)
	}
	if len(deny.AuditAnnotations) != 30 {
		t.Errorf("deny carries %d audit annotations, want 30", len(deny.AuditAnnotations))
	}

	warn := answer(t, newValidating(t, &fakeEngine{mode: policy.Warn}), body).Response
	if len(warn.Warnings) != maxWarnings+1 || warn.Warnings[maxWarnings] != "trustgate would deny 20 more image(s)" {
		t.Errorf("warnings = %q", warn.Warnings)
	}
	total := 0
	for _, w := range warn.Warnings {
		total += len(w)
	}
	if total > 4096 {
		t.Errorf("warnings total %d bytes, over the API server's 4 KiB", total)
	}
}

func TestDeadlineFunc(t *testing.T) {
	body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", "x"}}, nil, nil), nil), nil))
	var current atomic.Int64
	current.Store(int64(150 * time.Millisecond))
	h := newValidating(t, slowEngine{delay: 2 * time.Second}, func(o *Options) {
		o.Deadline = time.Minute
		o.DeadlineFunc = func() time.Duration { return time.Duration(current.Load()) }
	})
	for _, d := range []time.Duration{150 * time.Millisecond, 300 * time.Millisecond} {
		current.Store(int64(d))
		start := time.Now()
		r := answer(t, h, body).Response
		took := time.Since(start)
		if r.Allowed || took < d-20*time.Millisecond || took > d+time.Second {
			t.Errorf("deadline %v: allowed=%v after %v", d, r.Allowed, took)
		}
		if !strings.Contains(r.Result.Message, "no decision within "+d.String()) {
			t.Errorf("message %q does not name the %v deadline", r.Result.Message, d)
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	eng := &fakeEngine{}
	srv := httptest.NewServer(newMutating(t, eng))
	defer srv.Close()
	const n = 40
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			img := fmt.Sprintf("registry.example/app-%d:1", i)
			req := request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", img}}, nil, nil), nil), nil)
			req["uid"] = fmt.Sprintf("uid-%d", i)
			resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(reviewBody(t, apiVersionV1, req)))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				errs <- err
				return
			}
			// Each answer carries its own uid and its own image's pin.
			if string(out.Response.UID) != fmt.Sprintf("uid-%d", i) || !strings.Contains(string(out.Response.Patch), img+"@") {
				errs <- fmt.Errorf("request %d got %s / %s", i, out.Response.UID, out.Response.Patch)
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if got := len(eng.requests()); got != n {
		t.Errorf("engine saw %d requests, want %d", got, n)
	}
}

// originalImages decodes the trustgate.dev/original-images annotation of a
// patched object (decoded as generic JSON).
func originalImages(t *testing.T, generic any) map[string]string {
	t.Helper()
	ann, _ := lookup(generic, "/metadata/annotations").(map[string]any)
	raw, _ := ann[OriginalImagesAnnotation].(string)
	var originals map[string]string
	if err := json.Unmarshal([]byte(raw), &originals); err != nil {
		t.Fatalf("original-images annotation: %v", err)
	}
	return originals
}
