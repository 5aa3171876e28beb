// Package kube runs a real Kubernetes API server for end-to-end tests: Debian's
// etcd plus a kube-apiserver built from k8s.io/kubernetes, on free loopback
// ports, with token authentication, RBAC and the default admission plugins
// (so MutatingAdmissionWebhook and ValidatingAdmissionWebhook call real
// webhooks over TLS). There is no controller-manager, scheduler or kubelet:
// objects are stored and admitted, pods stay Pending.
package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

// Options tune a cluster; the zero value is fine.
type Options struct {
	// Progress receives human progress messages (the one-time build of
	// kube-apiserver, startup). Nil discards them; Start sends them to stderr.
	Progress io.Writer
	// RepoRoot is the trustgate checkout holding hack/kube-apiserver.sh;
	// empty means RepoRoot().
	RepoRoot string
	// APIServerBinary skips the build script and uses this binary.
	APIServerBinary string
	// ReadyTimeout bounds the wait for etcd and /readyz; default 90s.
	ReadyTimeout time.Duration
	// ExtraAPIServerArgs are appended to kube-apiserver's flags.
	ExtraAPIServerArgs []string
}

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	// URL is the API server's base URL, https://127.0.0.1:PORT.
	URL string
	// Token is the bearer token of "admin" (group system:masters).
	Token string
	// Kubeconfig is the path of a kubeconfig for URL, the API server's CA and Token.
	Kubeconfig string
	// CAPEM is the PEM bundle that verifies the API server's serving certificate.
	CAPEM []byte
	// Dir is the cluster's temporary folder (data, certs, logs), removed by Stop.
	Dir string

	kubectl   string
	apiserver *proc.Process
	etcd      *proc.Process
	etcdURL   string
	stopOnce  sync.Once
	stopErr   error
}

// Start starts a cluster for a test and stops it in t.Cleanup. When the
// binaries are unavailable it skips the test, unless the CI environment
// variable is set, in which case it fails it.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Progress == nil {
		opts.Progress = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultBuildTimeout+2*time.Minute)
	defer cancel()
	c, err := New(ctx, opts)
	if err != nil {
		SkipOrFail(t, err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-apiserver log tail:\n%s", c.APIServerLogTail(4000))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	return c
}

// SkipOrFail ends the test for err: a skip when err wraps ErrUnavailable and
// CI is empty, a failure otherwise.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrUnavailable) && os.Getenv("CI") == "" {
		t.Skipf("no cluster on this machine (set CI to make this a failure): %v", err)
	}
	t.Fatalf("start cluster: %v", err)
}

// New starts etcd and kube-apiserver and waits until the API server is ready.
// The caller must call Stop. Errors wrap ErrUnavailable when binaries are
// missing or cannot be built.
func New(ctx context.Context, opts Options) (_ *Cluster, err error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	etcdBin, err := lookBinary("etcd", "/usr/bin/etcd")
	if err != nil {
		return nil, err
	}
	kubectl, err := lookBinary("kubectl", "/usr/bin/kubectl")
	if err != nil {
		return nil, err
	}
	apiBin := opts.APIServerBinary
	if apiBin == "" {
		root := opts.RepoRoot
		if root == "" {
			if root, err = RepoRoot(); err != nil {
				return nil, err
			}
		}
		if apiBin, err = APIServerBinary(ctx, root, progress); err != nil {
			return nil, err
		}
	}

	dir, err := os.MkdirTemp("", "trustgate-kube-")
	if err != nil {
		return nil, fmt.Errorf("create cluster folder: %w", err)
	}
	c := &Cluster{Dir: dir, kubectl: kubectl}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()

	// A free port can be taken by someone else between our probe and etcd's
	// bind; a few attempts with fresh ports make that race harmless.
	for attempt := 1; ; attempt++ {
		err = c.startEtcd(ctx, etcdBin, opts.ReadyTimeout)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "kube: etcd did not start (%v); retrying on other ports\n", err)
	}
	for attempt := 1; ; attempt++ {
		err = c.startAPIServer(ctx, apiBin, opts)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "kube: kube-apiserver did not start (%v); retrying on another port\n", err)
	}
	return c, nil
}

func (c *Cluster) startEtcd(ctx context.Context, bin string, timeout time.Duration) error {
	ports, err := proc.FreePorts(2)
	if err != nil {
		return err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	data := filepath.Join(c.Dir, "etcd-data")
	_ = os.RemoveAll(data)
	p, err := proc.Start(proc.Spec{Name: "etcd", Path: bin, LogFile: filepath.Join(c.Dir, "etcd.log"), Args: []string{
		"--name=trustgate",
		"--data-dir=" + data,
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=trustgate=" + peer,
		"--log-level=warn",
	}})
	if err != nil {
		return err
	}
	c.etcd, c.etcdURL = p, client
	httpc := &http.Client{Timeout: 2 * time.Second}
	err = waitReady(ctx, timeout, p, func(ctx context.Context) error {
		return proc.CheckHTTP(ctx, httpc, client+"/health", nil)
	})
	if err != nil {
		_ = p.Stop(stopGrace)
		c.etcd = nil
		return fmt.Errorf("etcd not healthy: %w", err)
	}
	return nil
}

func (c *Cluster) startAPIServer(ctx context.Context, bin string, opts Options) error {
	if c.Token == "" {
		if err := c.writeCredentials(); err != nil {
			return err
		}
	}
	port, err := proc.FreePort()
	if err != nil {
		return err
	}
	certDir := filepath.Join(c.Dir, "certs")
	_ = os.RemoveAll(certDir)
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		// Everything stays on loopback; the kubernetes Service endpoint cannot
		// point at loopback, and nothing here routes to it anyway.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(c.Dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(c.Dir, "sa.key"),
		"--token-auth-file=" + filepath.Join(c.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--profiling=false",
	}
	args = append(args, opts.ExtraAPIServerArgs...)
	p, err := proc.Start(proc.Spec{Name: "kube-apiserver", Path: bin, Args: args, LogFile: filepath.Join(c.Dir, "kube-apiserver.log")})
	if err != nil {
		return err
	}
	c.apiserver = p
	c.URL = "https://127.0.0.1:" + strconv.Itoa(port)

	// The serving certificate appears in cert-dir once the server has
	// generated it; until then, and until /readyz says ok, keep polling.
	certFile := filepath.Join(certDir, "apiserver.crt")
	auth := http.Header{"Authorization": {"Bearer " + c.Token}}
	err = waitReady(ctx, opts.ReadyTimeout, p, func(ctx context.Context) error {
		pemBytes, err := os.ReadFile(certFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("no certificate in %s yet", certFile)
		}
		httpc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}}
		defer httpc.CloseIdleConnections()
		if err := proc.CheckHTTP(ctx, httpc, c.URL+"/readyz", auth); err != nil {
			return err
		}
		c.CAPEM = pemBytes
		return nil
	})
	if err != nil {
		_ = p.Stop(stopGrace)
		c.apiserver = nil
		return fmt.Errorf("kube-apiserver not ready: %w", err)
	}
	return c.writeKubeconfig()
}

// writeCredentials creates the admin token and the service-account signing key.
func (c *Cluster) writeCredentials() error {
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("generate token: %w", err)
	}
	c.Token = hex.EncodeToString(tok)
	line := fmt.Sprintf("%s,admin,admin,\"system:masters\"\n", c.Token)
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(line), 0o600); err != nil {
		return fmt.Errorf("write tokens.csv: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode service-account key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(c.Dir, "sa.key"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("write sa.key: %w", err)
	}
	return nil
}

// KubeconfigYAML renders a kubeconfig for the cluster's admin.
func (c *Cluster) KubeconfigYAML() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `apiVersion: v1
kind: Config
clusters:
- name: trustgate-e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: trustgate-e2e
  context:
    cluster: trustgate-e2e
    user: admin
    namespace: default
current-context: trustgate-e2e
`, c.URL, base64Std(c.CAPEM), c.Token)
	return b.Bytes()
}

func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, c.KubeconfigYAML(), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// KubectlTimeout bounds one kubectl run.
const KubectlTimeout = 90 * time.Second

// Kubectl runs kubectl against the cluster and returns its output. A non-zero
// exit is an error; stdout and stderr are returned either way so tests can
// check kubectl's messages (webhook denials, warnings).
func (c *Cluster) Kubectl(args ...string) (stdout, stderr string, err error) {
	return c.KubectlInput(context.Background(), nil, args...)
}

// KubectlInput is Kubectl with a context and standard input (for `apply -f -`).
func (c *Cluster) KubectlInput(ctx context.Context, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, KubectlTimeout)
	defer cancel()
	full := append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, c.kubectl, full...)
	// Only our kubeconfig; never the user's.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig, "HOME="+c.Dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, stdin
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), errb.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), errb.String(), nil
}

// CreateNamespace creates ns and its "default" ServiceAccount, which the
// ServiceAccount admission plugin needs before any pod can be created (there
// is no controller-manager to create it).
func (c *Cluster) CreateNamespace(ns string) error {
	if _, _, err := c.Kubectl("create", "namespace", ns); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	if _, _, err := c.Kubectl("-n", ns, "create", "serviceaccount", "default"); err != nil {
		return fmt.Errorf("create default service account in %s: %w", ns, err)
	}
	return nil
}

// APIServerLogTail returns the last n bytes of kube-apiserver's log.
func (c *Cluster) APIServerLogTail(n int) string {
	if c.apiserver == nil {
		return ""
	}
	return c.apiserver.LogTail(n)
}

// Stop terminates kube-apiserver, then etcd (the API server can hang on
// shutdown when etcd is already gone), and removes the cluster's folder. It
// is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		if c.apiserver != nil {
			if err := c.apiserver.Stop(stopGrace); err != nil {
				errs = append(errs, fmt.Errorf("stop kube-apiserver: %w", err))
			}
		}
		if c.etcd != nil {
			if err := c.etcd.Stop(stopGrace); err != nil {
				errs = append(errs, fmt.Errorf("stop etcd: %w", err))
			}
		}
		if c.Dir != "" {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// stopGrace is how long etcd and kube-apiserver get between SIGTERM and
// SIGKILL.
const stopGrace = 5 * time.Second

// waitReady polls check every 250ms until it succeeds, the process exits, or
// timeout passes.
func waitReady(ctx context.Context, timeout time.Duration, p *proc.Process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return p.WaitReady(ctx, 250*time.Millisecond, check)
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
