package dct

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

// ErrMissingBinary is wrapped when a server or CLI binary is not installed.
var ErrMissingBinary = errors.New("binary not installed")

// readyTimeout bounds how long a server may take to answer its health check.
const readyTimeout = 15 * time.Second

// LookBinary finds name on PATH, wrapping ErrMissingBinary when absent.
func LookBinary(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrMissingBinary, name, err)
	}
	return p, nil
}

// RequireBinaries skips the test when one of the binaries is missing and the
// CI variable is empty; under CI a missing binary fails the test instead, so a
// broken CI image cannot silently skip the DCT suite.
func RequireBinaries(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := LookBinary(n); err != nil {
			skipOrFatal(t, err)
		}
	}
}

// skipOrFatal is the one place that decides between Skip and Fatal for
// environment problems.
func skipOrFatal(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrMissingBinary) && os.Getenv("CI") == "" {
		t.Skipf("skipping: %v (install the Debian packages notary and docker-registry)", err)
	}
	t.Fatal(err)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) { return proc.FreePort() }

// startProcess starts spec and waits until ready returns nil; a process that
// exits or is not ready within readyTimeout is killed. Errors wrap
// proc.ErrAddrInUse on a port race, which callers retry on a new port (at
// most portAttempts times).
func startProcess(spec proc.Spec, ready func(context.Context) error) (*proc.Process, error) {
	p, err := proc.Start(spec)
	if err != nil {
		return nil, err
	}
	if err := waitReady(p, ready); err != nil {
		return nil, err
	}
	return p, nil
}

// restartProcess runs a stopped p again with the same command line.
func restartProcess(p *proc.Process, ready func(context.Context) error) error {
	if err := p.Start(); err != nil {
		return err
	}
	return waitReady(p, ready)
}

func waitReady(p *proc.Process, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := p.WaitReady(ctx, 25*time.Millisecond, ready); err != nil {
		_ = p.Stop(0)
		return fmt.Errorf("start %s: %w", p.Name(), err)
	}
	return nil
}

// stopProcess kills p's process group at once, as a crash would; nil is a
// no-op. An error means the kernel did not end it; there is nothing a test
// could do about that, and the next start reports any port it still holds.
func stopProcess(p *proc.Process) {
	if p != nil {
		_ = p.Stop(0)
	}
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// portAttempts is how often a server start is retried on a port race.
const portAttempts = 3
