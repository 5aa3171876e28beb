package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trustgate-dev/trustgate/internal/certs"
	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

// notPinnedMessage is what /validate says about a tag a pinning rule left
// unpinned.
const notPinnedMessage = "the mutating webhook (/mutate) did not pin it, or a later mutating webhook removed the pin"

// withSettings adds a settings block to an e2e policy.
func withSettings(policy, settings string) string {
	return strings.Replace(policy, "exemptNamespaces:", "settings: "+settings+"\nexemptNamespaces:", 1)
}

// TestValidateRequiresPinnedTag (issue 9, item 3): a rule that pins expects
// /mutate to have rewritten the image to its signed digest. When the mutating
// webhook is absent (or a later one undoes the pin), /validate alone refuses
// the signed tag, saying why, instead of letting the kubelet pull whatever the
// tag points to later; settings.validateRequiresDigest: false relaxes that for
// clusters that run only /validate; with both webhooks the pod is stored
// pinned.
func TestValidateRequiresPinnedTag(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)

	t.Run("validating webhook alone refuses a signed tag", func(t *testing.T) {
		s, err := startStack(t, c, d, bin, stackSpec{
			name: "validate-pin", policy: policyText(d, "enforce", "deny"),
			selector: ownNamespaces("validate-pin"), hooks: validatingOnly,
		})
		if err != nil {
			t.Fatal(err)
		}
		ns := s.judgedNamespace(t, "e2e-validate-pin")
		waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)

		_, stderr, err := runPod(s, ns, "tag", d.Signed.Ref)
		if err == nil {
			t.Fatalf("signed tag %s admitted unpinned by /validate alone", d.Signed.Ref)
		}
		for _, want := range []string{`admission webhook "verify.images.trustgate.dev" denied the request`, `"` + d.Signed.Ref + `"`, notPinnedMessage} {
			if !strings.Contains(stderr, want) {
				t.Errorf("kubectl's error lacks %q:\n%s", want, stderr)
			}
		}
		if out, _, _ := c.Kubectl("-n", ns, "get", "pod/tag", "--ignore-not-found", "-o", "name"); out != "" {
			t.Errorf("refused pod was stored: %q", out)
		}
		// What /mutate would have written is admitted as it is.
		if _, stderr, err := runPod(s, ns, "pinned", d.Signed.Pinned()); err != nil {
			t.Fatalf("pinned signed image refused: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/pinned", "{.spec.containers[0].image}"); got != d.Signed.Pinned() {
			t.Errorf("stored image = %q, want %q", got, d.Signed.Pinned())
		}
		// A tag pinned to a digest that is not the signed one stays refused.
		other := d.Signed.Ref + "@" + d.SignedOther.Digest
		if _, _, err := runPod(s, ns, "otherdigest", other); err == nil {
			t.Errorf("%s admitted", other)
		}
	})

	t.Run("relaxed for clusters that run only /validate", func(t *testing.T) {
		s, err := startStack(t, c, d, bin, stackSpec{
			name:     "validate-tags",
			policy:   withSettings(policyText(d, "enforce", "deny"), "{validateRequiresDigest: false}"),
			selector: ownNamespaces("validate-tags"), hooks: validatingOnly,
		})
		if err != nil {
			t.Fatal(err)
		}
		ns := s.judgedNamespace(t, "e2e-validate-tags")
		waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)
		if _, stderr, err := runPod(s, ns, "tag", d.Signed.Ref); err != nil {
			t.Fatalf("signed tag refused with validateRequiresDigest: false: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/tag", "{.spec.containers[0].image}"); got != d.Signed.Ref {
			t.Errorf("stored image = %q, want %q: only the mutating webhook may pin", got, d.Signed.Ref)
		}
		if _, _, err := runPod(s, ns, "unsigned", d.UnsignedTag.Ref); err == nil {
			t.Errorf("unsigned tag %s admitted", d.UnsignedTag.Ref)
		}
	})

	t.Run("a later mutating webhook undoes the pin", func(t *testing.T) {
		// A webhook that insists on the tag as written (as an image
		// rewriter of another tool might), called after trustgate's (the
		// API server calls mutating webhooks in the order of their
		// configurations' names) and reinvoked after trustgate's
		// reinvocation: the object reaches /validate unpinned.
		s, err := startStack(t, c, d, bin, stackSpec{
			name: "validate-undo", policy: policyText(d, "enforce", "deny"),
			selector: ownNamespaces("validate-undo"),
		})
		if err != nil {
			t.Fatal(err)
		}
		ns := s.judgedNamespace(t, "e2e-validate-undo")
		waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)
		calls := startUnpinWebhook(t, c, "validate-undo")
		waitJudged(t, c, ns, d.Signed.Ref, func(_, stderr string, err error) bool {
			return err != nil && strings.Contains(stderr, notPinnedMessage)
		})
		_, stderr, err := runPod(s, ns, "undone", d.Signed.Ref)
		if err == nil || !strings.Contains(stderr, notPinnedMessage) {
			t.Fatalf("pod whose pin a later webhook undid: err %v, stderr %q; want a denial saying the pin was removed", err, stderr)
		}
		if calls.Load() == 0 {
			t.Fatal("the unpinning webhook was never called")
		}
	})

	t.Run("both webhooks store it pinned", func(t *testing.T) {
		s := requireMain(t)
		ns := s.judgedNamespace(t, "e2e-validate-both")
		if _, stderr, err := runPod(s, ns, "tag", d.Signed.Ref); err != nil {
			t.Fatalf("signed tag refused with both webhooks: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/tag", "{.spec.containers[0].image}"); got != d.Signed.Pinned() {
			t.Errorf("stored image = %q, want %q", got, d.Signed.Pinned())
		}
	})
}

// startUnpinWebhook serves and registers a mutating webhook, for the
// namespaces labelled for instance, that strips the digest from every
// container image of a Pod, reinvoked whenever a later webhook changes the
// Pod (reinvocationPolicy IfNeeded), so it has the last word. It returns the
// number of calls it answered.
func startUnpinWebhook(t *testing.T, c *kube.Cluster, instance string) *atomic.Int64 {
	t.Helper()
	caPEM, cert, err := certs.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var review admissionv1.AdmissionReview
			if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
				http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
				return
			}
			calls.Add(1)
			resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
			var pod corev1.Pod
			if err := json.Unmarshal(review.Request.Object.Raw, &pod); err == nil {
				var ops []map[string]string
				for i, ctr := range pod.Spec.Containers {
					if tag, _, pinned := strings.Cut(ctr.Image, "@"); pinned {
						ops = append(ops, map[string]string{"op": "replace", "path": fmt.Sprintf("/spec/containers/%d/image", i), "value": tag})
					}
				}
				if len(ops) > 0 {
					patch, _ := json.Marshal(ops)
					pt := admissionv1.PatchTypeJSONPatch
					resp.Patch, resp.PatchType = patch, &pt
				}
			}
			review.Response, review.Request = resp, nil
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(review)
		}),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	name := "zz-e2e-unpin-" + instance // sorts after trustgate-e2e-*
	config := fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: %s
webhooks:
- name: unpin.e2e.trustgate.dev
  clientConfig:
    url: https://%s/unpin
    caBundle: %s
  rules:
  - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  namespaceSelector:
    matchExpressions:
    - {key: %s, operator: In, values: [%s]}
  reinvocationPolicy: IfNeeded
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
`, name, ln.Addr(), base64.StdEncoding.EncodeToString(caPEM), instanceLabel, instance)
	if _, stderr, err := c.KubectlInput(context.Background(), bytes.NewReader([]byte(config)), "apply", "-f", "-"); err != nil {
		t.Fatalf("register the unpinning webhook: %v\n%s", err, stderr)
	}
	t.Cleanup(func() {
		_, _, _ = c.Kubectl("delete", "--ignore-not-found", "mutatingwebhookconfiguration/"+name)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &calls
}
