package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trustgate-dev/trustgate/test/harness/kube"
	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

// instanceLabel assigns a namespace to a trustgate instance other than
// "main". The main instance judges namespaces without it, so the manifests'
// own namespaceSelector is what keeps kube-system and trustgate out of its way.
const instanceLabel = "e2e.trustgate.dev/instance"

// instance is one trustgate process with its own certificates and webhook
// registrations.
type instance struct {
	Name       string
	Addr       string // 127.0.0.1:PORT
	CAPEM      []byte
	dir        string
	bin        string
	policyFile string
	certFile   string
	keyFile    string
	// serveArgs are extra flags of `trustgate serve` (--pull-secrets ...).
	serveArgs []string

	proc *proc.Process
}

// newInstance writes policy, makes certificates with `trustgate certs` and
// starts `trustgate serve` on a free loopback port. It does not register
// webhooks (see register).
func newInstance(bin, dir, name, policy string, serveArgs ...string) (*instance, error) {
	in := &instance{Name: name, dir: dir, bin: bin, serveArgs: serveArgs}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("instance %s: %w", name, err)
	}
	in.policyFile = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(in.policyFile, []byte(policy), 0o644); err != nil {
		return nil, fmt.Errorf("instance %s: write policy: %w", name, err)
	}
	certDir := filepath.Join(dir, "certs")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "certs",
		"--service", "trustgate-"+name, "--namespace", "trustgate",
		"--out", certDir, "--ip", "127.0.0.1").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("instance %s: trustgate certs: %w\n%s", name, err, out)
	}
	in.certFile = filepath.Join(certDir, "tls.crt")
	in.keyFile = filepath.Join(certDir, "tls.key")
	if in.CAPEM, err = os.ReadFile(filepath.Join(certDir, "ca.crt")); err != nil {
		return nil, fmt.Errorf("instance %s: trustgate certs wrote no CA: %w", name, err)
	}
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	in.Addr = "127.0.0.1:" + strconv.Itoa(port)
	if err := in.Start(); err != nil {
		return nil, err
	}
	return in, nil
}

// stopGrace is how long trustgate gets to shut down after SIGTERM.
const stopGrace = 10 * time.Second

// Start runs `trustgate serve` and waits for /readyz.
func (in *instance) Start() error {
	if in.proc == nil {
		args := append([]string{"serve",
			"--policy", in.policyFile,
			"--addr", in.Addr,
			"--tls-cert", in.certFile,
			"--tls-key", in.keyFile}, in.serveArgs...)
		in.proc = proc.New(proc.Spec{
			Name:    "trustgate " + in.Name,
			Path:    in.bin,
			Args:    args,
			LogFile: filepath.Join(in.dir, "trustgate.log"),
		})
	}
	if err := in.proc.Start(); err != nil {
		return fmt.Errorf("instance %s: %w", in.Name, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(in.CAPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := in.proc.WaitReady(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		return proc.CheckHTTP(ctx, client, "https://"+in.Addr+"/readyz", nil)
	})
	if err != nil {
		// Not ready in time: do not leave it running behind a failed setup.
		_ = in.proc.Stop(0)
		return fmt.Errorf("instance %s: %w", in.Name, err)
	}
	return nil
}

// Stop sends SIGTERM and kills the process if it has not exited in 10s.
func (in *instance) Stop() {
	if in.proc == nil {
		return
	}
	if err := in.proc.Stop(stopGrace); err != nil {
		// Nothing a test can do; the next Start reports a port still held.
		fmt.Fprintf(os.Stderr, "instance %s: %v\n", in.Name, err)
	}
}

// Running reports whether the trustgate process is up.
func (in *instance) Running() bool { return in.proc != nil && in.proc.Running() }

// LogTail is the end of trustgate's log (this run's), for failure messages.
func (in *instance) LogTail() string {
	if in.proc == nil {
		return "(not started)"
	}
	return in.proc.LogTail(3000)
}

// register applies the webhook configurations of deploy/base/webhooks.yaml
// for this instance (see webhookConfigs), limited to the namespaces that
// selector also matches. Callers wait with waitJudged before relying on them.
func (in *instance) register(c *kube.Cluster, selector metav1.LabelSelectorRequirement, hooks hookSet) error {
	docs, err := webhookConfigs(in, selector, hooks)
	if err != nil {
		return err
	}
	if _, _, err := c.KubectlInput(context.Background(), bytes.NewReader(docs), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("register webhooks of %s: %w", in.Name, err)
	}
	return nil
}

// unregister removes the instance's webhook configurations.
func (in *instance) unregister(c *kube.Cluster) error {
	_, _, err := c.Kubectl("delete", "--ignore-not-found",
		"mutatingwebhookconfiguration/trustgate-e2e-"+in.Name,
		"validatingwebhookconfiguration/trustgate-e2e-"+in.Name)
	return err
}

// waitJudged polls a server-side dry run until judged accepts kubectl's
// result. The API server picks up new webhook configurations asynchronously,
// so the first requests after registration may not be sent to trustgate yet.
func waitJudged(t *testing.T, c *kube.Cluster, ns, img string, judged func(stdout, stderr string, err error) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var stdout, stderr string
	var err error
	for time.Now().Before(deadline) {
		stdout, stderr, err = c.Kubectl("-n", ns, "run", "probe", "--image="+img, "--restart=Never", "--dry-run=server", "-o", "name")
		if judged(stdout, stderr, err) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("admission in %s not as expected after 30s (webhook registrations and namespace labels reach the API server asynchronously): last dry run of %s: stdout %q stderr %q err %v", ns, img, stdout, stderr, err)
}

func deniedResult(_, stderr string, err error) bool {
	return err != nil && strings.Contains(stderr, "denied the request")
}

func warnedResult(_, stderr string, err error) bool {
	return err == nil && strings.Contains(stderr, "Warning:")
}

// newNamespace creates a namespace (and its default ServiceAccount) for one
// test, labelled for instance (empty: the main instance), deleted at cleanup.
func newNamespace(t *testing.T, c *kube.Cluster, name, instanceName string) string {
	t.Helper()
	if err := c.CreateNamespace(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No controller-manager runs, so the namespace would stay
		// Terminating; do not wait for it.
		_, _, _ = c.Kubectl("delete", "namespace", name, "--wait=false")
	})
	if instanceName != "" {
		if _, _, err := c.Kubectl("label", "namespace", name, instanceLabel+"="+instanceName); err != nil {
			t.Fatal(err)
		}
	}
	return name
}
