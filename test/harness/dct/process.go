package dct

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// process is one child server in its own process group, restartable with
// the same arguments. Its output goes to logFile, appended across restarts.
type process struct {
	name    string
	bin     string
	args    []string
	env     []string
	logFile string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// logStart is the log's size when the current run started, so error
	// messages show this run's output only.
	logStart int64
}

// start launches the process and waits until ready returns nil, the process
// exits, or readyTimeout passes.
func (p *process) start(ready func(context.Context) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("start %s: already running", p.name)
	}
	logf, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", p.name, err)
	}
	if fi, err := logf.Stat(); err == nil {
		p.logStart = fi.Size()
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Stdin = nil
	// A process group of its own lets stop kill any children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var lastErr error
	for {
		if lastErr = ready(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-done:
			p.cmd, p.done = nil, nil
			return fmt.Errorf("start %s: exited before ready: %v\n%s", p.name, lastErr, p.logTail())
		case <-ctx.Done():
			p.killLocked()
			return fmt.Errorf("start %s: not ready after %s: %v\n%s", p.name, readyTimeout, lastErr, p.logTail())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// stop kills the process group and waits for the process to exit. Stopping a
// stopped process is a no-op.
func (p *process) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked()
}

func (p *process) killLocked() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.cmd, p.done = nil, nil
}

// running reports whether the process is started and has not exited.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// logTail returns the end of the log for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logFile)
	if err != nil {
		return ""
	}
	if p.logStart <= int64(len(b)) {
		b = b[p.logStart:]
	}
	const max = 4096
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return p.name + " log (" + p.logFile + "):\n" + strings.TrimSpace(string(b))
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// errAddrInUse marks a start that failed because another process took the
// port between FreePort and the child's bind; callers retry on a new port.
var errAddrInUse = errors.New("address already in use")

// startErr wraps err with errAddrInUse when the run's log says so.
func (p *process) startErr(err error) error {
	if err != nil && strings.Contains(p.logTail(), "address already in use") {
		return fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

// portAttempts is how often a server start is retried on a port race.
const portAttempts = 3
