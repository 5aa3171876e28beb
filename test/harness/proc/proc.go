// Package proc runs the child servers of the test harnesses (notary-server,
// docker-registry, etcd, kube-apiserver, trustgate itself): each in its own
// process group, killed with the test process on Linux, output appended to a
// log file, stopped with SIGTERM and then SIGKILL, restartable with the same
// command line.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// ErrAddrInUse is wrapped by WaitReady when the run's log says its address
// was taken (between FreePort and the child's bind); callers retry on a new
// port.
var ErrAddrInUse = errors.New("address already in use")

// ErrRunning is returned by Start when the process is already running.
var ErrRunning = errors.New("already running")

// killWait bounds the wait for a process after SIGKILL; a process that
// outlives it is stuck in the kernel and reported, not waited for.
const killWait = 5 * time.Second

// checkTimeout bounds one readiness check, so a check that hangs cannot
// outlast the process exiting.
const checkTimeout = 5 * time.Second

// addrInUseScan is how much of the log end WaitReady searches for a port race.
const addrInUseScan = 8192

// Spec describes a command to run.
type Spec struct {
	// Name labels errors and log excerpts; the base of Path when empty.
	Name string
	// Path is the executable.
	Path string
	Args []string
	// Env is appended to the test process's environment.
	Env []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// LogFile receives stdout and stderr, appended across runs; required.
	LogFile string
}

// Process is one child process, started and stopped any number of times.
type Process struct {
	spec Spec

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	// waitErr is cmd.Wait's result, valid once done is closed.
	waitErr error
	// logStart is the log's size when the current run started, so LogTail
	// shows this run's output only.
	logStart int64
}

// New returns a Process for spec without starting it.
func New(spec Spec) *Process {
	if spec.Name == "" {
		spec.Name = baseName(spec.Path)
	}
	return &Process{spec: spec}
}

// Start is New followed by (*Process).Start.
func Start(spec Spec) (*Process, error) {
	p := New(spec)
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

// Name is Spec.Name.
func (p *Process) Name() string { return p.spec.Name }

// LogFile is Spec.LogFile.
func (p *Process) LogFile() string { return p.spec.LogFile }

// Start runs the command. It does not wait for readiness (see WaitReady).
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.runningLocked() {
		return fmt.Errorf("start %s: %w", p.spec.Name, ErrRunning)
	}
	if p.spec.LogFile == "" {
		return fmt.Errorf("start %s: Spec.LogFile is required", p.spec.Name)
	}
	logf, err := os.OpenFile(p.spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: open log: %w", p.spec.Name, err)
	}
	fi, err := logf.Stat()
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s: stat log: %w", p.spec.Name, err)
	}
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.Dir = p.spec.Dir
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.waitErr, p.logStart = cmd, done, nil, fi.Size()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		if p.done == done {
			p.waitErr = err
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Running reports whether the process was started and has not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *Process) runningLocked() bool {
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

// Pid is the current (or last) run's process ID, 0 before the first Start.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Wait blocks until the current run exits or ctx ends and returns the run's
// exit error (nil for a zero exit status).
func (p *Process) Wait(ctx context.Context) error {
	done, err := p.current()
	if err != nil {
		return fmt.Errorf("wait %s: %w", p.spec.Name, err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wait %s: %w", p.spec.Name, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// Stop ends the current run: SIGTERM to the process group, then SIGKILL once
// grace has passed (at once when grace is 0, as a crash would). Stopping a
// process that is not running is a no-op.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pid := cmd.Process.Pid
	if grace > 0 {
		select {
		case <-done:
		default:
			if err := terminate(cmd.Process); err != nil && !closed(done) {
				return fmt.Errorf("stop %s: SIGTERM pid %d: %w", p.spec.Name, pid, err)
			}
			select {
			case <-done:
			case <-time.After(grace):
			}
		}
	}
	// Kill the group even when the leader has exited: children it left
	// behind in its group must not outlive the test.
	if err := kill(cmd.Process); err != nil && !closed(done) {
		return fmt.Errorf("stop %s: SIGKILL pid %d: %w", p.spec.Name, pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("stop %s: pid %d still running %s after SIGKILL", p.spec.Name, pid, killWait)
	}
}

// current returns the done channel of the current (or last) run.
func (p *Process) current() (chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return nil, errors.New("not started")
	}
	return p.done, nil
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// WaitReady calls check every interval until it returns nil, the process
// exits, or ctx ends. Each call gets a context of at most 5s. Errors carry
// the last check error and this run's log tail, and wrap ErrAddrInUse when
// the log reports a port race. WaitReady never stops the process; on error
// the caller decides.
func (p *Process) WaitReady(ctx context.Context, interval time.Duration, check func(context.Context) error) error {
	done, err := p.current()
	if err != nil {
		return fmt.Errorf("wait for %s: %w", p.spec.Name, err)
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		last := check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-done:
			return p.notReady(fmt.Errorf("%s exited before ready (%v), last check: %v", p.spec.Name, p.exitErr(), last))
		case <-ctx.Done():
			return p.notReady(fmt.Errorf("%s not ready: %w, last check: %v", p.spec.Name, ctx.Err(), last))
		case <-time.After(interval):
		}
	}
}

func (p *Process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waitErr == nil {
		return errors.New("exit status 0")
	}
	return p.waitErr
}

// notReady adds the log tail to err and marks port races.
func (p *Process) notReady(err error) error {
	if strings.Contains(p.LogTail(addrInUseScan), "address already in use") {
		err = fmt.Errorf("%w: %w", ErrAddrInUse, err)
	}
	return fmt.Errorf("%w\n%s log (%s):\n%s", err, p.spec.Name, p.spec.LogFile, p.LogTail(4096))
}

// LogTail returns at most the last n bytes the current (or last) run wrote
// to the log, for failure messages.
func (p *Process) LogTail(n int) string {
	p.mu.Lock()
	start := p.logStart
	p.mu.Unlock()
	f, err := os.Open(p.spec.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	// A log truncated behind our back starts over at 0.
	if start > fi.Size() {
		start = 0
	}
	if from := fi.Size() - int64(n); from > start {
		start = from
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(n)))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return strings.TrimSpace(string(b))
}

func baseName(path string) string {
	if i := strings.LastIndexAny(path, `/\`); i >= 0 {
		return path[i+1:]
	}
	return path
}
