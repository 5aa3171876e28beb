package admission

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/certs"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/server"
	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

// TestAgainstKubeAPIServer registers both webhooks with a real API server and
// drives it with kubectl: the wire format, the patches and the messages must
// be what Kubernetes accepts and shows, not only what our own tests expect.
// Skipped when the cluster binaries are missing, unless CI is set.
func TestAgainstKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	// An audit log shows whether the API server accepted our audit
	// annotations (it drops keys that are not qualified names, with only a
	// warning in its own log).
	auditDir := t.TempDir()
	auditPolicy := filepath.Join(auditDir, "policy.yaml")
	auditLog := filepath.Join(auditDir, "audit.log")
	if err := os.WriteFile(auditPolicy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := kube.Start(t, kube.Options{ExtraAPIServerArgs: []string{
		// The reconciler refuses a loopback advertise address; nothing here needs it.
		"--endpoint-reconciler-type=none",
		"--audit-policy-file=" + auditPolicy, "--audit-log-path=" + auditLog,
	}})

	eng := &fakeEngine{}
	validate := newValidating(t, eng)
	mutate := newMutating(t, eng)
	caPEM, cert, err := certs.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{
		Addr:           "127.0.0.1:0",
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		Validate:       validate,
		Mutate:         mutate,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := c.CreateNamespace("e2e"); err != nil {
		t.Fatal(err)
	}
	base := "https://" + srv.Addr().String()
	apply(t, c, webhookConfigs(base, base64.StdEncoding.EncodeToString(caPEM)))

	// Webhook configurations reach the admission chain asynchronously: wait
	// until a bad image is refused.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, stderr, err := c.Kubectl("-n", "e2e", "run", "probe", "--image=registry.example/bad:0", "--restart=Never")
		if err != nil && strings.Contains(stderr, "trustgate denied") {
			break
		}
		if err == nil {
			_, _, _ = c.Kubectl("-n", "e2e", "delete", "pod", "probe", "--wait=false")
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks never took effect; last stderr: %s", stderr)
		}
		time.Sleep(300 * time.Millisecond)
	}

	digest := "@" + testDigest
	t.Run("denied pod shows the reason", func(t *testing.T) {
		_, stderr, err := c.Kubectl("-n", "e2e", "run", "bad", "--image=registry.example/bad:1", "--restart=Never")
		want := `admission webhook "mutate.trustgate.dev" denied the request: trustgate denied 1 image(s): "registry.example/bad:1" (rule public): no valid signature for tag`
		if err == nil || !strings.Contains(stderr, want) {
			t.Fatalf("err %v, stderr %q; want it to contain %q", err, stderr, want)
		}
	})
	t.Run("pod pinned by the real API server", func(t *testing.T) {
		if _, _, err := c.Kubectl("-n", "e2e", "run", "good", "--image=registry.example/app:1", "--restart=Never"); err != nil {
			t.Fatal(err)
		}
		out := get(t, c, "pod", "good", `{.spec.containers[0].image} {.metadata.annotations.trustgate\.dev/original-images}`)
		want := `registry.example/app:1` + digest + ` {"/spec/containers/0/image":"registry.example/app:1"}`
		if out != want {
			t.Errorf("pod = %q, want %q", out, want)
		}
	})
	t.Run("audit annotations recorded", func(t *testing.T) {
		// /mutate runs first, so /validate judges the pinned reference.
		want := `"validate.trustgate.dev/image-0":"decision=allow rule=ours image=registry.example/app:1@` + testDigest + ` digest=` + testDigest + `"`
		var data []byte
		for i := 0; i < 50; i++ { // the audit backend writes asynchronously
			data, _ = os.ReadFile(auditLog)
			if strings.Contains(string(data), want) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("audit log (%d bytes) lacks %s", len(data), want)
	})
	t.Run("server-side dry run pins too and stores nothing", func(t *testing.T) {
		out, _, err := c.Kubectl("-n", "e2e", "run", "dry", "--image=registry.example/app:2", "--restart=Never", "--dry-run=server", "-o", "jsonpath={.spec.containers[0].image}")
		if err != nil || out != "registry.example/app:2"+digest {
			t.Errorf("dry-run image = %q, %v", out, err)
		}
		if _, _, err := c.Kubectl("-n", "e2e", "get", "pod", "dry"); err == nil {
			t.Error("dry-run pod was stored")
		}
	})
	workloads := map[string]string{
		"deployment":  `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"e2e"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"initContainers":[{"name":"init","image":"registry.example/init:1"}],"containers":[{"name":"app","image":"registry.example/app:1"}]}}}}`,
		"cronjob":     `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"nightly","namespace":"e2e"},"spec":{"schedule":"0 3 * * *","jobTemplate":{"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"job","image":"registry.example/job:1"}]}}}}}}`,
		"statefulset": `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","namespace":"e2e"},"spec":{"serviceName":"db","selector":{"matchLabels":{"app":"db"}},"template":{"metadata":{"labels":{"app":"db"}},"spec":{"containers":[{"name":"db","image":"registry.example/db:1"}]}}}}`,
	}
	t.Run("workload templates pinned", func(t *testing.T) {
		for name, manifest := range workloads {
			if _, _, err := c.KubectlInput(context.Background(), strings.NewReader(manifest), "apply", "-f", "-"); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		checks := []struct{ kind, name, jsonpath, want string }{
			{"deployment", "web", `{.spec.template.spec.containers[0].image} {.spec.template.spec.initContainers[0].image}`, "registry.example/app:1" + digest + " registry.example/init:1" + digest},
			{"cronjob", "nightly", `{.spec.jobTemplate.spec.template.spec.containers[0].image}`, "registry.example/job:1" + digest},
			{"statefulset", "db", `{.spec.template.spec.containers[0].image}`, "registry.example/db:1" + digest},
		}
		for _, ch := range checks {
			if out := get(t, c, ch.kind, ch.name, ch.jsonpath); out != ch.want {
				t.Errorf("%s/%s = %q, want %q", ch.kind, ch.name, out, ch.want)
			}
		}
		var originals map[string]string
		if err := json.Unmarshal([]byte(get(t, c, "deployment", "web", `{.metadata.annotations.trustgate\.dev/original-images}`)), &originals); err != nil {
			t.Fatalf("deployment original-images annotation: %v", err)
		}
		if originals["/spec/template/spec/initContainers/0/image"] != "registry.example/init:1" {
			t.Errorf("original-images = %v", originals)
		}
	})
	t.Run("update without image change is not judged", func(t *testing.T) {
		before := len(eng.requests())
		if _, _, err := c.Kubectl("-n", "e2e", "label", "deployment", "web", "tier=front"); err != nil {
			t.Fatal(err)
		}
		if after := len(eng.requests()); after != before {
			t.Errorf("engine called %d times for a label change, want 0", after-before)
		}
	})
	t.Run("ephemeral container added by kubectl debug is judged and pinned", func(t *testing.T) {
		_, stderr, err := c.Kubectl("-n", "e2e", "debug", "good", "--image=registry.example/bad-debug:1", "--container=dbg")
		if err == nil || !strings.Contains(stderr, `"registry.example/bad-debug:1"`) {
			t.Fatalf("debug with a bad image: err %v, stderr %q; want a denial", err, stderr)
		}
		if _, _, err := c.Kubectl("-n", "e2e", "debug", "good", "--image=registry.example/debug:1", "--container=dbg2"); err != nil {
			t.Fatal(err)
		}
		if out := get(t, c, "pod", "good", `{.spec.ephemeralContainers[0].image}`); out != "registry.example/debug:1"+digest {
			t.Errorf("ephemeral container image = %q, want pinned", out)
		}
	})
	t.Run("warn mode admits with a kubectl warning", func(t *testing.T) {
		eng.setMode(policy.Warn)
		defer eng.setMode(policy.Enforce)
		_, stderr, err := c.Kubectl("-n", "e2e", "run", "warned", "--image=registry.example/bad:2", "--restart=Never")
		want := `Warning: trustgate would deny "registry.example/bad:2" (rule public): no valid signature for tag`
		if err != nil || !strings.Contains(stderr, want) {
			t.Errorf("err %v, stderr %q; want success with %q", err, stderr, want)
		}
	})
}

func get(t *testing.T, c *kube.Cluster, kind, name, jsonpath string) string {
	t.Helper()
	out, _, err := c.Kubectl("-n", "e2e", "get", kind, name, "-o", "jsonpath="+jsonpath)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func apply(t *testing.T, c *kube.Cluster, manifest string) {
	t.Helper()
	if _, _, err := c.KubectlInput(context.Background(), strings.NewReader(manifest), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// webhookConfigs registers /mutate and /validate for the judged kinds in
// namespace e2e only.
func webhookConfigs(base, caBundle string) string {
	rules := `[
    {"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["pods","pods/ephemeralcontainers","replicationcontrollers"]},
    {"apiGroups":["apps"],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["deployments","replicasets","statefulsets","daemonsets"]},
    {"apiGroups":["batch"],"apiVersions":["v1"],"operations":["CREATE","UPDATE"],"resources":["jobs","cronjobs"]}]`
	hook := func(name, path string) string {
		return fmt.Sprintf(`{"name":%q,"clientConfig":{"url":%q,"caBundle":%q},"rules":%s,
  "namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"e2e"}},
  "admissionReviewVersions":["v1"],"sideEffects":"None","failurePolicy":"Fail","timeoutSeconds":10}`, name, base+path, caBundle, rules)
	}
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"List","items":[
{"apiVersion":"admissionregistration.k8s.io/v1","kind":"MutatingWebhookConfiguration","metadata":{"name":"trustgate"},"webhooks":[%s]},
{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration","metadata":{"name":"trustgate"},"webhooks":[%s]}
]}`, hook("mutate.trustgate.dev", "/mutate"), hook("validate.trustgate.dev", "/validate"))
}
