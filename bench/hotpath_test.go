package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
	"github.com/trustgate-dev/trustgate/internal/admission"
	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

const (
	image  = "registry.example.com/shop/web:1.4.2"
	digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// countingVerifier trusts every image with one digest and counts its
// calls. It exists only to fill the decision cache: the benchmarks measure
// what happens around a verifier once its answer is cached, and fail if the
// verifier is called again.
type countingVerifier struct{ calls atomic.Int64 }

func (v *countingVerifier) Name() string { return "fixed" }
func (v *countingVerifier) Type() string { return "fixed" }

// BindsTags: it stands for notaryv1, which says which digest a tag means
// (a digest-bound scheme would need the registry to resolve the tag).
func (v *countingVerifier) BindsTags() bool { return true }
func (v *countingVerifier) Verify(_ context.Context, _ verify.Subject) (*verify.Result, error) {
	v.calls.Add(1)
	return &verify.Result{Digest: digest, Signers: []string{"targets/releases"}, Reason: "signed"}, nil
}

// A policy shaped like a real one: a few rules before the one that
// matches, so rule matching costs what it would.
const policyDoc = `apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: deny
exemptNamespaces: [kube-system]
# The reviews name tags, as a cluster that runs only /validate sends them.
settings: {validateRequiresDigest: false}
verifiers:
  - {name: dct, type: fixed}
rules:
  - {name: infra, images: ["registry.k8s.io/**"], action: allow}
  - {name: mirror, images: ["mirror.example.com/*/*"], verify: [dct]}
  - {name: banned, images: ["docker.io/library/busybox"], action: deny}
  - {name: shop, images: ["registry.example.com/shop/**"], verify: [dct]}
`

type fixture struct {
	verifier *countingVerifier
	engine   *engine.Engine
	validate http.Handler
	mutate   http.Handler
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	f := &fixture{verifier: &countingVerifier{}}
	p := policytest.Parse(tb, "bench", policyDoc,
		policytest.Scheme("fixed", func(string, verify.Deps) (verify.Verifier, error) { return f.verifier, nil }))
	f.engine = engine.New(p)
	opts := admission.Options{Evaluator: f.engine}
	v, err := admission.NewValidating(opts)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := admission.NewMutating(opts)
	if err != nil {
		tb.Fatal(err)
	}
	f.validate, f.mutate = v, m
	return f
}

func body(tb testing.TB, k loadgen.Kind) []byte {
	tb.Helper()
	b, err := loadgen.Review(k, []string{image}, "5f0c1e2d-0000-4000-8000-000000000001", "default")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// serve sends one review through h and returns the decoded answer.
func serve(tb testing.TB, h http.Handler, data []byte) *admissionv1.AdmissionResponse {
	tb.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("HTTP %d: %s", rec.Code, rec.Body.String())
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		tb.Fatalf("answer is not an AdmissionReview response: %v: %s", err, rec.Body.String())
	}
	return out.Response
}

// TestHotPathAnswers checks what the benchmarks rely on: the bodies are
// allowed, /mutate pins every container, and after the first request the
// verifier is never called again (the cache answers).
func TestHotPathAnswers(t *testing.T) {
	for _, k := range loadgen.Kinds {
		t.Run(string(k), func(t *testing.T) {
			f := newFixture(t)
			data := body(t, k)
			for range 3 {
				if r := serve(t, f.validate, data); !r.Allowed {
					t.Fatalf("validate denied: %+v", r.Result)
				}
			}
			r := serve(t, f.mutate, data)
			if !r.Allowed {
				t.Fatalf("mutate denied: %+v", r.Result)
			}
			var ops []struct{ Op, Path, Value string }
			if err := json.Unmarshal(r.Patch, &ops); err != nil {
				t.Fatalf("patch: %v", err)
			}
			obj := extract(t, data)
			pinned := 0
			for _, op := range ops {
				if op.Op == "replace" && strings.HasSuffix(op.Path, "/image") {
					if !strings.HasSuffix(op.Value, "@"+digest) {
						t.Fatalf("op %+v does not pin %s", op, digest)
					}
					pinned++
				}
			}
			if pinned != len(obj.Containers) {
				t.Fatalf("%d image ops for %d containers: %s", pinned, len(obj.Containers), r.Patch)
			}
			if n := f.verifier.calls.Load(); n != 1 {
				t.Fatalf("verifier called %d times, want 1 (cache)", n)
			}
		})
	}
}

func extract(tb testing.TB, data []byte) *workload.Object {
	tb.Helper()
	review, err := admission.DecodeAdmissionReview(data)
	if err != nil {
		tb.Fatal(err)
	}
	gk := schema.GroupKind{Group: review.Request.Kind.Group, Kind: review.Request.Kind.Kind}
	obj, err := workload.Extract(gk, review.Request.SubResource, review.Request.Object.Raw)
	if err != nil || obj == nil {
		tb.Fatalf("extract: %v", err)
	}
	return obj
}

// BenchmarkValidate is the whole warm hot path behind /validate: decode →
// extract images → match rules → cache lookup → encode.
func BenchmarkValidate(b *testing.B) { benchHandler(b, false) }

// BenchmarkMutate adds the digest-pinning JSON patch.
func BenchmarkMutate(b *testing.B) { benchHandler(b, true) }

func benchHandler(b *testing.B, mutate bool) {
	for _, k := range loadgen.Kinds {
		b.Run(string(k), func(b *testing.B) {
			f := newFixture(b)
			h := f.validate
			if mutate {
				h = f.mutate
			}
			data := body(b, k)
			serve(b, h, data) // fills the cache
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(data))
				req.Header.Set("Content-Type", "application/json")
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("HTTP %d", rec.Code)
				}
			}
			b.StopTimer()
			if n := f.verifier.calls.Load(); n != 1 {
				b.Fatalf("verifier called %d times, want 1: the cache did not answer", n)
			}
		})
	}
}

// BenchmarkStages splits the pod's path so a regression points at its
// stage. Floor is what bench/floor does per request: the physical floor.
// The webhook itself decodes body and object in one pass (see
// BenchmarkValidate); "decode" and "extract" measure the two-step path that
// `trustgate check` and fallbacks for odd objects take.
func BenchmarkStages(b *testing.B) {
	data := body(b, loadgen.KindPod)
	f := newFixture(b)
	obj := extract(b, data)
	images := obj.Images()
	f.engine.Evaluate(context.Background(), engine.Request{Namespace: "default", Images: images})

	b.Run("floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r admissionv1.AdmissionReview
			if err := json.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
			out := admissionv1.AdmissionReview{TypeMeta: r.TypeMeta, Response: &admissionv1.AdmissionResponse{UID: r.Request.UID, Allowed: true}}
			if _, err := json.Marshal(out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := admission.DecodeAdmissionReview(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	review, err := admission.DecodeAdmissionReview(data)
	if err != nil {
		b.Fatal(err)
	}
	gk := schema.GroupKind{Group: review.Request.Kind.Group, Kind: review.Request.Kind.Kind}
	b.Run("extract", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := workload.Extract(gk, "", review.Request.Object.Raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("match+cache", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rep := f.engine.Evaluate(context.Background(), engine.Request{Namespace: "default", Images: images})
			if len(rep.Denied()) != 0 {
				b.Fatal("denied")
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(out); err != nil {
				b.Fatal(err)
			}
		}
	})
	if n := f.verifier.calls.Load(); n != 1 {
		b.Fatalf("verifier called %d times, want 1", n)
	}
}
