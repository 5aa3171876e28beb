// Package pinning tests digest pinning (the /mutate webhook) end to end
// against the real Docker Content Trust backend: Debian's notary-server and
// docker-registry, with tags signed by the real notary CLI. The webhook
// handlers, engine and verifier are trustgate's own, wired as `serve` wires
// them; only the HTTP listener is replaced by direct ServeHTTP calls.
package pinning

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trustgate-dev/trustgate/internal/admission"
	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	harness "github.com/trustgate-dev/trustgate/test/harness/dct"
)

type env struct {
	reg      *harness.Registry
	signer   *harness.Signer
	counter  *harness.RequestCounter
	validate http.Handler
	mutate   http.Handler
	signed   string // registry/repo:v1, signed
	digest   string // its signed digest
	moved    string // registry/repo:moved, signed, then re-pushed to an unsigned digest
	movedOld string
	movedNew string
	unsigned string
}

func setup(t *testing.T) *env {
	t.Helper()
	harness.RequireBinaries(t, "notary-server", "notary", "docker-registry")
	srv := harness.NewNotaryServer(t, harness.NotaryOptions{Dir: t.TempDir()})
	reg := harness.NewRegistry(t, harness.RegistryOptions{Dir: t.TempDir()})
	sg := harness.NewSigner(t, srv)
	e := &env{reg: reg, signer: sg, counter: harness.NewRequestCounter(t, srv)}

	gun := reg.Repo("team/app")
	if err := sg.Init(gun); err != nil {
		t.Fatal(err)
	}
	sign := func(tag string) (string, int64) {
		d, size, err := reg.PushRandomImage("team/app", tag)
		if err != nil {
			t.Fatal(err)
		}
		if err := sg.Sign(gun, tag, d, size); err != nil {
			t.Fatal(err)
		}
		return d, size
	}
	e.digest, _ = sign("v1")
	e.signed = gun + ":v1"
	e.movedOld, _ = sign("moved")
	e.moved = gun + ":moved"
	var err error
	if e.movedNew, _, err = reg.PushRandomImage("team/app", "moved"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.PushRandomImage("team/app", "unsigned"); err != nil {
		t.Fatal(err)
	}
	e.unsigned = gun + ":unsigned"
	rootKey, err := sg.WriteRootKeyPEM(gun)
	if err != nil {
		t.Fatal(err)
	}

	// The verifier talks to the notary server through the request counter.
	doc := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
verifiers:
  - name: dct
    type: notaryv1
    notaryv1: {server: %q, caFile: %q, rootKeys: [%q]}
rules:
  - {name: team, images: [%q], verify: [dct]}
`, e.counter.URL(), srv.CAFile(), rootKey, reg.Host()+"/team/**")
	eng := engine.New(policytest.Parse(t, "pinning.yaml", doc, notaryv1.Scheme))
	opts := admission.Options{Evaluator: eng, Deadline: 8 * time.Second}
	if e.validate, err = admission.NewValidating(opts); err != nil {
		t.Fatal(err)
	}
	if e.mutate, err = admission.NewMutating(opts); err != nil {
		t.Fatal(err)
	}
	return e
}

func review(t *testing.T, h http.Handler, kind, resource, sub, op string, obj, old any) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, _ := json.Marshal(obj)
	req := &admissionv1.AdmissionRequest{
		UID: "uid-1", Namespace: "default", Operation: admissionv1.Operation(op), SubResource: sub,
	}
	req.Kind.Kind, req.Resource.Resource = kind, resource
	req.Kind.Version, req.Resource.Version = "v1", "v1"
	if kind != "Pod" {
		req.Kind.Group, req.Resource.Group = "apps", "apps"
	}
	req.Object.Raw = raw
	if old != nil {
		req.OldObject.Raw, _ = json.Marshal(old)
	}
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req,
	})
	rec := httptest.NewRecorder()
	hr := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, hr)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	return out.Response
}

// applyPatch applies the response's JSONPatch to obj and decodes the result
// strictly into a fresh value of obj's type: the patched object must be valid.
func applyPatch[T any](t *testing.T, obj T, resp *admissionv1.AdmissionResponse) T {
	t.Helper()
	var out T
	raw, _ := json.Marshal(obj)
	if resp.Patch == nil {
		json.Unmarshal(raw, &out)
		return out
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patchType %v", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("patch does not decode: %v\n%s", err, resp.Patch)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply: %v\n%s", err, resp.Patch)
	}
	dec := json.NewDecoder(bytes.NewReader(patched))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("patched object does not decode: %v\n%s", err, patched)
	}
	return out
}

func pod(containers, inits []string) *corev1.Pod {
	p := &corev1.Pod{}
	p.APIVersion, p.Kind, p.Name = "v1", "Pod", "p"
	for i, img := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	for i, img := range inits {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("i%d", i), Image: img})
	}
	return p
}

func TestPinning(t *testing.T) {
	e := setup(t)
	pinned := e.signed + "@" + e.digest

	t.Run("signed tag is patched to its signed digest, containers and init containers", func(t *testing.T) {
		in := pod([]string{e.signed, e.signed}, []string{e.signed})
		resp := review(t, e.mutate, "Pod", "pods", "", "CREATE", in, nil)
		if !resp.Allowed {
			t.Fatalf("denied: %v", resp.Result)
		}
		out := applyPatch(t, in, resp)
		for _, c := range append(out.Spec.Containers, out.Spec.InitContainers...) {
			if c.Image != pinned {
				t.Fatalf("container %s image %q, want %q", c.Name, c.Image, pinned)
			}
		}
		var orig map[string]string
		if err := json.Unmarshal([]byte(out.Annotations[admission.OriginalImagesAnnotation]), &orig); err != nil || orig["/spec/initContainers/0/image"] != e.signed {
			t.Fatalf("original-images annotation %q: %v", out.Annotations[admission.OriginalImagesAnnotation], err)
		}
		// /validate accepts what /mutate produced.
		if resp := review(t, e.validate, "Pod", "pods", "", "CREATE", out, nil); !resp.Allowed {
			t.Fatalf("validate denied the pinned pod: %v", resp.Result)
		}
	})

	t.Run("tag moved to an unsigned digest after signing is pinned to the signed one, never the new one", func(t *testing.T) {
		resp := review(t, e.mutate, "Pod", "pods", "", "CREATE", pod([]string{e.moved}, nil), nil)
		if !resp.Allowed {
			t.Fatalf("denied: %v", resp.Result)
		}
		out := applyPatch(t, pod([]string{e.moved}, nil), resp)
		if got := out.Spec.Containers[0].Image; got != e.moved+"@"+e.movedOld || strings.Contains(string(resp.Patch), e.movedNew) {
			t.Fatalf("pinned to %q, want the signed %s (never %s)", got, e.movedOld, e.movedNew)
		}
		// Asking for the new (unsigned) digest explicitly is denied by both webhooks.
		for name, h := range map[string]http.Handler{"mutate": e.mutate, "validate": e.validate} {
			resp := review(t, h, "Pod", "pods", "", "CREATE", pod([]string{e.moved + "@" + e.movedNew}, nil), nil)
			if resp.Allowed || resp.Patch != nil || !strings.Contains(resp.Result.Message, "signed for "+e.movedOld) {
				t.Fatalf("%s: allowed=%v patch=%s message=%q", name, resp.Allowed, resp.Patch, resp.Result.Message)
			}
		}
	})

	t.Run("unsigned image is denied with no patch", func(t *testing.T) {
		resp := review(t, e.mutate, "Pod", "pods", "", "CREATE", pod([]string{e.unsigned}, nil), nil)
		if resp.Allowed || resp.Patch != nil || resp.Result.Code != 403 {
			t.Fatalf("unsigned: %+v", resp)
		}
	})

	t.Run("ephemeral container added by kubectl debug is patched", func(t *testing.T) {
		old := pod([]string{pinned}, nil)
		in := old.DeepCopy()
		in.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: e.signed}}}
		resp := review(t, e.mutate, "Pod", "pods", "ephemeralcontainers", "UPDATE", in, old)
		out := applyPatch(t, in, resp)
		if !resp.Allowed || out.Spec.EphemeralContainers[0].Image != pinned {
			t.Fatalf("ephemeral container: allowed=%v image=%q", resp.Allowed, out.Spec.EphemeralContainers[0].Image)
		}
	})

	t.Run("pods of a pinned template cost no new verification", func(t *testing.T) {
		d := &appsv1.Deployment{}
		d.APIVersion, d.Kind, d.Name = "apps/v1", "Deployment", "web"
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: e.signed + "-tpl"}}
		// A tag of its own, so that nothing about it is cached yet.
		dg, size, err := e.reg.PushRandomImage("team/app", "v1-tpl")
		if err != nil {
			t.Fatal(err)
		}
		e.signTag(t, "v1-tpl", dg, size)
		e.counter.Reset()
		resp := review(t, e.mutate, "Deployment", "deployments", "", "CREATE", d, nil)
		out := applyPatch(t, d, resp)
		want := e.signed + "-tpl@" + dg
		if got := out.Spec.Template.Spec.Containers[0].Image; !resp.Allowed || got != want {
			t.Fatalf("template: allowed=%v image=%q want %q", resp.Allowed, got, want)
		}
		afterTemplate := e.counter.Count()
		if afterTemplate == 0 {
			t.Fatal("the template's verification made no notary request: the counter is not in the path")
		}
		// The ReplicaSet's pods arrive with the pinned reference.
		for range 20 {
			p := pod([]string{want}, nil)
			if resp := review(t, e.mutate, "Pod", "pods", "", "CREATE", p, nil); !resp.Allowed || resp.Patch != nil {
				t.Fatalf("pod of the template: allowed=%v patch=%s", resp.Allowed, resp.Patch)
			}
			if resp := review(t, e.validate, "Pod", "pods", "", "CREATE", p, nil); !resp.Allowed {
				t.Fatalf("pod of the template denied: %v", resp.Result)
			}
		}
		if got := e.counter.Count(); got != afterTemplate {
			t.Fatalf("pods of the pinned template made %d more notary requests, want 0", got-afterTemplate)
		}
	})
}

func (e *env) signTag(t *testing.T, tag, digest string, size int64) {
	t.Helper()
	if err := e.signer.Sign(e.reg.Repo("team/app"), tag, digest, size); err != nil {
		t.Fatal(err)
	}
}
