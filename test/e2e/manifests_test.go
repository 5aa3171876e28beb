package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

// deployDir is deploy/ in the checkout.
func deployDir(t *testing.T) string {
	t.Helper()
	root, err := kube.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "deploy")
}

// baseWebhooks reads the two webhook configurations from deploy/base/webhooks.yaml.
func baseWebhooks() (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	root, err := kube.RepoRoot()
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(root, "deploy", "base", "webhooks.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	var mut *admissionregistrationv1.MutatingWebhookConfiguration
	var val *admissionregistrationv1.ValidatingWebhookConfiguration
	for i, doc := range splitYAML(data) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, nil, fmt.Errorf("%s document %d: %w", path, i, err)
		}
		switch meta.Kind {
		case "MutatingWebhookConfiguration":
			mut = &admissionregistrationv1.MutatingWebhookConfiguration{}
			err = yaml.UnmarshalStrict(doc, mut)
		case "ValidatingWebhookConfiguration":
			val = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			err = yaml.UnmarshalStrict(doc, val)
		default:
			err = fmt.Errorf("unexpected kind %q", meta.Kind)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s document %d: %w", path, i, err)
		}
	}
	if mut == nil || val == nil {
		return nil, nil, fmt.Errorf("%s: want one MutatingWebhookConfiguration and one ValidatingWebhookConfiguration", path)
	}
	return mut, val, nil
}

// splitYAML splits a multi-document YAML file on its "---" lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(d []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(d, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// hookSet says which of the manifests' webhook configurations to register.
type hookSet int

const (
	bothHooks      hookSet = iota
	validatingOnly         // shows /validate judging on its own, without pinning
)

// webhookConfigs turns deploy/base's webhook configurations into ones for a
// loopback trustgate instance. Only what cannot work without cluster
// networking changes: the name (one pair per instance), clientConfig (the
// Service becomes https://ADDR/<the Service's path> with the instance's CA)
// and one extra namespaceSelector expression that keeps instances apart.
// Rules, failure policy, timeouts, selectors and the rest are the manifests'.
func webhookConfigs(in *instance, extra metav1.LabelSelectorRequirement, hooks hookSet) ([]byte, error) {
	mut, val, err := baseWebhooks()
	if err != nil {
		return nil, err
	}
	client := func(cc admissionregistrationv1.WebhookClientConfig) (admissionregistrationv1.WebhookClientConfig, error) {
		if cc.Service == nil || cc.Service.Path == nil {
			return cc, fmt.Errorf("webhooks.yaml: clientConfig without service path")
		}
		url := "https://" + in.Addr + *cc.Service.Path
		return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: in.CAPEM}, nil
	}
	selector := func(s *metav1.LabelSelector) *metav1.LabelSelector {
		s = s.DeepCopy()
		if s == nil {
			s = &metav1.LabelSelector{}
		}
		s.MatchExpressions = append(s.MatchExpressions, extra)
		return s
	}
	name := "trustgate-e2e-" + in.Name
	mut.Name, val.Name = name, name
	for i := range mut.Webhooks {
		if mut.Webhooks[i].ClientConfig, err = client(mut.Webhooks[i].ClientConfig); err != nil {
			return nil, err
		}
		mut.Webhooks[i].NamespaceSelector = selector(mut.Webhooks[i].NamespaceSelector)
	}
	for i := range val.Webhooks {
		if val.Webhooks[i].ClientConfig, err = client(val.Webhooks[i].ClientConfig); err != nil {
			return nil, err
		}
		val.Webhooks[i].NamespaceSelector = selector(val.Webhooks[i].NamespaceSelector)
	}
	objs := []any{mut, val}
	if hooks == validatingOnly {
		objs = []any{val}
	}
	var out bytes.Buffer
	for _, obj := range objs {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return out.Bytes(), nil
}

// TestWebhookManifests pins down the admission contract of deploy/base: what
// is sent to trustgate, and what happens when trustgate cannot answer.
func TestWebhookManifests(t *testing.T) {
	mut, val, err := baseWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []string{
		"/v1/pods CREATE,UPDATE",
		"/v1/pods/ephemeralcontainers UPDATE",
		"/v1/replicationcontrollers CREATE,UPDATE",
		"apps/v1/daemonsets CREATE,UPDATE",
		"apps/v1/deployments CREATE,UPDATE",
		"apps/v1/replicasets CREATE,UPDATE",
		"apps/v1/statefulsets CREATE,UPDATE",
		"batch/v1/cronjobs CREATE,UPDATE",
		"batch/v1/jobs CREATE,UPDATE",
	}
	type common struct {
		name       string
		path       string
		failure    *admissionregistrationv1.FailurePolicyType
		timeout    *int32
		side       *admissionregistrationv1.SideEffectClass
		versions   []string
		match      *admissionregistrationv1.MatchPolicyType
		nsSel      *metav1.LabelSelector
		objSel     *metav1.LabelSelector
		rules      []admissionregistrationv1.RuleWithOperations
		matchConds int
	}
	var hooks []common
	for _, w := range mut.Webhooks {
		hooks = append(hooks, common{w.Name, servicePath(w.ClientConfig), w.FailurePolicy, w.TimeoutSeconds, w.SideEffects,
			w.AdmissionReviewVersions, w.MatchPolicy, w.NamespaceSelector, w.ObjectSelector, w.Rules, len(w.MatchConditions)})
	}
	for _, w := range val.Webhooks {
		hooks = append(hooks, common{w.Name, servicePath(w.ClientConfig), w.FailurePolicy, w.TimeoutSeconds, w.SideEffects,
			w.AdmissionReviewVersions, w.MatchPolicy, w.NamespaceSelector, w.ObjectSelector, w.Rules, len(w.MatchConditions)})
	}
	if len(mut.Webhooks) != 1 || len(val.Webhooks) != 1 {
		t.Fatalf("got %d mutating and %d validating webhooks, want 1 and 1", len(mut.Webhooks), len(val.Webhooks))
	}
	if got := hooks[0].path; got != "/mutate" {
		t.Errorf("mutating webhook path = %q, want /mutate", got)
	}
	if got := hooks[1].path; got != "/validate" {
		t.Errorf("validating webhook path = %q, want /validate", got)
	}
	if p := mut.Webhooks[0].ReinvocationPolicy; p == nil || *p != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("mutating reinvocationPolicy = %v, want IfNeeded", deref(p))
	}
	for _, h := range hooks {
		t.Run(h.name, func(t *testing.T) {
			if h.failure == nil || *h.failure != admissionregistrationv1.Fail {
				t.Errorf("failurePolicy = %v, want Fail", deref(h.failure))
			}
			// Above trustgate's 8s decision deadline, at most the API server's 30s.
			if h.timeout == nil || *h.timeout != 10 {
				t.Errorf("timeoutSeconds = %v, want 10", deref(h.timeout))
			}
			if h.side == nil || *h.side != admissionregistrationv1.SideEffectClassNone {
				t.Errorf("sideEffects = %v, want None (dry runs must reach trustgate)", deref(h.side))
			}
			if !slices.Equal(h.versions, []string{"v1"}) {
				t.Errorf("admissionReviewVersions = %v, want [v1]", h.versions)
			}
			if h.match == nil || *h.match != admissionregistrationv1.Equivalent {
				t.Errorf("matchPolicy = %v, want Equivalent", deref(h.match))
			}
			if h.objSel != nil || h.matchConds != 0 {
				t.Errorf("objectSelector/matchConditions set: a pod could opt itself out")
			}
			// trustgate's own namespace and kube-system are never judged (so
			// they can always be repaired), nor a namespace an operator
			// labelled trustgate.dev/exempt in an emergency.
			want := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"trustgate", "kube-system"}},
				{Key: exemptLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
			}}
			if got, _ := json.Marshal(h.nsSel); string(got) != mustJSON(want) {
				t.Errorf("namespaceSelector = %s, want %s", got, mustJSON(want))
			}
			var rules []string
			for _, r := range h.rules {
				if r.Scope == nil || *r.Scope != admissionregistrationv1.NamespacedScope {
					t.Errorf("rule %v: scope %v, want Namespaced", r.Resources, deref(r.Scope))
				}
				ops := make([]string, 0, len(r.Operations))
				for _, o := range r.Operations {
					ops = append(ops, string(o))
				}
				for _, g := range r.APIGroups {
					for _, v := range r.APIVersions {
						for _, res := range r.Resources {
							rules = append(rules, fmt.Sprintf("%s/%s/%s %s", g, v, res, strings.Join(ops, ",")))
						}
					}
				}
			}
			sort.Strings(rules)
			if !slices.Equal(rules, wantRules) {
				t.Errorf("rules =\n  %s\nwant\n  %s", strings.Join(rules, "\n  "), strings.Join(wantRules, "\n  "))
			}
			for _, r := range rules {
				if strings.Contains(r, "*") {
					t.Errorf("rule %q uses a wildcard", r)
				}
			}
		})
	}
}

// deref shows a pointer's value in messages ("<unset>" for nil).
func deref[T any](p *T) any {
	if p == nil {
		return "<unset>"
	}
	return *p
}

func servicePath(cc admissionregistrationv1.WebhookClientConfig) string {
	if cc.Service == nil || cc.Service.Path == nil {
		return ""
	}
	if cc.Service.Name != "trustgate" || cc.Service.Namespace != "trustgate" || cc.Service.Port == nil || *cc.Service.Port != 443 {
		return "(not service trustgate/trustgate:443)"
	}
	return *cc.Service.Path
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// kustomize builds a kustomization with kubectl's built-in kustomize.
func kustomize(t *testing.T, c *kube.Cluster, dir string) []byte {
	t.Helper()
	out, _, err := c.Kubectl("kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(out)
}

// TestDeploymentManifest checks the hardening of the built base.
func TestDeploymentManifest(t *testing.T) {
	c := requireCluster(t)
	objs := splitYAML(kustomize(t, c, filepath.Join(deployDir(t), "base")))
	var dep *appsv1.Deployment
	var svc *corev1.Service
	var kinds []string
	for _, doc := range objs {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, meta.Kind)
		switch meta.Kind {
		case "Deployment":
			dep = &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict(doc, dep); err != nil {
				t.Fatal(err)
			}
		case "Service":
			svc = &corev1.Service{}
			if err := yaml.UnmarshalStrict(doc, svc); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range kinds {
		if strings.HasPrefix(k, "Cluster") {
			t.Errorf("base contains %s: the base must need nothing cluster-wide", k)
		}
	}
	if dep == nil || svc == nil {
		t.Fatalf("base has kinds %v; want a Deployment and a Service", kinds)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.String() != "https" {
		t.Errorf("service = %s %+v; want ClusterIP 443 → https", svc.Spec.Type, svc.Spec.Ports)
	}
	spec := dep.Spec.Template.Spec
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", dep.Spec.Replicas)
	}
	if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil {
		t.Errorf("no pod anti-affinity")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	ctr := spec.Containers[0]
	wantArgs := []string{"serve", "--policy", "/etc/trustgate/policy.yaml", "--addr", ":8443",
		"--tls-cert", "/etc/trustgate/tls/tls.crt", "--tls-key", "/etc/trustgate/tls/tls.key"}
	if !slices.Equal(ctr.Args, wantArgs) {
		t.Errorf("args = %q, want %q", ctr.Args, wantArgs)
	}
	sc := ctr.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot not true")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation not false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities = %+v, want drop [ALL]", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("seccompProfile not RuntimeDefault")
	}
	for name, p := range map[string]*corev1.Probe{"/readyz": ctr.ReadinessProbe, "/healthz": ctr.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Scheme != corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != "https" {
			t.Errorf("probe for %s = %+v, want HTTPS GET %s on port https", name, p, name)
		}
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].ContainerPort != 8443 || ctr.Ports[0].Name != "https" {
		t.Errorf("ports = %+v, want https 8443", ctr.Ports)
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v, want cpu/memory requests and a memory limit", ctr.Resources)
	}
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols[mounts["/etc/trustgate/policy.yaml"]]; v.ConfigMap == nil || !strings.HasPrefix(v.ConfigMap.Name, "trustgate-policy") {
		t.Errorf("/etc/trustgate/policy.yaml is not mounted from the trustgate-policy ConfigMap: %+v", v)
	}
	if v := vols[mounts["/etc/trustgate/tls"]]; v.Secret == nil || v.Secret.SecretName != "trustgate-tls" {
		t.Errorf("/etc/trustgate/tls is not mounted from Secret trustgate-tls: %+v", v)
	}
}

// TestManifestsServerDryRun applies the base and the overlays that need no
// CRDs with a server-side dry run: the real API server validates every
// object, and Pod Security admission checks the Deployment's pod template
// against the namespace's `restricted` level.
func TestManifestsServerDryRun(t *testing.T) {
	c := requireCluster(t)
	dir := deployDir(t)
	// Objects in a namespace that a dry run only pretends to create cannot be
	// dry-run created, so the Namespace itself (with its Pod Security label)
	// is applied for real. Nothing else is, and the webhook configurations
	// never are: they would point every judged namespace at a Service that
	// does not exist here.
	if _, _, err := c.Kubectl("apply", "-f", filepath.Join(dir, "base", "namespace.yaml")); err != nil {
		t.Fatal(err)
	}
	certsOverlay := copyOverlay(t, dir, "trustgate-certs")
	certs := filepath.Join(certsOverlay, "certs")
	writeTestCerts(t, certs)
	overlays := []struct {
		name string
		dir  string
		want []string // kinds that must appear in kubectl's output
	}{
		{"base", filepath.Join(dir, "base"), []string{"deployment.apps/trustgate", "mutatingwebhookconfiguration.admissionregistration.k8s.io/trustgate", "validatingwebhookconfiguration.admissionregistration.k8s.io/trustgate", "poddisruptionbudget.policy/trustgate", "service/trustgate", "configmap/trustgate-policy-"}},
		{"image-pull-secrets", filepath.Join(dir, "overlays", "image-pull-secrets"), []string{"clusterrole.rbac.authorization.k8s.io/trustgate-image-pull-secrets", "clusterrolebinding.rbac.authorization.k8s.io/trustgate-image-pull-secrets"}},
		{"trustgate-certs", certsOverlay, []string{"secret/trustgate-tls-"}},
	}
	for _, o := range overlays {
		t.Run(o.name, func(t *testing.T) {
			stdout, stderr, err := c.Kubectl("apply", "-k", o.dir, "--dry-run=server")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(stderr, "Warning") {
				t.Errorf("apply printed warnings (Pod Security or deprecations):\n%s", stderr)
			}
			for _, w := range o.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("kubectl output lacks %q:\n%s", w, stdout)
				}
			}
		})
	}
	t.Run("trustgate-certs caBundle", func(t *testing.T) {
		ca, err := os.ReadFile(filepath.Join(certs, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		stdout, _, err := c.Kubectl("apply", "-k", overlays[2].dir, "--dry-run=server", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Items []struct {
				Kind     string `json:"kind"`
				Webhooks []struct {
					ClientConfig struct {
						CABundle []byte `json:"caBundle"`
					} `json:"clientConfig"`
				} `json:"webhooks"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(stdout), &list); err != nil {
			t.Fatalf("decode kubectl output: %v", err)
		}
		n := 0
		for _, it := range list.Items {
			for _, w := range it.Webhooks {
				n++
				if !bytes.Equal(w.ClientConfig.CABundle, ca) {
					t.Errorf("%s caBundle = %q, want the generated ca.crt", it.Kind, w.ClientConfig.CABundle)
				}
			}
		}
		if n != 2 {
			t.Errorf("found %d webhooks in the output, want 2", n)
		}
	})
	t.Run("cert-manager builds", func(t *testing.T) {
		// cert-manager's CRDs are not installed here; check the build only.
		out := string(kustomize(t, c, filepath.Join(dir, "overlays", "cert-manager")))
		if n := strings.Count(out, "cert-manager.io/inject-ca-from: trustgate/trustgate-ca"); n != 2 {
			t.Errorf("inject-ca-from annotations: %d, want 2 (both webhook configurations)", n)
		}
		for _, w := range []string{"kind: Issuer", "kind: Certificate", "secretName: trustgate-tls", "- trustgate.trustgate.svc"} {
			if !strings.Contains(out, w) {
				t.Errorf("cert-manager overlay lacks %q", w)
			}
		}
	})
}

// copyOverlay copies deploy/overlays/NAME next to a symlink of deploy/base in
// a temp folder, so the checked-in overlay is used unchanged without writing
// keys into the checkout.
func copyOverlay(t *testing.T, deploy, name string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Symlink(filepath.Join(deploy, "base"), filepath.Join(root, "base")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(root, "overlays", name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(deploy, "overlays", name, "kustomization.yaml")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "kustomization.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeTestCerts writes ca.crt, tls.crt and tls.key as `trustgate certs`
// does, with Go's crypto (the dry run needs files, not a running trustgate).
func writeTestCerts(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e-ca"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		DNSNames: []string{"trustgate.trustgate.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"ca.crt":  certPEM,
		"tls.crt": certPEM,
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBasePolicy loads deploy/base/policy.yaml with the real binary: it must
// be a valid policy, exempt trustgate's own Deployment, and (as documented)
// start in warn mode, refusing nothing yet.
func TestBasePolicy(t *testing.T) {
	c := requireCluster(t)
	bin := requireTrustgate(t)
	dir := deployDir(t)
	policy := filepath.Join(dir, "base", "policy.yaml")
	built := filepath.Join(t.TempDir(), "base.yaml")
	if err := os.WriteFile(built, kustomize(t, c, filepath.Join(dir, "base")), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		var out, errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("trustgate %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}

	out, _ := run("", "check", "--policy", policy, "-f", built)
	if !strings.Contains(out, "Deployment/trustgate") || !strings.Contains(out, "EXEMPT") {
		t.Errorf("trustgate check of the base: want its Deployment exempt, got:\n%s", out)
	}

	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: apps}\nspec:\n  containers: [{name: a, image: registry.example/app:v1}]\n"
	out, stderr := run(pod, "check", "--policy", policy, "-f", "-", "-o", "json")
	var got struct {
		Image   string `json:"image"`
		Allowed bool   `json:"allowed"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if got.Image != "registry.example/app:v1" || got.Allowed {
		t.Errorf("unmatched image = %+v, want refused by unmatched: deny", got)
	}
	if !strings.Contains(stderr, "warn") {
		t.Errorf("base policy is not in warn mode; stderr: %q", stderr)
	}
}
