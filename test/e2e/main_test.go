// Package e2e runs trustgate as a process behind a real kube-apiserver (see
// test/harness/kube), with a real notary-server and registry (see
// test/harness/dct), and drives it with kubectl the way a user would. The
// webhook registrations are derived from deploy/base, so the manifests are
// what is tested.
//
// One cluster, one notary-server and one registry serve the whole package;
// they start on first use and stop in TestMain. The cluster writes an audit
// log (see auditPolicy), in which TestAuditAnnotations finds trustgate's
// audit annotations. Instances of trustgate other
// than the shared "main" one judge only namespaces labelled
// e2e.trustgate.dev/instance=<name>, so tests with their own policy (warn
// mode, trustgate down, ...) do not disturb each other.
//
//	go test ./test/e2e/            # about a minute once kube-apiserver is cached
//
// The first run builds kube-apiserver (hack/kube-apiserver.sh, about 10
// minutes). Missing binaries (etcd, kubectl, notary, docker-registry) skip the
// tests unless CI is set, in which case they fail.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/test/harness/dct"
	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.stop()
	os.Exit(code)
}

// errUnavailable marks setup failures that mean "this machine cannot run the
// suite" (missing binaries, no CLI yet): skipped without CI, failures with it.
var errUnavailable = errors.New("e2e prerequisites unavailable")

// fixture holds what every test shares. Each part starts once; a part that
// failed to start fails (or skips) every test that needs it, with the same error.
type fixture struct {
	clusterOnce sync.Once
	cluster     *kube.Cluster
	clusterErr  error
	// auditLog is the API server's audit log (see auditPolicy).
	auditLog string

	binOnce sync.Once
	bin     string
	binErr  error

	dctOnce  sync.Once
	dct      *dctEnv
	dctErr   error
	dir      string
	dirOnce  sync.Once
	dirErr   error
	stopOnce sync.Once
	stops    []func()
	mu       sync.Mutex
}

var shared fixture

func (f *fixture) tempDir() (string, error) {
	f.dirOnce.Do(func() {
		f.dir, f.dirErr = os.MkdirTemp("", "trustgate-e2e-")
		if f.dirErr == nil {
			f.onStop(func() { os.RemoveAll(f.dir) })
		}
	})
	return f.dir, f.dirErr
}

// onStop registers cleanup that runs after every test, in reverse order.
func (f *fixture) onStop(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, fn)
}

func (f *fixture) stop() {
	f.stopOnce.Do(func() {
		f.mu.Lock()
		stops := f.stops
		f.mu.Unlock()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	})
}

// requireCluster returns the shared API server.
func requireCluster(t *testing.T) *kube.Cluster {
	t.Helper()
	shared.clusterOnce.Do(func() {
		args, err := auditArgs()
		if err != nil {
			shared.clusterErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), kube.DefaultBuildTimeout+2*time.Minute)
		defer cancel()
		shared.cluster, shared.clusterErr = kube.New(ctx, kube.Options{Progress: os.Stderr, ExtraAPIServerArgs: args})
		if shared.clusterErr == nil {
			c := shared.cluster
			shared.onStop(func() {
				if err := c.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "e2e: stop cluster: %v\n", err)
				}
			})
		}
	})
	if shared.clusterErr != nil {
		kube.SkipOrFail(t, shared.clusterErr)
	}
	return shared.cluster
}

// auditPolicy records, at Metadata level (which carries the admission
// webhooks' audit annotations), the writes of the kinds trustgate judges and
// nothing else, so the log stays small.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch]
  resources:
  - group: ""
    resources: [pods, pods/ephemeralcontainers, replicationcontrollers]
  - group: apps
  - group: batch
- level: None
`

// auditArgs writes the audit policy into the suite's temp folder and returns
// the API server flags that log to shared.auditLog.
func auditArgs() ([]string, error) {
	dir, err := shared.tempDir()
	if err != nil {
		return nil, err
	}
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, fmt.Errorf("write audit policy: %w", err)
	}
	shared.auditLog = filepath.Join(dir, "audit.log")
	return []string{"--audit-policy-file=" + policy, "--audit-log-path=" + shared.auditLog}, nil
}

// requireTrustgate returns the path of a freshly built trustgate binary.
func requireTrustgate(t *testing.T) string {
	t.Helper()
	shared.binOnce.Do(func() { shared.bin, shared.binErr = buildTrustgate() })
	if shared.binErr != nil {
		skipOrFail(t, shared.binErr)
	}
	return shared.bin
}

// requireDCT returns the shared notary-server, registry and signed images.
func requireDCT(t *testing.T) *dctEnv {
	t.Helper()
	shared.dctOnce.Do(func() {
		dir, err := shared.tempDir()
		if err != nil {
			shared.dctErr = err
			return
		}
		shared.dct, shared.dctErr = startDCT(filepath.Join(dir, "dct"))
	})
	if shared.dctErr != nil {
		skipOrFail(t, shared.dctErr)
	}
	return shared.dct
}

func skipOrFail(t *testing.T, err error) {
	t.Helper()
	unavailable := errors.Is(err, errUnavailable) || errors.Is(err, dct.ErrMissingBinary) || errors.Is(err, kube.ErrUnavailable)
	if unavailable && os.Getenv("CI") == "" {
		t.Skipf("skipping (set CI to make this a failure): %v", err)
	}
	t.Fatal(err)
}

// buildTrustgate compiles ./cmd/trustgate into the suite's temp folder.
func buildTrustgate() (string, error) {
	root, err := kube.RepoRoot()
	if err != nil {
		return "", err
	}
	if m, _ := filepath.Glob(filepath.Join(root, "cmd", "trustgate", "*.go")); len(m) == 0 {
		return "", fmt.Errorf("%w: cmd/trustgate has no Go files yet", errUnavailable)
	}
	dir, err := shared.tempDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "trustgate")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/trustgate")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/trustgate: %w\n%s", err, out)
	}
	return bin, nil
}
