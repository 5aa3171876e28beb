package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trustgate-dev/trustgate/test/harness/dct"
	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

// policyText is the e2e policy: images in the test registry's e2e/ tree must
// be signed in its notary repository (root key pinned); one allow rule; no
// other rule, so everything else follows unmatched.
func policyText(d *dctEnv, mode, unmatched string) string {
	return policyWithServer(d, mode, unmatched, d.Notary.URL())
}

// policyWithServer is policyText with the notary server at notaryURL (a proxy).
func policyWithServer(d *dctEnv, mode, unmatched, notaryURL string) string {
	return fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: %s
unmatched: %s
exemptNamespaces: [e2e-exempt]
verifiers:
- name: e2e-dct
  type: notaryv1
  notaryv1:
    server: %s
    caFile: %s
    rootKeys: [%s]
rules:
- name: allowed-example
  images: ["registry.allowed.example/**"]
  action: allow
  pinDigest: false
- name: e2e-signed
  images: ["%s/e2e/**"]
  verify: [e2e-dct]
`, mode, unmatched, notaryURL, d.Notary.CAFile(), d.RootPEMFile, d.Registry.Host())
}

// stack is a cluster, the DCT servers and one registered trustgate instance.
type stack struct {
	C  *kube.Cluster
	D  *dctEnv
	In *instance
}

var (
	mainOnce  sync.Once
	mainStack *stack
	mainErr   error
)

// requireMain returns the shared enforcing instance, which judges every
// namespace that deploy/base's selector lets through and that no other
// instance claims.
func requireMain(t *testing.T) *stack {
	t.Helper()
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	mainOnce.Do(func() {
		mainStack, mainErr = startStack(t, c, d, bin, stackSpec{
			name:     "main",
			policy:   policyText(d, "enforce", "deny"),
			selector: metav1.LabelSelectorRequirement{Key: instanceLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
			shared:   true,
		})
	})
	if mainErr != nil {
		t.Fatal(mainErr)
	}
	mainStack.logOnFailure(t)
	return mainStack
}

// stackSpec describes one trustgate instance and its registration.
type stackSpec struct {
	name   string
	policy string
	// selector is added to the manifests' namespaceSelector.
	selector metav1.LabelSelectorRequirement
	hooks    hookSet
	// serveArgs are extra flags of `trustgate serve`.
	serveArgs []string
	// shared stacks stop in TestMain, others at the end of the test.
	shared bool
}

// ownNamespaces selects the namespaces labelled for instance name.
func ownNamespaces(name string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: instanceLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{name}}
}

// startStack starts an instance and registers its webhooks; callers wait
// with waitJudged (judgedNamespace does for the main instance) before
// relying on them.
func startStack(t *testing.T, c *kube.Cluster, d *dctEnv, bin string, spec stackSpec) (*stack, error) {
	name := spec.name
	dir, err := shared.tempDir()
	if err != nil {
		return nil, err
	}
	in, err := newInstance(bin, filepath.Join(dir, "instance-"+name), name, spec.policy, spec.serveArgs...)
	if err != nil {
		return nil, err
	}
	cleanup := func() {
		_ = in.unregister(c)
		in.Stop()
	}
	if spec.shared {
		shared.onStop(cleanup)
	} else {
		t.Cleanup(cleanup)
	}
	if err := in.register(c, spec.selector, spec.hooks); err != nil {
		return nil, err
	}
	s := &stack{C: c, D: d, In: in}
	if !spec.shared {
		s.logOnFailure(t)
	}
	return s, nil
}

// logOnFailure shows trustgate's log when t fails.
func (s *stack) logOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("trustgate %s (running: %v) log tail:\n%s", s.In.Name, s.In.Running(), s.In.LogTail())
		}
	})
}

// judgedNamespace creates a namespace for one test and waits until trustgate
// judges it (the API server loads webhook configurations asynchronously).
func (s *stack) judgedNamespace(t *testing.T, name string) string {
	t.Helper()
	label := ""
	if s.In.Name != "main" {
		label = s.In.Name
	}
	ns := newNamespace(t, s.C, name, label)
	if label == "" {
		waitJudged(t, s.C, ns, s.D.NoTrustData.Ref, deniedResult)
	}
	return ns
}

func (s *stack) get(t *testing.T, ns, what, jsonpath string) string {
	t.Helper()
	out, _, err := s.C.Kubectl("-n", ns, "get", what, "-o", "jsonpath="+jsonpath)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runPod(s *stack, ns, name, img string, extra ...string) (stdout, stderr string, err error) {
	args := append([]string{"-n", ns, "run", name, "--image=" + img, "--restart=Never"}, extra...)
	return s.C.Kubectl(args...)
}

func deploymentYAML(name, img string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  replicas: 1
  selector:
    matchLabels: {app: %[1]s}
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      initContainers:
      - name: init
        image: %[2]s
      containers:
      - name: app
        image: %[2]s
`, name, img)
}

func applyStdin(s *stack, ns, doc string, extra ...string) (stdout, stderr string, err error) {
	args := append([]string{"-n", ns, "apply", "-f", "-"}, extra...)
	return s.C.KubectlInput(context.Background(), strings.NewReader(doc), args...)
}

// TestSignedImagesArePinned: a signed image is admitted and stored pinned to
// the digest Notary signed, with the tag kept, for kubectl run and apply.
func TestSignedImagesArePinned(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-pin")
	signed := s.D.Signed

	t.Run("kubectl run pod", func(t *testing.T) {
		if _, _, err := runPod(s, ns, "signed", signed.Ref); err != nil {
			t.Fatalf("signed pod refused: %v\n%s", err, s.In.LogTail())
		}
		if got := s.get(t, ns, "pod/signed", "{.spec.containers[0].image}"); got != signed.Pinned() {
			t.Errorf("stored image = %q, want %q", got, signed.Pinned())
		}
		// The original reference survives in the annotation, as the API
		// server stored it.
		want := mustJSON(map[string]string{"/spec/containers/0/image": signed.Ref})
		if got := s.get(t, ns, "pod/signed", originalImagesPath); got != want {
			t.Errorf("original-images annotation = %s, want %s", got, want)
		}
	})
	t.Run("kubectl apply deployment", func(t *testing.T) {
		if _, _, err := applyStdin(s, ns, deploymentYAML("signed", s.D.SignedOther.Ref)); err != nil {
			t.Fatalf("signed deployment refused: %v", err)
		}
		want := s.D.SignedOther.Pinned()
		for _, path := range []string{"{.spec.template.spec.containers[0].image}", "{.spec.template.spec.initContainers[0].image}"} {
			if got := s.get(t, ns, "deployment/signed", path); got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
		var originals map[string]string
		raw := s.get(t, ns, "deployment/signed", originalImagesPath)
		if err := json.Unmarshal([]byte(raw), &originals); err != nil {
			t.Fatalf("original-images annotation %q: %v", raw, err)
		}
		for _, path := range []string{"/spec/template/spec/containers/0/image", "/spec/template/spec/initContainers/0/image"} {
			if originals[path] != s.D.SignedOther.Ref {
				t.Errorf("original-images[%s] = %q, want %q (all: %v)", path, originals[path], s.D.SignedOther.Ref, originals)
			}
		}
	})
	t.Run("already pinned to the signed digest", func(t *testing.T) {
		if _, _, err := runPod(s, ns, "prepinned", signed.Pinned()); err != nil {
			t.Fatalf("pod pinned to the signed digest refused: %v", err)
		}
		if got := s.get(t, ns, "pod/prepinned", "{.spec.containers[0].image}"); got != signed.Pinned() {
			t.Errorf("stored image = %q, want %q unchanged", got, signed.Pinned())
		}
	})
}

// originalImagesPath is the jsonpath of the annotation in which /mutate keeps
// the references it replaced.
const originalImagesPath = `{.metadata.annotations.trustgate\.dev/original-images}`

// TestUntrustedImagesAreRefused: kubectl shows trustgate's reason, and
// nothing is stored.
func TestUntrustedImagesAreRefused(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-deny")
	// The signed repository's v1 digest under another tag's name: a digest the
	// tag was never signed for.
	repoOf := func(ref string) string { return ref[:strings.LastIndex(ref, ":")] }
	tests := []struct {
		name  string
		image string
		// reason is a fragment of trustgate's explanation that kubectl must show.
		reason string
	}{
		{"repository without trust data", s.D.NoTrustData.Ref, "no trust data"},
		{"unsigned tag in a signed repository", s.D.UnsignedTag.Ref, "not signed"},
		{
			"tag pinned to a digest it was not signed for",
			repoOf(s.D.SignedOther.Ref) + ":v2@" + s.D.Signed.Digest,
			// The reason names the digest v2 really is signed for.
			s.D.SignedOther.Digest,
		},
		{"unsigned tag pinned to another tag's digest", s.D.UnsignedTag.Ref + "@" + s.D.Signed.Digest, "not signed"},
		{"unmatched image follows unmatched: deny", "registry.unmatched.example/app:v1", "no rule matches"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("refused-%d", i)
			_, stderr, err := runPod(s, ns, name, tc.image)
			if err == nil {
				t.Fatalf("pod with %s admitted", tc.image)
			}
			if !strings.Contains(stderr, "denied the request") || !strings.Contains(stderr, "images.trustgate.dev") {
				t.Errorf("stderr does not show trustgate's denial:\n%s", stderr)
			}
			// The reason names the image and says what is wrong with it.
			ref := tc.image
			if at := strings.IndexByte(ref, '@'); at > 0 {
				ref = ref[:at]
			}
			for _, want := range []string{repoOf(ref), tc.reason} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if _, _, err := s.C.Kubectl("-n", ns, "get", "pod", name); err == nil {
				t.Errorf("refused pod %s was stored", name)
			}
		})
	}
	t.Run("deployment", func(t *testing.T) {
		_, stderr, err := applyStdin(s, ns, deploymentYAML("unsigned", s.D.NoTrustData.Ref))
		if err == nil || !strings.Contains(stderr, "denied the request") {
			t.Fatalf("unsigned deployment: err %v, stderr %q; want a denial", err, stderr)
		}
	})
}

// TestAllowRule: an image matched by an allow rule is admitted as written.
func TestAllowRule(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-allow")
	img := "registry.allowed.example/tools/app:v1"
	if _, _, err := runPod(s, ns, "allowed", img); err != nil {
		t.Fatalf("allowed image refused: %v", err)
	}
	if got := s.get(t, ns, "pod/allowed", "{.spec.containers[0].image}"); got != img {
		t.Errorf("stored image = %q, want %q (pinDigest: false)", got, img)
	}
}

// TestNamespacesNotJudged: the policy's exempt namespace and the namespaces
// that deploy/base's namespaceSelector excludes admit anything.
func TestNamespacesNotJudged(t *testing.T) {
	s := requireMain(t)
	unsigned := s.D.NoTrustData.Ref
	t.Run("judged namespace refuses the same pod", func(t *testing.T) {
		// The control, first: the same image is refused where trustgate
		// judges, which also shows the webhooks are active.
		ns := s.judgedNamespace(t, "e2e-control")
		if _, _, err := runPod(s, ns, "control", unsigned); err == nil {
			t.Fatal("unsigned pod admitted in a judged namespace")
		}
	})
	t.Run("policy exemptNamespaces", func(t *testing.T) {
		ns := newNamespace(t, s.C, "e2e-exempt", "")
		if _, _, err := runPod(s, ns, "exempt", unsigned); err != nil {
			t.Fatalf("unsigned pod in exempt namespace refused: %v", err)
		}
		if got := s.get(t, ns, "pod/exempt", "{.spec.containers[0].image}"); got != unsigned {
			t.Errorf("stored image = %q, want %q untouched", got, unsigned)
		}
	})
	t.Run("kube-system excluded by the webhook selector", func(t *testing.T) {
		// No controller-manager creates kube-system's default ServiceAccount.
		_, _, _ = s.C.Kubectl("-n", "kube-system", "create", "serviceaccount", "default")
		if _, _, err := runPod(s, "kube-system", "e2e-unjudged", unsigned); err != nil {
			t.Fatalf("unsigned pod in kube-system refused: %v", err)
		}
		t.Cleanup(func() { _, _, _ = s.C.Kubectl("-n", "kube-system", "delete", "pod", "e2e-unjudged", "--wait=false") })
	})
}

// TestEphemeralContainers: `kubectl debug` goes through the
// pods/ephemeralcontainers subresource, which is judged like a pod.
func TestEphemeralContainers(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-debug")
	if _, _, err := runPod(s, ns, "target", s.D.Signed.Ref); err != nil {
		t.Fatal(err)
	}
	t.Run("unsigned debug image refused", func(t *testing.T) {
		_, stderr, err := s.C.Kubectl("-n", ns, "debug", "target", "--image="+s.D.NoTrustData.Ref, "--container=dbg-unsigned", "--profile=general")
		if err == nil {
			t.Fatal("ephemeral container with an unsigned image admitted")
		}
		if !strings.Contains(stderr, "denied the request") {
			t.Errorf("stderr does not show trustgate's denial:\n%s", stderr)
		}
		if got := s.get(t, ns, "pod/target", "{.spec.ephemeralContainers[*].name}"); strings.Contains(got, "dbg-unsigned") {
			t.Errorf("ephemeral containers = %q after the refusal", got)
		}
	})
	t.Run("signed debug image pinned", func(t *testing.T) {
		if _, _, err := s.C.Kubectl("-n", ns, "debug", "target", "--image="+s.D.SignedOther.Ref, "--container=dbg-signed", "--profile=general"); err != nil {
			t.Fatalf("ephemeral container with a signed image refused: %v", err)
		}
		got := s.get(t, ns, "pod/target", `{.spec.ephemeralContainers[?(@.name=="dbg-signed")].image}`)
		if got != s.D.SignedOther.Pinned() {
			t.Errorf("ephemeral container image = %q, want %q", got, s.D.SignedOther.Pinned())
		}
	})
}

// TestServerDryRun: a server-side dry run is judged and pinned like a real
// request (sideEffects None), and stores nothing.
func TestServerDryRun(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-dryrun")
	out, _, err := runPod(s, ns, "dry", s.D.Signed.Ref, "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}")
	if err != nil {
		t.Fatalf("dry run of a signed pod refused: %v", err)
	}
	if out != s.D.Signed.Pinned() {
		t.Errorf("dry-run image = %q, want %q", out, s.D.Signed.Pinned())
	}
	if _, _, err := s.C.Kubectl("-n", ns, "get", "pod", "dry"); err == nil {
		t.Error("dry run stored the pod")
	}
	if _, stderr, err := runPod(s, ns, "dry", s.D.NoTrustData.Ref, "--dry-run=server"); err == nil || !strings.Contains(stderr, "denied the request") {
		t.Errorf("dry run of an unsigned pod: err %v, stderr %q; want a denial", err, stderr)
	}
}

// TestWarnMode: a warn-mode policy admits what enforce would refuse, and
// kubectl prints trustgate's reasons as warnings. Its unmatched: allow
// admits images outside every rule without a warning.
func TestWarnMode(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	s, err := startStack(t, c, d, bin, stackSpec{name: "warn", policy: policyText(d, "warn", "allow"), selector: ownNamespaces("warn")})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-warn")
	waitJudged(t, c, ns, d.NoTrustData.Ref, warnedResult)

	_, stderr, err := runPod(s, ns, "unsigned", d.NoTrustData.Ref)
	if err != nil {
		t.Fatalf("warn mode refused an unsigned pod: %v", err)
	}
	// kubectl shows the warning as trustgate worded it: image, rule, reason.
	if want := `Warning: trustgate would deny "` + d.NoTrustData.Ref + `" (rule e2e-signed): `; !strings.Contains(stderr, want) || !strings.Contains(stderr, "no trust data") {
		t.Errorf("kubectl printed no warning %q… naming the reason:\n%s", want, stderr)
	}
	if got := s.get(t, ns, "pod/unsigned", "{.spec.containers[0].image}"); got != d.NoTrustData.Ref {
		t.Errorf("stored image = %q, want %q as written", got, d.NoTrustData.Ref)
	}

	_, stderr, err = runPod(s, ns, "unmatched", "registry.unmatched.example/app:v1")
	if err != nil {
		t.Fatalf("unmatched: allow refused an unmatched image: %v", err)
	}
	if strings.Contains(stderr, "Warning:") {
		t.Errorf("unmatched: allow warned:\n%s", stderr)
	}

	_, stderr, err = runPod(s, ns, "signed", d.Signed.Ref)
	if err != nil || strings.Contains(stderr, "Warning:") {
		t.Errorf("signed pod in warn mode: err %v, stderr %q; want admitted without warnings", err, stderr)
	}
	if got := s.get(t, ns, "pod/signed", "{.spec.containers[0].image}"); got != d.Signed.Pinned() {
		t.Errorf("signed image in warn mode = %q, want pinned %q", got, d.Signed.Pinned())
	}
}

// TestTrustgateDown: with failurePolicy Fail, no trustgate means no new
// workloads in judged namespaces; they are admitted again once it is back.
func TestTrustgateDown(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	s, err := startStack(t, c, d, bin, stackSpec{name: "down", policy: policyText(d, "enforce", "deny"), selector: ownNamespaces("down")})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-down")
	waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)

	if _, _, err := runPod(s, ns, "before", d.Signed.Ref); err != nil {
		t.Fatalf("signed pod refused while trustgate runs: %v", err)
	}
	s.In.Stop()
	_, stderr, err := runPod(s, ns, "during", d.Signed.Ref)
	if err == nil {
		t.Fatal("pod admitted while trustgate was down (failurePolicy must be Fail)")
	}
	if !strings.Contains(stderr, "failed calling webhook") {
		t.Errorf("stderr does not say the webhook could not be called:\n%s", stderr)
	}
	if err := s.In.Start(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runPod(s, ns, "after", d.Signed.Ref); err != nil {
		t.Fatalf("signed pod refused after trustgate restarted: %v", err)
	}
}

// TestValidatingWebhookAlone registers only the manifests' validating
// webhook: /validate judges on its own (the mutating webhook refuses first
// when both are registered), and it never changes the object.
func TestValidatingWebhookAlone(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	s, err := startStack(t, c, d, bin, stackSpec{
		name: "validate", policy: policyText(d, "enforce", "deny"),
		selector: ownNamespaces("validate"), hooks: validatingOnly,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-validate")
	waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)

	_, stderr, err := runPod(s, ns, "unsigned", d.NoTrustData.Ref)
	if err == nil || !strings.Contains(stderr, `admission webhook "verify.images.trustgate.dev" denied the request`) {
		t.Errorf("unsigned pod: err %v, stderr %q; want a denial by the validating webhook", err, stderr)
	}
	// Refusals are audited too, by /validate (with both webhooks /mutate
	// refuses first and leaves auditing to /validate).
	wantAudit := "decision=deny rule=e2e-signed image=" + d.NoTrustData.Ref + " verifiers=e2e-dct=untrusted"
	if got := auditAnnotations(t, ns, "unsigned")["verify.images.trustgate.dev/image-0"]; got != wantAudit {
		t.Errorf("audit annotation of the refused pod = %q, want %q", got, wantAudit)
	}
	// A signed image pinned as /mutate would pin it; the tag alone is
	// refused here (TestValidateRequiresPinnedTag).
	if _, _, err := runPod(s, ns, "signed", d.Signed.Pinned()); err != nil {
		t.Fatalf("signed pod refused by /validate: %v", err)
	}
	if got := s.get(t, ns, "pod/signed", "{.spec.containers[0].image}"); got != d.Signed.Pinned() {
		t.Errorf("stored image = %q, want %q unchanged: only the mutating webhook may change images", got, d.Signed.Pinned())
	}
}

// TestUnreachableNotary: when the notary server never answers, trustgate's
// own deadline (8s by default) ends the check before the API server's
// timeoutSeconds (10s in the manifests), so the user gets trustgate's answer
// naming the image, not a webhook timeout.
func TestUnreachableNotary(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	proxy, err := dct.StartSlowProxy(d.Notary.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	s, err := startStack(t, c, d, bin, stackSpec{
		name: "blackhole", policy: policyWithServer(d, "enforce", "deny", proxy.URL()),
		selector: ownNamespaces("blackhole"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-blackhole")
	// Registration is active once an unmatched image is refused (no notary needed).
	waitJudged(t, c, ns, "registry.unmatched.example/app:v1", deniedResult)

	proxy.SetBlackhole(true)
	start := time.Now()
	_, stderr, err := runPod(s, ns, "signed", d.Signed.Ref)
	took := time.Since(start)
	t.Logf("refused after %s: %s", took.Round(10*time.Millisecond), strings.TrimSpace(stderr))
	if err == nil {
		t.Fatal("pod admitted although its signature could not be checked")
	}
	if !strings.Contains(stderr, "denied the request") || !strings.Contains(stderr, d.GUN) {
		t.Errorf("stderr is not trustgate's answer naming %s:\n%s", d.GUN, stderr)
	}
	if strings.Contains(stderr, "failed calling webhook") {
		t.Errorf("the API server timed out before trustgate answered (took %s):\n%s", took, stderr)
	}
	if took >= 10*time.Second {
		t.Errorf("refusal took %s, not within the webhook's 10s timeout", took)
	}
	if proxy.Accepted() == 0 {
		t.Error("trustgate never tried the notary server")
	}

	proxy.SetBlackhole(false)
	start = time.Now()
	if _, _, err := runPod(s, ns, "signed-again", d.Signed.Ref); err != nil {
		t.Errorf("signed pod refused once the notary server answers again (a failed check must not be cached): %v", err)
	}
	t.Logf("admitted again after %s", time.Since(start).Round(10*time.Millisecond))
}

// TestWorkloadKinds: every kind the manifests' rules name is judged and
// pinned at its own pod template path; a rule missing from webhooks.yaml
// would let the unsigned variant through.
func TestWorkloadKinds(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-kinds")
	pod := func(img, restart string) string {
		return fmt.Sprintf("restartPolicy: %s\ncontainers:\n- name: app\n  image: %s\n", restart, img)
	}
	template := func(img, restart string) string {
		return "metadata:\n  labels: {app: x}\nspec:\n" + indent(pod(img, restart), 2)
	}
	tests := []struct {
		kind, apiVersion string
		// spec renders the object's spec for an image; path is where the
		// stored image is.
		spec func(img string) string
		path string
	}{
		{"Pod", "v1", func(img string) string {
			return indent(pod(img, "Never"), 2)
		}, "{.spec.containers[0].image}"},
		{"ReplicationController", "v1", func(img string) string {
			return "  replicas: 1\n  selector: {app: x}\n  template:\n" + indent(template(img, "Always"), 4)
		}, "{.spec.template.spec.containers[0].image}"},
		{"ReplicaSet", "apps/v1", func(img string) string {
			return "  replicas: 1\n  selector: {matchLabels: {app: x}}\n  template:\n" + indent(template(img, "Always"), 4)
		}, "{.spec.template.spec.containers[0].image}"},
		{"StatefulSet", "apps/v1", func(img string) string {
			return "  serviceName: x\n  selector: {matchLabels: {app: x}}\n  template:\n" + indent(template(img, "Always"), 4)
		}, "{.spec.template.spec.containers[0].image}"},
		{"DaemonSet", "apps/v1", func(img string) string {
			return "  selector: {matchLabels: {app: x}}\n  template:\n" + indent(template(img, "Always"), 4)
		}, "{.spec.template.spec.containers[0].image}"},
		{"Job", "batch/v1", func(img string) string {
			return "  template:\n" + indent(template(img, "Never"), 4)
		}, "{.spec.template.spec.containers[0].image}"},
		{"CronJob", "batch/v1", func(img string) string {
			return "  schedule: \"@daily\"\n  jobTemplate:\n    spec:\n      template:\n" + indent(template(img, "Never"), 8)
		}, "{.spec.jobTemplate.spec.template.spec.containers[0].image}"},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			name := strings.ToLower(tc.kind)
			doc := func(n, img string) string {
				return fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata:\n  name: %s\nspec:\n%s", tc.apiVersion, tc.kind, n, tc.spec(img))
			}
			_, stderr, err := applyStdin(s, ns, doc(name+"-unsigned", s.D.NoTrustData.Ref))
			if err == nil || !strings.Contains(stderr, "denied the request") {
				t.Errorf("unsigned %s: err %v, stderr %q; want trustgate's denial", tc.kind, err, stderr)
			}
			if _, _, err := applyStdin(s, ns, doc(name+"-signed", s.D.Signed.Ref)); err != nil {
				t.Fatalf("signed %s refused: %v", tc.kind, err)
			}
			if got := s.get(t, ns, name+"/"+name+"-signed", tc.path); got != s.D.Signed.Pinned() {
				t.Errorf("stored %s = %q, want %q", tc.path, got, s.D.Signed.Pinned())
			}
		})
	}
}

// indent prefixes every non-empty line of s with n spaces.
func indent(s string, n int) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = strings.Repeat(" ", n) + l
		}
	}
	return strings.Join(lines, "\n")
}
