package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

// TestOnePassDecode covers the bodies whose objects do not fit
// workload.Fields, the spellings the decoder must not be fooled by, and
// which path (one pass, or bytes decoded by kind) each body takes.
func TestOnePassDecode(t *testing.T) {
	pod := object(kindCases[0], podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil)
	deployment := object(kindCases[2], podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil)
	withField := func(obj map[string]any, path []string, v any) map[string]any {
		b, _ := json.Marshal(obj)
		var cp map[string]any
		_ = json.Unmarshal(b, &cp)
		m := cp
		for _, k := range path[:len(path)-1] {
			m = m[k].(map[string]any)
		}
		m[path[len(path)-1]] = v
		return cp
	}
	// The object's own kind says Pod, the request's says Deployment: the
	// template is read.
	deploymentSaysPod := withField(deployment, []string{"kind"}, "Pod")
	crd := map[string]any{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": map[string]any{"name": "w"},
		"spec": map[string]any{"containers": map[string]any{"not": "a list"}, "template": "a string"}}

	tests := []struct {
		name       string
		body       []byte
		wantCode   int
		wantMsg    string
		wantImages []string // images the engine was asked about
		wantFast   bool     // decoded in one pass
	}{
		{name: "pod", body: reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", pod, nil)),
			wantCode: 200, wantImages: []string{"registry.example/app:1"}, wantFast: true},
		{name: "object kind field disagrees with request kind", body: reviewBody(t, apiVersionV1, request("CREATE", "apps", "v1", "Deployment", "", deploymentSaysPod, nil)),
			wantCode: 200, wantImages: []string{"registry.example/app:1"}, wantFast: true},
		{name: "a kind not judged with any spec shape", body: reviewBody(t, apiVersionV1, request("CREATE", "example.com", "v1", "Widget", "", crd, nil)),
			wantCode: 200},
		{name: "junk where a Pod keeps nothing is still judged", body: reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "",
			withField(pod, []string{"spec", "template"}, 5), nil)),
			wantCode: 200, wantImages: []string{"registry.example/app:1"}},
		{name: "duplicate image in the object", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"version":"v1","kind":"Pod"},` +
			`"object":{"spec":{"containers":[{"name":"a","image":"signed","image":"unsigned"}]}}}}`),
			wantCode: 400, wantMsg: "request.object: malformed object: decode Pod"},
		{name: "duplicate namespace in the request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"version":"v1","kind":"Pod"},` +
			`"namespace":"prod","namespace":"kube-system","object":{"spec":{}}}}`),
			wantCode: 400, wantMsg: `duplicate field "request.namespace"`},
		{name: "duplicate object", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"version":"v1","kind":"Pod"},` +
			`"object":{"spec":{"containers":[{"image":"x"}]}},"object":{"spec":{}}}}`),
			wantCode: 400, wantMsg: `duplicate field "request.object"`},
		{name: "Object is not object", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"version":"v1","kind":"Pod"},` +
			`"Object":{"spec":{"containers":[{"image":"x"}]}}}}`),
			wantCode: 400, wantMsg: "without an object"},
		{name: "null object", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"version":"v1","kind":"Pod"},"object":null}}`),
			wantCode: 400, wantMsg: "without an object"},
		{name: "SubResource is not subResource", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"version":"v1","kind":"Pod"},` +
			`"SubResource":"status","object":{"spec":{"containers":[{"image":"x"}]}}}}`),
			wantCode: 200, wantImages: []string{"x"}, wantFast: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eng := &fakeEngine{}
			rec := post(t, newValidating(t, eng), tc.body)
			if rec.Code != tc.wantCode || !strings.Contains(rec.Body.String(), tc.wantMsg) {
				t.Fatalf("status %d %q, want %d mentioning %q", rec.Code, rec.Body.String(), tc.wantCode, tc.wantMsg)
			}
			var images []string
			for _, r := range eng.requests() {
				images = append(images, r.Images...)
			}
			if !reflect.DeepEqual(images, tc.wantImages) {
				t.Errorf("engine asked about %v, want %v", images, tc.wantImages)
			}
			if tc.wantCode != 200 {
				return
			}
			rv, err := decodeReview(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if fast := rv.object.fields != nil; fast != tc.wantFast {
				t.Errorf("decoded in one pass: %v, want %v", fast, tc.wantFast)
			}
		})
	}
}

// TestDecodeReviewIsDecodeAdmissionReview replays the fixture corpus (and
// a few variants) through both decoders: they accept the same bodies, read
// the same request, and find the same objects.
func TestDecodeReviewIsDecodeAdmissionReview(t *testing.T) {
	files, err := filepath.Glob("testdata/requests/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("fixtures: %v", err)
	}
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(file), func(t *testing.T) { sameDecoding(t, body) })
	}
}

func FuzzDecodeReviewIsDecodeAdmissionReview(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(sameDecoding)
}

func sameDecoding(t *testing.T, body []byte) {
	rv, err := decodeReview(body)
	want, wantErr := DecodeAdmissionReview(body)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("decodeReview error %v, DecodeAdmissionReview error %v", err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() || !errors.Is(err, ErrMalformedReview) {
			t.Fatalf("errors differ: %v / %v", err, wantErr)
		}
		return
	}
	req := want.Request
	head := requestHead{UID: req.UID, Kind: req.Kind, SubResource: req.SubResource, Name: req.Name,
		Namespace: req.Namespace, Operation: req.Operation, DryRun: req.DryRun}
	if rv.typeMeta != want.TypeMeta || !reflect.DeepEqual(rv.requestHead, head) {
		t.Fatalf("decodeReview read %+v %+v, DecodeAdmissionReview %+v %+v", rv.typeMeta, rv.requestHead, want.TypeMeta, head)
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	for _, o := range []struct {
		name string
		src  objectSource
		raw  []byte
	}{{"object", rv.object, req.Object.Raw}, {"oldObject", rv.oldObject, req.OldObject.Raw}} {
		if o.src.present() != (len(o.raw) > 0) {
			t.Fatalf("%s present: %v, DecodeAdmissionReview has %d bytes", o.name, o.src.present(), len(o.raw))
		}
		if !o.src.present() {
			continue
		}
		got, gerr := o.src.extract(gk, req.SubResource)
		exp, eerr := workload.Extract(gk, req.SubResource, o.raw)
		if (gerr == nil) != (eerr == nil) || !reflect.DeepEqual(got, exp) {
			t.Fatalf("%s: got %+v (%v), Extract gives %+v (%v)", o.name, got, gerr, exp, eerr)
		}
	}
}

// TestDecodedReviewOwnsItsData: request bodies are read into reused
// buffers, so nothing decoded may point into the body.
func TestDecodedReviewOwnsItsData(t *testing.T) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, fast := range []bool{true, false} {
			scratch := append([]byte(nil), body...)
			var rv *decodedReview
			if fast {
				rv, err = decodeReview(scratch)
			} else {
				var r *admissionReview
				if r, err = decodeSlow(scratch); err == nil {
					rv = &decodedReview{typeMeta: r.TypeMeta, requestHead: r.Request.requestHead, object: rawObject(r.Request.Object), oldObject: rawObject(r.Request.OldObject)}
				}
			}
			if err != nil {
				continue
			}
			gk := schema.GroupKind{Group: rv.Kind.Group, Kind: rv.Kind.Kind}
			before := snapshot(t, rv, gk)
			for i := range scratch {
				scratch[i] = 'x'
			}
			if after := snapshot(t, rv, gk); after != before {
				t.Errorf("%s (fast %v): decoded review changed with the body:\n%s\n%s", file, fast, before, after)
			}
		}
	}
}

func snapshot(t *testing.T, rv *decodedReview, gk schema.GroupKind) string {
	t.Helper()
	obj, _ := rv.object.extract(gk, rv.SubResource)
	old, _ := rv.oldObject.extract(gk, rv.SubResource)
	b, err := json.Marshal([]any{rv.typeMeta, rv.requestHead, obj, old, string(rv.object.raw), string(rv.oldObject.raw)})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cachedEngine answers from EvaluateCached when cached is set, and counts
// which way it was asked.
type cachedEngine struct {
	fakeEngine
	cached     bool
	panics     bool
	fast, slow atomic.Int64
	slowDelay  time.Duration
}

func (c *cachedEngine) EvaluateCached(req engine.Request) (engine.Report, bool) {
	c.fast.Add(1)
	if c.panics {
		panic("boom")
	}
	if !c.cached {
		return engine.Report{}, false
	}
	return c.fakeEngine.Evaluate(context.Background(), req), true
}

func (c *cachedEngine) Evaluate(ctx context.Context, req engine.Request) engine.Report {
	c.slow.Add(1)
	time.Sleep(c.slowDelay) // ignores ctx: the worst case for the deadline
	return c.fakeEngine.Evaluate(ctx, req)
}

func TestCachedEvaluatorFastPath(t *testing.T) {
	good := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", "registry.example/app:1"}}, nil, nil), nil), nil))
	bad := reviewBody(t, apiVersionV1, request("CREATE", "", "v1", "Pod", "", object(kindCases[0], podSpec([]ctr{{"app", "registry.example/bad:1"}}, nil, nil), nil), nil))

	t.Run("answered from the cache, Evaluate not called", func(t *testing.T) {
		eng := &cachedEngine{cached: true}
		if r := answer(t, newValidating(t, eng), good).Response; !r.Allowed {
			t.Errorf("denied: %+v", r.Result)
		}
		r := answer(t, newMutating(t, eng), bad).Response
		if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, "no valid signature") {
			t.Errorf("cached deny lost: %+v", r)
		}
		if eng.fast.Load() != 2 || eng.slow.Load() != 0 {
			t.Errorf("EvaluateCached %d times, Evaluate %d times; want 2 and 0", eng.fast.Load(), eng.slow.Load())
		}
	})
	t.Run("declined: Evaluate under the deadline", func(t *testing.T) {
		eng := &cachedEngine{slowDelay: 5 * time.Second}
		const deadline = 300 * time.Millisecond
		start := time.Now()
		r := answer(t, newValidating(t, eng, func(o *Options) { o.Deadline = deadline }), good).Response
		if took := time.Since(start); took > deadline+time.Second {
			t.Errorf("answered after %v, deadline %v", took, deadline)
		}
		if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, "timed out") {
			t.Errorf("response %+v, want deny saying timed out", r.Result)
		}
		if eng.fast.Load() != 1 || eng.slow.Load() != 1 {
			t.Errorf("EvaluateCached %d times, Evaluate %d times; want 1 and 1", eng.fast.Load(), eng.slow.Load())
		}
	})
	t.Run("declined, evaluator quick: its answer, mode respected", func(t *testing.T) {
		eng := &cachedEngine{}
		eng.mode = policy.Warn
		r := answer(t, newValidating(t, eng), bad).Response
		if !r.Allowed || len(r.Warnings) != 1 {
			t.Errorf("response %+v, want allowed with a warning", r)
		}
	})
	t.Run("panic is a 500", func(t *testing.T) {
		eng := &cachedEngine{cached: true, panics: true}
		if rec := post(t, newValidating(t, eng), good); rec.Code != http.StatusInternalServerError {
			t.Errorf("status %d, want 500", rec.Code)
		}
		if eng.slow.Load() != 0 {
			t.Error("Evaluate called after EvaluateCached panicked")
		}
	})
}

// TestReadAllLimited reads bodies of every size class, declared or not,
// into pooled buffers, twice over so that reused buffers are exercised.
func TestReadAllLimited(t *testing.T) {
	for _, size := range []int{0, 1, initialBodyBuffer - 1, initialBodyBuffer, initialBodyBuffer + 1, 100_000, maxPooledBody + 10} {
		for _, declared := range []bool{true, false} {
			for range 2 {
				want := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
				r := httptest.NewRequest(http.MethodPost, "/validate", struct{ *bytes.Reader }{bytes.NewReader(want)})
				r.ContentLength = -1
				if declared {
					r.ContentLength = int64(size)
				}
				bp, err := readAllLimited(httptest.NewRecorder(), r, 1<<20)
				if err != nil || !bytes.Equal(*bp, want) {
					t.Fatalf("size %d declared %v: read %d bytes (%v), want %d", size, declared, len(*bp), err, size)
				}
				releaseBody(bp)
			}
		}
	}
}
