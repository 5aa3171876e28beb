package kube

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestCluster starts one real cluster and checks what the e2e suite relies
// on: kubectl reaches it as system:masters, namespaces get their default
// ServiceAccount so pods are admitted, RBAC is on, and Stop leaves no process
// or folder behind.
func TestCluster(t *testing.T) {
	c := Start(t, Options{})

	t.Run("kubectl as admin", func(t *testing.T) {
		out, _, err := c.Kubectl("auth", "can-i", "create", "mutatingwebhookconfigurations")
		if err != nil || strings.TrimSpace(out) != "yes" {
			t.Fatalf("kubectl auth can-i = %q, %v; want yes", out, err)
		}
	})
	t.Run("RBAC denies an unknown service account", func(t *testing.T) {
		out, _, err := c.Kubectl("auth", "can-i", "get", "secrets", "--as=system:serviceaccount:default:nobody")
		if strings.TrimSpace(out) != "no" {
			t.Fatalf("kubectl auth can-i --as nobody = %q, %v; want no", out, err)
		}
	})
	t.Run("namespace label used by webhook selectors", func(t *testing.T) {
		if err := c.CreateNamespace("harness"); err != nil {
			t.Fatal(err)
		}
		out, _, err := c.Kubectl("get", "namespace", "harness", "-o", "jsonpath={.metadata.labels.kubernetes\\.io/metadata\\.name}")
		if err != nil || out != "harness" {
			t.Fatalf("namespace label = %q, %v; want harness", out, err)
		}
	})
	t.Run("pod admitted and stays pending", func(t *testing.T) {
		if _, _, err := c.Kubectl("-n", "harness", "run", "p", "--image=registry.example/app:v1", "--restart=Never"); err != nil {
			t.Fatal(err)
		}
		out, _, err := c.Kubectl("-n", "harness", "get", "pod", "p", "-o", "jsonpath={.spec.serviceAccountName} {.status.phase}")
		if err != nil || out != "default Pending" {
			t.Fatalf("pod = %q, %v; want \"default Pending\"", out, err)
		}
	})
	t.Run("pod refused without default service account", func(t *testing.T) {
		if _, _, err := c.Kubectl("create", "namespace", "bare"); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := c.Kubectl("-n", "bare", "run", "p", "--image=registry.example/app:v1", "--restart=Never")
		if err == nil || !strings.Contains(stderr, "serviceaccount") {
			t.Fatalf("pod in namespace without default SA: err %v, stderr %q; want a serviceaccount error", err, stderr)
		}
	})

	pids := []int{c.apiserver.Pid(), c.etcd.Pid()}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range pids {
		// Wait reaped them; signal 0 to a reaped PID fails (ESRCH).
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("cluster folder %s still exists after Stop: %v", c.Dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestSkipOrFail(t *testing.T) {
	tests := []struct {
		name     string
		ci       string
		err      error
		wantSkip bool
	}{
		{"unavailable without CI skips", "", ErrUnavailable, true},
		{"unavailable under CI fails", "true", ErrUnavailable, false},
		{"other error fails", "", errors.New("boom"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			rec := &recordingTB{TB: t}
			done := make(chan struct{})
			go func() {
				// Skip and Fatal end the goroutine with runtime.Goexit.
				defer close(done)
				SkipOrFail(rec, tc.err)
			}()
			<-done
			if rec.skipped != tc.wantSkip || rec.failed == tc.wantSkip {
				t.Errorf("skipped=%v failed=%v; want skipped=%v", rec.skipped, rec.failed, tc.wantSkip)
			}
		})
	}
}

type recordingTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(string, ...any) {
	r.skipped = true
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit()
}
