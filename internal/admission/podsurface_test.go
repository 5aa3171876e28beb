package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/policy"
)

// withVolumes adds volumes to spec: an emptyDir first, then one image
// volume per vol (name, reference), so image volume i sits at index i+1.
func withVolumes(spec map[string]any, vols ...ctr) map[string]any {
	list := []any{map[string]any{"name": "scratch", "emptyDir": map[string]any{}}}
	for _, v := range vols {
		list = append(list, map[string]any{"name": v.name, "image": map[string]any{"reference": v.image, "pullPolicy": "IfNotPresent"}})
	}
	spec["volumes"] = list
	return spec
}

// TestImageVolumesAreJudged: an image volume's image is judged like a
// container image in every kind, and the deny names its JSON path.
func TestImageVolumesAreJudged(t *testing.T) {
	spec := withVolumes(podSpec([]ctr{{"app", "registry.example/python:3"}}, nil, nil),
		ctr{"data", "registry.example/data:1"}, ctr{"code", "registry.example/bad-code:1"})
	for _, kc := range kindCases {
		t.Run(kc.kind, func(t *testing.T) {
			for _, h := range []struct {
				name string
				w    *Webhook
			}{{"validate", newValidating(t, &fakeEngine{})}, {"mutate", newMutating(t, &fakeEngine{})}} {
				eng := h.w.eval.(*fakeEngine)
				r := answer(t, h.w, reviewBody(t, apiVersionV1, request("CREATE", kc.group, kc.version, kc.kind, "", object(kc, spec, nil), nil))).Response
				reqs := eng.requests()
				want := []string{"registry.example/python:3", "registry.example/data:1", "registry.example/bad-code:1"}
				if len(reqs) != 1 || !slices.Equal(reqs[0].Images, want) {
					t.Fatalf("%s: engine requests = %+v, want images %q", h.name, reqs, want)
				}
				if r.Allowed || r.Result == nil || r.Result.Code != 403 {
					t.Fatalf("%s: response = %+v, want 403 deny", h.name, r)
				}
				path := "/" + strings.Join(kc.path, "/") + "/volumes/2/image/reference"
				wantMsg := `trustgate denied 1 image(s): "registry.example/bad-code:1" at ` + path + ` (rule public): no valid signature for tag`
				if r.Result.Message != wantMsg {
					t.Errorf("%s: message:\n got %s\nwant %s", h.name, r.Result.Message, wantMsg)
				}
			}
		})
	}
}

// TestMutatePinsImageVolumes: /mutate pins an image volume at its
// reference, and the patched object is still a valid object of its kind.
func TestMutatePinsImageVolumes(t *testing.T) {
	spec := withVolumes(podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil),
		ctr{"code", "registry.example/code:1"}, ctr{"same", "registry.example/app:1"})
	for _, kc := range kindCases {
		t.Run(kc.kind, func(t *testing.T) {
			obj := object(kc, spec, nil)
			raw, _ := json.Marshal(obj)
			r := answer(t, newMutating(t, &fakeEngine{}), reviewBody(t, apiVersionV1, request("CREATE", kc.group, kc.version, kc.kind, "", obj, nil))).Response
			if !r.Allowed || r.PatchType == nil {
				t.Fatalf("response = %+v, want allowed with a patch", r)
			}
			patched := applyPatch(t, raw, r.Patch)
			typed := kc.typed()
			dec := json.NewDecoder(bytes.NewReader(patched))
			dec.DisallowUnknownFields()
			if err := dec.Decode(typed); err != nil {
				t.Fatalf("patched object does not decode as %T: %v\n%s", typed, err, patched)
			}
			prefix := "/" + strings.Join(kc.path, "/")
			var generic any
			_ = json.Unmarshal(patched, &generic)
			for p, want := range map[string]string{
				prefix + "/containers/0/image":         "registry.example/app:1@" + testDigest,
				prefix + "/volumes/1/image/reference":  "registry.example/code:1@" + testDigest,
				prefix + "/volumes/2/image/reference":  "registry.example/app:1@" + testDigest,
				prefix + "/volumes/1/image/pullPolicy": "IfNotPresent",
			} {
				if got := lookup(generic, p); got != want {
					t.Errorf("%s = %v, want %s", p, got, want)
				}
			}
			originals := originalImages(t, generic)
			wantOriginals := map[string]string{
				prefix + "/containers/0/image":        "registry.example/app:1",
				prefix + "/volumes/1/image/reference": "registry.example/code:1",
				prefix + "/volumes/2/image/reference": "registry.example/app:1",
			}
			if !reflect.DeepEqual(originals, wantOriginals) {
				t.Errorf("original-images = %v, want %v", originals, wantOriginals)
			}
		})
	}
}

// TestUpdateJudgesChangedImageVolumes: on UPDATE an image volume whose
// reference changed (or that is new) is judged; an unchanged one is not.
func TestUpdateJudgesChangedImageVolumes(t *testing.T) {
	dep := kindCases[2]
	app := []ctr{{"app", "registry.example/app:1"}}
	base := withVolumes(podSpec(app, nil, nil), ctr{"code", "registry.example/code:1"})
	tests := []struct {
		name       string
		cur        map[string]any
		wantImages []string // nil: evaluator not called
		wantAllow  bool
	}{
		{name: "unchanged", cur: withVolumes(podSpec(app, nil, nil), ctr{"code", "registry.example/code:1"}), wantAllow: true},
		{name: "reference changed", cur: withVolumes(podSpec(app, nil, nil), ctr{"code", "registry.example/bad-code:2"}),
			wantImages: []string{"registry.example/bad-code:2"}},
		{name: "volume added", cur: withVolumes(podSpec(app, nil, nil), ctr{"code", "registry.example/code:1"}, ctr{"more", "registry.example/bad-more:1"}),
			wantImages: []string{"registry.example/bad-more:1"}},
		{name: "volume renamed", cur: withVolumes(podSpec(app, nil, nil), ctr{"code2", "registry.example/code:1"}),
			wantImages: []string{"registry.example/code:1"}, wantAllow: true},
		{name: "a container's image moved into a volume", cur: withVolumes(podSpec(app, nil, nil), ctr{"code", "registry.example/app:1"}),
			wantImages: []string{"registry.example/app:1"}, wantAllow: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eng := &fakeEngine{}
			r := answer(t, newValidating(t, eng), reviewBody(t, apiVersionV1, request("UPDATE", "apps", "v1", "Deployment", "", object(dep, tc.cur, nil), object(dep, base, nil)))).Response
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

// stuckEngine never answers before its context ends and ignores it then
// too (the deadline's worst case); it reports p as its policy.
type stuckEngine struct {
	p       *policy.Policy
	release chan struct{}
}

func (s *stuckEngine) Evaluate(_ context.Context, req engine.Request) engine.Report {
	<-s.release
	return engine.Report{Mode: policy.Enforce, Decisions: []engine.Decision{{Image: req.Images[0], Allowed: true}}}
}

func (s *stuckEngine) Policy() *policy.Policy { return s.p }

// TestDeadlineCutFollowsPolicyMode: when the deadline cuts the evaluator
// off, the answer follows the policy's mode: enforce denies, warn admits
// with a warning, audit admits with audit annotations only; an exempt
// namespace is admitted. /mutate admits without a patch except in enforce.
func TestDeadlineCutFollowsPolicyMode(t *testing.T) {
	body := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil), nil))
	const deadline = 200 * time.Millisecond
	tests := []struct {
		name        string
		p           *policy.Policy
		wantAllowed bool
		wantWarning bool
		wantAudit   bool
	}{
		{name: "enforce", p: &policy.Policy{Mode: policy.Enforce}},
		{name: "warn", p: &policy.Policy{Mode: policy.Warn}, wantAllowed: true, wantWarning: true, wantAudit: true},
		{name: "audit", p: &policy.Policy{Mode: policy.Audit}, wantAllowed: true, wantAudit: true},
		{name: "enforce, exempt namespace", p: &policy.Policy{Mode: policy.Enforce, ExemptNamespaces: []string{"prod"}}, wantAllowed: true},
		{name: "no policy known: fail closed", p: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eng := &stuckEngine{p: tc.p, release: make(chan struct{})}
			defer close(eng.release)
			v := answer(t, newValidating(t, eng, func(o *Options) { o.Deadline = deadline }), body).Response
			if v.Allowed != tc.wantAllowed {
				t.Fatalf("validate allowed = %v, want %v (%+v)", v.Allowed, tc.wantAllowed, v.Result)
			}
			if !tc.wantAllowed && (v.Result == nil || !strings.Contains(v.Result.Message, "timed out: no decision within 200ms")) {
				t.Errorf("validate deny %+v does not say it timed out", v.Result)
			}
			if gotWarning := len(v.Warnings) == 1 && strings.Contains(v.Warnings[0], "timed out"); gotWarning != tc.wantWarning || (!tc.wantWarning && len(v.Warnings) > 0) {
				t.Errorf("warnings = %q, want a timed-out warning: %v", v.Warnings, tc.wantWarning)
			}
			wantAnn := map[string]string(nil)
			if tc.wantAudit {
				wantAnn = map[string]string{"image-0": "decision=unavailable rule=- image=registry.example/app:1"}
			}
			if tc.wantAllowed && !reflect.DeepEqual(v.AuditAnnotations, wantAnn) {
				t.Errorf("audit annotations = %v, want %v", v.AuditAnnotations, wantAnn)
			}
			m := answer(t, newMutating(t, eng, func(o *Options) { o.Deadline = deadline }), body).Response
			if m.Allowed != tc.wantAllowed || m.Patch != nil {
				t.Errorf("mutate response = %+v, want allowed %v without patch", m, tc.wantAllowed)
			}
		})
	}
}

// hugeUpdate is an UPDATE review of a Deployment whose object and oldObject
// each carry an annotation of annotationBytes; the image changes to image.
// It is encoded from the typed AdmissionReview, so its members come in the
// order the API server writes them (request.uid before the objects).
func hugeUpdate(t *testing.T, apiVersion string, annotationBytes int, image string) []byte {
	t.Helper()
	meta := map[string]any{"name": "web", "namespace": "prod", "annotations": map[string]any{"big": strings.Repeat("x", annotationBytes)}}
	dep := kindCases[2]
	cur, err := json.Marshal(object(dep, podSpec([]ctr{{"app", image}}, nil, nil), meta))
	if err != nil {
		t.Fatal(err)
	}
	old, err := json.Marshal(object(dep, podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), meta))
	if err != nil {
		t.Fatal(err)
	}
	rv := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: kindReview},
		Request: &admissionv1.AdmissionRequest{
			UID:       "uid-deployment-update",
			Kind:      metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
			Name:      "web",
			Namespace: "prod",
			Operation: admissionv1.Update,
			Object:    runtime.RawExtension{Raw: cur},
			OldObject: runtime.RawExtension{Raw: old},
		},
	}
	body, err := json.Marshal(rv)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestBodyLimit: the default limit admits what the API server can send (an
// UPDATE carries two objects of up to ~3 MiB each); a body over the limit is
// refused inside an AdmissionReview that names the limit, with or without a
// declared length, so kubectl shows why.
func TestBodyLimit(t *testing.T) {
	if DefaultMaxBodyBytes < 2*3<<20 {
		t.Fatalf("DefaultMaxBodyBytes = %d, below two 3 MiB objects", DefaultMaxBodyBytes)
	}
	t.Run("5 MiB UPDATE is judged", func(t *testing.T) {
		body := hugeUpdate(t, apiVersionV1, 5<<19, "registry.example/bad-app:2")
		if len(body) < 5<<20 || len(body) > 6<<20 {
			t.Fatalf("body is %d bytes, want about 5 MiB", len(body))
		}
		eng := &fakeEngine{}
		r := answer(t, newValidating(t, eng), body).Response
		if r.Allowed || r.Result == nil || r.Result.Code != 403 || !strings.Contains(r.Result.Message, "registry.example/bad-app:2") {
			t.Errorf("response = %+v, want the changed image judged and denied", r.Result)
		}
		if reqs := eng.requests(); len(reqs) != 1 || !slices.Equal(reqs[0].Images, []string{"registry.example/bad-app:2"}) {
			t.Errorf("engine requests = %+v", reqs)
		}
	})

	over := hugeUpdate(t, apiVersionV1beta1, 7<<19, "registry.example/app:2")
	if len(over) <= DefaultMaxBodyBytes {
		t.Fatalf("body is %d bytes, want over %d", len(over), DefaultMaxBodyBytes)
	}
	for _, chunked := range []bool{false, true} {
		name := "over the limit, declared length"
		if chunked {
			name = "over the limit, chunked"
		}
		t.Run(name, func(t *testing.T) {
			eng := &fakeEngine{}
			r := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(over))
			if chunked {
				r = httptest.NewRequest(http.MethodPost, "/validate", struct{ *bytes.Reader }{bytes.NewReader(over)})
				r.ContentLength = -1
			}
			r.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			newValidating(t, eng).ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP status %d (%s), want 200 with an AdmissionReview", rec.Code, rec.Body.String())
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("answer %s: %v", rec.Body.String(), err)
			}
			resp := out.Response
			if out.APIVersion != apiVersionV1beta1 || out.Kind != kindReview || resp.UID != "uid-deployment-update" {
				t.Errorf("answer envelope %s/%s uid %q, want the request's", out.APIVersion, out.Kind, resp.UID)
			}
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusRequestEntityTooLarge ||
				!strings.Contains(resp.Result.Message, "larger than trustgate's limit of 7340032 bytes") {
				t.Errorf("response = %+v, want a 413 deny naming the limit", resp.Result)
			}
			if len(eng.requests()) != 0 {
				t.Error("evaluator called for a body over the limit")
			}
		})
	}

	t.Run("over a configured limit, no uid in the first bytes: plain 413", func(t *testing.T) {
		h := newValidating(t, &fakeEngine{}, func(o *Options) { o.MaxBodyBytes = 1024 })
		// The uid comes after more than the 64 KiB that are searched.
		body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":"` + strings.Repeat("x", 70<<10) + `","uid":"late"}}`)
		if rec := post(t, h, body); rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "limit of 1024 bytes") {
			t.Errorf("status = %d (%s), want 413 naming the limit", rec.Code, rec.Body.String())
		}
	})
}

func TestReviewHead(t *testing.T) {
	tests := []struct {
		name, head string
		wantUID    string
	}{
		{"API server order", `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"object":{"spec":`, "u1"},
		{"uid after other members", `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"kind":{"kind":"Pod"},"userInfo":{"groups":["a","b"]},"uid":"u2","object":`, "u2"},
		{"envelope incomplete when the head ends", `{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"spec":`, ""},
		{"request before envelope", `{"request":{"name":"x","uid":"u3"},"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1"}`, "u3"},
		{"nested uid is not the request's", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"metadata":{"uid":"wrong"}`, ""},
		{"wrong kind", `{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"u"}}`, ""},
		{"wrong apiVersion", `{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"u"}}`, ""},
		{"uid not a string", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}`, ""},
		{"not JSON", `hello`, ""},
		{"array", `[{"uid":"u"}]`, ""},
		{"empty", ``, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, uid := reviewHead([]byte(tc.head)); string(uid) != tc.wantUID {
				t.Errorf("uid = %q, want %q", uid, tc.wantUID)
			}
		})
	}
}
