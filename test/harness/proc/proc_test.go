package proc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sh returns the shell the tests script children with; it is part of every
// Debian image, so its absence is a broken machine, not a skip.
func sh(t *testing.T) string {
	t.Helper()
	const p = "/bin/sh"
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("need %s: %v", p, err)
	}
	return p
}

func startSh(t *testing.T, script string, env ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	p, err := Start(Spec{Name: "script", Path: sh(t), Args: []string{"-c", script}, Env: env, Dir: dir, LogFile: filepath.Join(dir, "script.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(0) })
	return p
}

// waitLog polls until the run's log contains want.
func waitLog(t *testing.T, p *Process, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := p.WaitReady(ctx, 10*time.Millisecond, func(context.Context) error {
		if !strings.Contains(p.LogTail(4096), want) {
			return errors.New("not in log yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for %q: %v", want, err)
	}
}

func TestStartPassesEnvDirAndLogs(t *testing.T) {
	p := startSh(t, `echo "foo=$FOO"; echo "dir=$(pwd)"; echo err >&2; sleep 30`, "FOO=bar")
	waitLog(t, p, "err")
	got := p.LogTail(4096)
	for _, want := range []string{"foo=bar", "dir=" + p.spec.Dir, "err"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %q", got, want)
		}
	}
	if !p.Running() {
		t.Error("Running() = false for a sleeping process")
	}
	if p.Name() != "script" || p.Pid() == 0 {
		t.Errorf("Name() = %q, Pid() = %d", p.Name(), p.Pid())
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		spec Spec
	}{
		{"no log file", Spec{Path: sh(t), Args: []string{"-c", "true"}}},
		{"missing binary", Spec{Path: filepath.Join(dir, "nope"), LogFile: filepath.Join(dir, "l")}},
		{"log in missing folder", Spec{Path: sh(t), LogFile: filepath.Join(dir, "no", "l")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := Start(tt.spec); err == nil {
				_ = p.Stop(0)
				t.Fatal("Start succeeded")
			}
		})
	}
}

func TestNotStarted(t *testing.T) {
	dir := t.TempDir()
	p := New(Spec{Path: sh(t), LogFile: filepath.Join(dir, "log")})
	if p.Name() != "sh" {
		t.Errorf("Name() = %q, want the base of Path", p.Name())
	}
	if p.Running() || p.Pid() != 0 {
		t.Errorf("Running() = %v, Pid() = %d before Start", p.Running(), p.Pid())
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
	if err := p.Wait(context.Background()); err == nil {
		t.Error("Wait before Start succeeded")
	}
	err := p.WaitReady(context.Background(), time.Millisecond, func(context.Context) error { return nil })
	if err == nil {
		t.Error("WaitReady before Start succeeded")
	}
}

func TestStartWhileRunning(t *testing.T) {
	p := startSh(t, "sleep 30")
	if err := p.Start(); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Start: %v, want ErrRunning", err)
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name  string
		ready string // printed once the TERM trap is in place
		// script must print ready once its TERM handling is set up.
		script  string
		grace   time.Duration
		minTime time.Duration // Stop must take at least this long
		maxTime time.Duration
	}{
		{"SIGTERM ends it", "up", `trap 'echo got-term; exit 0' TERM; echo up; while :; do sleep 0.05; done`, 5 * time.Second, 0, 3 * time.Second},
		{"SIGKILL after grace", "up", `trap 'echo ignored-term' TERM; echo up; while :; do sleep 0.05; done`, 300 * time.Millisecond, 300 * time.Millisecond, 4 * time.Second},
		{"zero grace kills at once", "up", `trap 'echo got-term; exit 0' TERM; echo up; while :; do sleep 0.05; done`, 0, 0, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startSh(t, tt.script)
			waitLog(t, p, tt.ready)
			start := time.Now()
			if err := p.Stop(tt.grace); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if took < tt.minTime || took > tt.maxTime {
				t.Errorf("Stop took %s, want %s..%s", took, tt.minTime, tt.maxTime)
			}
			if p.Running() {
				t.Error("Running() after Stop")
			}
			log := p.LogTail(4096)
			if tt.grace == 0 && strings.Contains(log, "got-term") {
				t.Errorf("zero grace sent SIGTERM: log %q", log)
			}
			if tt.grace > 0 && !strings.Contains(log, "term") {
				t.Errorf("no SIGTERM seen before kill: log %q", log)
			}
			if err := p.Stop(tt.grace); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

// gone reports whether pid has exited (a zombie waiting for init to reap it
// counts as gone).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	// The child ignores SIGTERM; the grandchild must die with the group
	// even though nobody signals it by PID.
	p := startSh(t, `trap '' TERM; sleep 300 & echo "child=$!"; wait`)
	waitLog(t, p, "child=")
	var child int
	for _, f := range strings.Fields(p.LogTail(4096)) {
		if v, ok := strings.CutPrefix(f, "child="); ok {
			child, _ = strconv.Atoi(v)
		}
	}
	if child == 0 || gone(child) {
		t.Fatalf("no live grandchild in log %q", p.LogTail(4096))
	}
	if err := p.Stop(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitGone(t, child)
}

func TestRestartLogsThisRunOnly(t *testing.T) {
	p := startSh(t, `echo "run at $(date +%s%N)"; echo marker-$$; sleep 30`)
	waitLog(t, p, "marker-")
	first := p.LogTail(4096)
	if err := p.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "marker-")
	second := p.LogTail(4096)
	if second == first || strings.Contains(second, first) {
		t.Errorf("LogTail after restart shows the first run: %q", second)
	}
	whole, err := os.ReadFile(p.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(whole), first) || !strings.Contains(string(whole), second) {
		t.Errorf("log file lost a run: %q", whole)
	}
	if got := p.LogTail(5); len(got) > 5 {
		t.Errorf("LogTail(5) = %q, longer than 5 bytes", got)
	}
}

func TestWait(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		wantErr bool
	}{
		{"zero exit", "exit 0", false},
		{"non-zero exit", "exit 3", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startSh(t, tt.script)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.Wait(ctx); (err != nil) != tt.wantErr {
				t.Fatalf("Wait = %v, want error %v", err, tt.wantErr)
			}
			if p.Running() {
				t.Error("Running() after exit")
			}
		})
	}
	t.Run("context ends first", func(t *testing.T) {
		p := startSh(t, "sleep 30")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait = %v, want deadline exceeded", err)
		}
	})
}

func TestWaitReady(t *testing.T) {
	notYet := errors.New("not yet")
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		// check is ready once its n-th call (1-based); 0 = never.
		readyAt   int
		wantErr   []string
		addrInUse bool
	}{
		{"ready after a few checks", "sleep 30", 10 * time.Second, 3, nil, false},
		{"exits before ready", "echo boom; exit 7", 10 * time.Second, 0, []string{"exited before ready", "exit status 7", "boom", "not yet"}, false},
		{"port race", "echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1", 10 * time.Second, 0, []string{"exited before ready"}, true},
		{"times out", "echo slow; sleep 30", 200 * time.Millisecond, 0, []string{"not ready", "deadline exceeded", "slow"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startSh(t, tt.script)
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			calls := 0
			err := p.WaitReady(ctx, 10*time.Millisecond, func(ctx context.Context) error {
				calls++
				if _, ok := ctx.Deadline(); !ok {
					t.Error("check context has no deadline")
				}
				if tt.readyAt != 0 && calls >= tt.readyAt {
					return nil
				}
				return notYet
			})
			if tt.wantErr == nil {
				if err != nil || calls != tt.readyAt {
					t.Fatalf("WaitReady = %v after %d checks, want nil after %d", err, calls, tt.readyAt)
				}
				return
			}
			if err == nil {
				t.Fatal("WaitReady succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if got := errors.Is(err, ErrAddrInUse); got != tt.addrInUse {
				t.Errorf("errors.Is(err, ErrAddrInUse) = %v, want %v", got, tt.addrInUse)
			}
		})
	}
}
