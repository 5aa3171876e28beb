package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// helmBin finds helm: on PATH, else where hack/setup.sh builds it.
func helmBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "trustgate", "bin", "helm")
	if _, err := os.Stat(p); err != nil {
		skipOrFail(t, fmt.Errorf("%w: helm is not on PATH nor at %s (run hack/setup.sh)", errUnavailable, p))
	}
	return p
}

func chartDir(t *testing.T) string { return filepath.Join(deployDir(t), "helm", "trustgate") }

// runHelm runs helm with its own config and cache folders (never the user's)
// and, when kubeconfig is set, against that cluster.
func runHelm(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	dir, err := shared.tempDir()
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "helm-home")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBin(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	if kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+kubeconfig)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// objects indexes rendered manifests by "Kind/name".
type objects map[string][]byte

func parseObjects(t *testing.T, data []byte) objects {
	t.Helper()
	objs := objects{}
	for i, doc := range splitYAML(data) {
		var meta struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		if meta.Kind == "" {
			continue
		}
		key := meta.Kind + "/" + meta.Name
		if _, dup := objs[key]; dup {
			t.Fatalf("%s rendered twice", key)
		}
		objs[key] = doc
	}
	return objs
}

// get decodes objs[key] strictly into v.
func (o objects) get(t *testing.T, key string, v any) {
	t.Helper()
	doc, ok := o[key]
	if !ok {
		keys := make([]string, 0, len(o))
		for k := range o {
			keys = append(keys, k)
		}
		t.Fatalf("no %s among %v", key, keys)
	}
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}

func helmTemplate(t *testing.T, args ...string) objects {
	t.Helper()
	out, err := runHelm(t, "", append([]string{"template", "trustgate", chartDir(t), "--namespace", "trustgate"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return parseObjects(t, []byte(out))
}

// kustomizeBuild runs `kubectl kustomize` (no cluster needed).
func kustomizeBuild(t *testing.T, dir string) objects {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		skipOrFail(t, fmt.Errorf("%w: kubectl: %v", errUnavailable, err))
	}
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	return parseObjects(t, out)
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameJSON(t *testing.T, what string, chart, base any) {
	t.Helper()
	if c, b := jsonOf(t, chart), jsonOf(t, base); c != b {
		t.Errorf("%s: the chart and deploy/base differ\nchart: %s\nbase:  %s", what, c, b)
	}
}

// TestHelmChartMatchesKustomize renders the chart (`helm template`, release
// trustgate in namespace trustgate) and deploy/base (`kubectl kustomize`) and
// compares what must not drift: both webhook configurations entirely (but the
// chart's generated caBundle), the Deployment's spec with its pod security
// settings (but the image and the policy ConfigMap's generated name), the
// Service, the PDB, the ServiceAccount and the policy. The pull-secrets
// component is compared the same way.
func TestHelmChartMatchesKustomize(t *testing.T) {
	if _, err := runHelm(t, "", "lint", "--strict", chartDir(t)); err != nil {
		t.Fatal(err)
	}
	chart := helmTemplate(t)
	base := kustomizeBuild(t, filepath.Join(deployDir(t), "base"))

	t.Run("webhooks", func(t *testing.T) {
		var cm, bm admissionregistrationv1.MutatingWebhookConfiguration
		var cv, bv admissionregistrationv1.ValidatingWebhookConfiguration
		chart.get(t, "MutatingWebhookConfiguration/trustgate", &cm)
		base.get(t, "MutatingWebhookConfiguration/trustgate", &bm)
		chart.get(t, "ValidatingWebhookConfiguration/trustgate", &cv)
		base.get(t, "ValidatingWebhookConfiguration/trustgate", &bv)
		var tls corev1.Secret
		chart.get(t, "Secret/trustgate-tls", &tls)
		for i := range cm.Webhooks {
			if !bytes.Equal(cm.Webhooks[i].ClientConfig.CABundle, tls.Data["ca.crt"]) {
				t.Errorf("mutating webhook %d caBundle is not the generated Secret's ca.crt", i)
			}
			cm.Webhooks[i].ClientConfig.CABundle = nil
		}
		for i := range cv.Webhooks {
			if !bytes.Equal(cv.Webhooks[i].ClientConfig.CABundle, tls.Data["ca.crt"]) {
				t.Errorf("validating webhook %d caBundle is not the generated Secret's ca.crt", i)
			}
			cv.Webhooks[i].ClientConfig.CABundle = nil
		}
		if len(bm.Webhooks) == 0 || len(bv.Webhooks) == 0 {
			t.Fatal("deploy/base has no webhooks")
		}
		sameJSON(t, "MutatingWebhookConfiguration webhooks", cm.Webhooks, bm.Webhooks)
		sameJSON(t, "ValidatingWebhookConfiguration webhooks", cv.Webhooks, bv.Webhooks)
	})

	t.Run("deployment", func(t *testing.T) {
		var cd, bd appsv1.Deployment
		chart.get(t, "Deployment/trustgate", &cd)
		base.get(t, "Deployment/trustgate", &bd)
		if cd.Namespace != "trustgate" || bd.Namespace != "trustgate" {
			t.Errorf("namespaces: chart %q, base %q", cd.Namespace, bd.Namespace)
		}
		// The security settings first, so a drift there is named plainly.
		cp, bp := cd.Spec.Template.Spec, bd.Spec.Template.Spec
		sameJSON(t, "pod securityContext", cp.SecurityContext, bp.SecurityContext)
		sameJSON(t, "container securityContext", cp.Containers[0].SecurityContext, bp.Containers[0].SecurityContext)
		sameJSON(t, "automountServiceAccountToken", cp.AutomountServiceAccountToken, bp.AutomountServiceAccountToken)
		sameJSON(t, "serviceAccountName", cp.ServiceAccountName, bp.ServiceAccountName)
		sameJSON(t, "container args", cp.Containers[0].Args, bp.Containers[0].Args)

		// Then everything else, normalised where the two must differ.
		if !strings.HasPrefix(bp.Volumes[0].ConfigMap.Name, "trustgate-policy-") || cp.Volumes[0].ConfigMap.Name != "trustgate-policy" {
			t.Errorf("policy volume: chart %q, base %q", cp.Volumes[0].ConfigMap.Name, bp.Volumes[0].ConfigMap.Name)
		}
		bd.Spec.Template.Spec.Volumes[0].ConfigMap.Name = "trustgate-policy"
		if cd.Spec.Template.Annotations["checksum/policy"] == "" {
			t.Error("the chart's pod template has no checksum/policy annotation (a policy change would not roll out)")
		}
		cd.Spec.Template.Annotations = nil
		if !strings.HasPrefix(cp.Containers[0].Image, "ghcr.io/trustgate-dev/trustgate:") {
			t.Errorf("chart image = %q", cp.Containers[0].Image)
		}
		cd.Spec.Template.Spec.Containers[0].Image = bp.Containers[0].Image
		sameJSON(t, "Deployment spec", cd.Spec, bd.Spec)
	})

	t.Run("service, PDB, ServiceAccount", func(t *testing.T) {
		var cs, bs corev1.Service
		chart.get(t, "Service/trustgate", &cs)
		base.get(t, "Service/trustgate", &bs)
		sameJSON(t, "Service spec", cs.Spec, bs.Spec)
		var cp, bp policyv1.PodDisruptionBudget
		chart.get(t, "PodDisruptionBudget/trustgate", &cp)
		base.get(t, "PodDisruptionBudget/trustgate", &bp)
		sameJSON(t, "PDB spec", cp.Spec, bp.Spec)
		var ca, ba corev1.ServiceAccount
		chart.get(t, "ServiceAccount/trustgate", &ca)
		base.get(t, "ServiceAccount/trustgate", &ba)
		sameJSON(t, "ServiceAccount automountServiceAccountToken", ca.AutomountServiceAccountToken, ba.AutomountServiceAccountToken)
	})

	t.Run("policy", func(t *testing.T) {
		var cc corev1.ConfigMap
		chart.get(t, "ConfigMap/trustgate-policy", &cc)
		var bc *corev1.ConfigMap
		for k := range base {
			if strings.HasPrefix(k, "ConfigMap/trustgate-policy-") {
				bc = &corev1.ConfigMap{}
				base.get(t, k, bc)
			}
		}
		if bc == nil {
			t.Fatal("deploy/base has no trustgate-policy ConfigMap")
		}
		var cpol, bpol map[string]any
		if err := yaml.Unmarshal([]byte(cc.Data["policy.yaml"]), &cpol); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal([]byte(bc.Data["policy.yaml"]), &bpol); err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "default policy", cpol, bpol)
	})

	t.Run("pull-secrets component", func(t *testing.T) {
		chart := helmTemplate(t, "--set", "pullSecrets.enabled=true")
		base := kustomizeBuild(t, filepath.Join(deployDir(t), "overlays", "image-pull-secrets"))
		var cr, br rbacv1.ClusterRole
		chart.get(t, "ClusterRole/trustgate-image-pull-secrets", &cr)
		base.get(t, "ClusterRole/trustgate-image-pull-secrets", &br)
		sameJSON(t, "ClusterRole rules", cr.Rules, br.Rules)
		var cb, bb rbacv1.ClusterRoleBinding
		chart.get(t, "ClusterRoleBinding/trustgate-image-pull-secrets", &cb)
		base.get(t, "ClusterRoleBinding/trustgate-image-pull-secrets", &bb)
		sameJSON(t, "ClusterRoleBinding", []any{cb.RoleRef, cb.Subjects}, []any{bb.RoleRef, bb.Subjects})
		var cd, bd appsv1.Deployment
		chart.get(t, "Deployment/trustgate", &cd)
		base.get(t, "Deployment/trustgate", &bd)
		cp, bp := cd.Spec.Template.Spec, bd.Spec.Template.Spec
		sameJSON(t, "args", cp.Containers[0].Args, bp.Containers[0].Args)
		sameJSON(t, "automountServiceAccountToken", cp.AutomountServiceAccountToken, bp.AutomountServiceAccountToken)
		var ca, ba corev1.ServiceAccount
		chart.get(t, "ServiceAccount/trustgate", &ca)
		base.get(t, "ServiceAccount/trustgate", &ba)
		sameJSON(t, "ServiceAccount automountServiceAccountToken", ca.AutomountServiceAccountToken, ba.AutomountServiceAccountToken)
	})
}

// TestHelmValues checks the values that have no kustomize counterpart:
// image by digest (and its refusal when malformed), certificate modes,
// replicas, PDB, and that a release elsewhere exempts its own namespace.
func TestHelmValues(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	t.Run("image by digest", func(t *testing.T) {
		objs := helmTemplate(t, "--set", "image.repository=registry.example/tg", "--set", "image.digest="+digest, "--set", "image.tag=ignored")
		var d appsv1.Deployment
		objs.get(t, "Deployment/trustgate", &d)
		if got := d.Spec.Template.Spec.Containers[0].Image; got != "registry.example/tg@"+digest {
			t.Errorf("image = %q, want registry.example/tg@%s", got, digest)
		}
	})
	for _, bad := range []struct{ name, want string }{
		{"image.digest=sha256:abc", "64 lower-case hex"},
		{"certificates.mode=vault", "want generate, certManager or secret"},
		{"certificates.mode=secret", "existingSecret is required"},
	} {
		t.Run("refuses "+bad.name, func(t *testing.T) {
			_, err := runHelm(t, "", "template", "x", chartDir(t), "--set", bad.name)
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("helm template --set %s: err = %v, want one containing %q", bad.name, err, bad.want)
			}
		})
	}
	t.Run("policy file as it is", func(t *testing.T) {
		pol := filepath.Join(t.TempDir(), "policy.yaml")
		text := "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\nmode: enforce\nunmatched: allow\n"
		if err := os.WriteFile(pol, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		objs := helmTemplate(t, "--set-file", "policy="+pol)
		var cm corev1.ConfigMap
		objs.get(t, "ConfigMap/trustgate-policy", &cm)
		if cm.Data["policy.yaml"] != text {
			t.Errorf("policy.yaml = %q, want the file %q", cm.Data["policy.yaml"], text)
		}
	})
	t.Run("existing secret", func(t *testing.T) {
		ca := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
		objs := helmTemplate(t, "--set", "certificates.mode=secret", "--set", "certificates.existingSecret=my-tls", "--set", "certificates.caBundle="+ca)
		if _, ok := objs["Secret/trustgate-tls"]; ok {
			t.Error("mode secret rendered a Secret")
		}
		var d appsv1.Deployment
		objs.get(t, "Deployment/trustgate", &d)
		if s := d.Spec.Template.Spec.Volumes[1].Secret; s == nil || s.SecretName != "my-tls" {
			t.Errorf("tls volume = %+v, want Secret my-tls", d.Spec.Template.Spec.Volumes[1])
		}
		var v admissionregistrationv1.ValidatingWebhookConfiguration
		objs.get(t, "ValidatingWebhookConfiguration/trustgate", &v)
		if string(v.Webhooks[0].ClientConfig.CABundle) != ca {
			t.Errorf("caBundle = %q, want the given PEM", v.Webhooks[0].ClientConfig.CABundle)
		}
	})
	t.Run("cert-manager", func(t *testing.T) {
		objs := helmTemplate(t, "--set", "certificates.mode=certManager")
		for _, k := range []string{"Issuer/trustgate-selfsigned", "Certificate/trustgate-ca", "Issuer/trustgate-ca", "Certificate/trustgate-serving"} {
			if _, ok := objs[k]; !ok {
				t.Errorf("no %s", k)
			}
		}
		if _, ok := objs["Secret/trustgate-tls"]; ok {
			t.Error("mode certManager rendered a Secret")
		}
		var m admissionregistrationv1.MutatingWebhookConfiguration
		objs.get(t, "MutatingWebhookConfiguration/trustgate", &m)
		if m.Annotations["cert-manager.io/inject-ca-from"] != "trustgate/trustgate-ca" || len(m.Webhooks[0].ClientConfig.CABundle) != 0 {
			t.Errorf("annotations %v caBundle %d bytes; want inject-ca-from trustgate/trustgate-ca and no caBundle", m.Annotations, len(m.Webhooks[0].ClientConfig.CABundle))
		}
	})
	t.Run("replicas, no PDB, other namespace", func(t *testing.T) {
		out, err := runHelm(t, "", "template", "tg", chartDir(t), "--namespace", "security",
			"--set", "replicaCount=3", "--set", "podDisruptionBudget.enabled=false")
		if err != nil {
			t.Fatal(err)
		}
		objs := parseObjects(t, []byte(out))
		if _, ok := objs["PodDisruptionBudget/tg-trustgate"]; ok {
			t.Error("PDB rendered although disabled")
		}
		var d appsv1.Deployment
		objs.get(t, "Deployment/tg-trustgate", &d)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
		}
		var v admissionregistrationv1.ValidatingWebhookConfiguration
		objs.get(t, "ValidatingWebhookConfiguration/tg-trustgate", &v)
		sel := v.Webhooks[0].NamespaceSelector.MatchExpressions[0]
		if sel.Operator != metav1.LabelSelectorOpNotIn || strings.Join(sel.Values, ",") != "security,kube-system" {
			t.Errorf("namespaceSelector %+v, want NotIn security,kube-system", sel)
		}
		if svc := v.Webhooks[0].ClientConfig.Service; svc == nil || svc.Name != "tg-trustgate" || svc.Namespace != "security" {
			t.Errorf("clientConfig.service = %+v, want tg-trustgate in security", svc)
		}
		var cm corev1.ConfigMap
		objs.get(t, "ConfigMap/tg-trustgate-policy", &cm)
		if !strings.Contains(cm.Data["policy.yaml"], "- security") {
			t.Errorf("policy does not exempt the release namespace:\n%s", cm.Data["policy.yaml"])
		}
	})
}

// TestHelmInstallUpgradeUninstall runs helm against the real kube-apiserver.
// The chart's webhooks are limited (extraNamespaceSelectorExpressions) to
// one namespace of this test, where nothing serves them: creating a pod there
// must fail (failurePolicy Fail) while the release is installed, and work
// after uninstall. Upgrade keeps the generated CA (lookup) and applies new
// values.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	c := requireCluster(t)
	helmBin(t)
	// Not "trustgate": cluster-scoped names must not meet deploy/base's, which
	// other tests apply with --dry-run=server.
	const release, relNS, full = "e2e-helm", "helm-release", "e2e-helm-trustgate"
	// Both namespaces carry an instance label no trustgate instance of this
	// suite registers, so the shared "main" instance leaves them alone.
	newNamespace(t, c, relNS, "helm")
	judged := newNamespace(t, c, "helm-judged", "helm")
	if _, _, err := c.Kubectl("label", "namespace", judged, "e2e.trustgate.dev/helm-judged=true"); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
image:
  digest: sha256:`+strings.Repeat("0", 64)+`
webhook:
  extraNamespaceSelectorExpressions:
  - {key: e2e.trustgate.dev/helm-judged, operator: In, values: ["true"]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	helm := func(args ...string) string {
		t.Helper()
		out, err := runHelm(t, c.Kubeconfig, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_, _ = runHelm(t, c.Kubeconfig, "uninstall", release, "-n", relNS)
		}
	})
	helm("install", release, chartDir(t), "-n", relNS, "-f", values)

	secretCA := func() string {
		t.Helper()
		out, _, err := c.Kubectl("-n", relNS, "get", "secret", full+"-tls", "-o", "jsonpath={.data.ca\\.crt}")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	hookCA := func(kind string) string {
		t.Helper()
		out, _, err := c.Kubectl("get", kind, full, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ca := secretCA()
	if pem, err := base64.StdEncoding.DecodeString(ca); err != nil || !strings.Contains(string(pem), "BEGIN CERTIFICATE") {
		t.Fatalf("installed Secret's ca.crt is not a PEM certificate (%v)", err)
	}
	for _, k := range []string{"mutatingwebhookconfiguration", "validatingwebhookconfiguration"} {
		if got := hookCA(k); got != ca {
			t.Errorf("%s caBundle is not the Secret's ca.crt after install", k)
		}
	}

	// The registration is live and fails closed: nothing serves it here.
	waitJudged(t, c, judged, "registry.example/app:v1", func(_, stderr string, err error) bool {
		return err != nil && strings.Contains(stderr, "failed calling webhook")
	})
	// The release's own namespace is never judged.
	if _, stderr, err := c.Kubectl("-n", relNS, "run", "probe", "--image=registry.example/app:v1", "--restart=Never", "--dry-run=server"); err != nil {
		t.Errorf("a pod in the release namespace was not admitted: %v %s", err, stderr)
	}

	helm("upgrade", release, chartDir(t), "-n", relNS, "-f", values, "--set", "replicaCount=3", "--set", "policy.mode=enforce")
	if got := secretCA(); got != ca {
		t.Error("upgrade replaced the generated CA (lookup should have reused it)")
	}
	for _, k := range []string{"mutatingwebhookconfiguration", "validatingwebhookconfiguration"} {
		if got := hookCA(k); got != ca {
			t.Errorf("%s caBundle changed on upgrade", k)
		}
	}
	out, _, err := c.Kubectl("-n", relNS, "get", "deployment", full, "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}")
	if err != nil {
		t.Fatal(err)
	}
	if want := "3 ghcr.io/trustgate-dev/trustgate@sha256:" + strings.Repeat("0", 64); out != want {
		t.Errorf("after upgrade: %q, want %q", out, want)
	}
	pol, _, err := c.Kubectl("-n", relNS, "get", "configmap", full+"-policy", "-o", "jsonpath={.data.policy\\.yaml}")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pol, "mode: enforce") {
		t.Errorf("policy after upgrade:\n%s", pol)
	}
	if hist := helm("history", release, "-n", relNS, "-o", "json"); strings.Count(hist, `"revision"`) != 2 {
		t.Errorf("helm history: %s, want 2 revisions", hist)
	}

	helm("uninstall", release, "-n", relNS)
	uninstalled = true
	for _, obj := range []string{"mutatingwebhookconfiguration/" + full, "validatingwebhookconfiguration/" + full, "-n=" + relNS + " deployment/" + full, "-n=" + relNS + " secret/" + full + "-tls"} {
		args := append([]string{"get"}, strings.Fields(obj)...)
		if _, stderr, err := c.Kubectl(args...); err == nil || !strings.Contains(stderr, "NotFound") {
			t.Errorf("%s still exists after uninstall (err %v)", obj, err)
		}
	}
	waitJudged(t, c, judged, "registry.example/app:v1", func(_, _ string, err error) bool { return err == nil })
}
