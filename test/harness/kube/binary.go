package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// ErrUnavailable is wrapped by every error that means "this machine cannot
// run a cluster" (no kube-apiserver binary and it could not be built, no etcd,
// no kubectl), as opposed to a cluster that was started and misbehaved.
// Tests skip on it when CI is empty and fail on it when CI is set.
var ErrUnavailable = errors.New("kube: cluster binaries unavailable")

// DefaultBuildTimeout bounds the one-time build of kube-apiserver (about ten
// minutes on two busy cores; cached afterwards).
const DefaultBuildTimeout = 25 * time.Minute

// buildScript is the project's script that prints the cached binary's path,
// building it first when it is missing.
const buildScript = "hack/kube-apiserver.sh"

// RepoRoot finds the trustgate checkout: the first folder at or above the
// working directory that holds hack/kube-apiserver.sh, else the folder three
// levels above this source file (for binaries run from elsewhere).
func RepoRoot() (string, error) {
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if fileExists(filepath.Join(dir, buildScript)) {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "..", "..", "..")
		if fileExists(filepath.Join(dir, buildScript)) {
			return filepath.Clean(dir), nil
		}
	}
	return "", fmt.Errorf("%w: no %s above the working directory", ErrUnavailable, buildScript)
}

// APIServerBinary returns the path of the kube-apiserver binary, running
// hack/kube-apiserver.sh (which builds it once into the user's cache). While a
// build runs, progress lines go to progress every 30 seconds so a long first
// run does not look hung. A file lock keeps parallel test packages from
// starting two builds at once.
func APIServerBinary(ctx context.Context, repoRoot string, progress io.Writer) (string, error) {
	if progress == nil {
		progress = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultBuildTimeout)
	defer cancel()

	unlock, err := lockBuild(progress)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer unlock()

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, buildScript))
	cmd.Dir = repoRoot
	cmd.Stdout = &stdout
	// The script writes its "building once" notice and the compiler's output
	// to stderr; show both as they come.
	cmd.Stderr = io.MultiWriter(&stderr, progress)
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%w: run %s: %v", ErrUnavailable, buildScript, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	start := time.Now()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return "", fmt.Errorf("%w: %s: %v: %s", ErrUnavailable, buildScript, err, tail(stderr.String(), 2000))
			}
			path := lastLine(stdout.String())
			if path == "" || !fileExists(path) {
				return "", fmt.Errorf("%w: %s printed %q, not a binary", ErrUnavailable, buildScript, path)
			}
			return path, nil
		case <-tick.C:
			fmt.Fprintf(progress, "kube: still getting kube-apiserver (%s elapsed, allowing up to %s; the first build takes about 10 minutes)\n",
				time.Since(start).Round(time.Second), DefaultBuildTimeout)
		}
	}
}

// lockBuild takes an exclusive lock next to the binary cache; it blocks until
// another process's build finishes.
func lockBuild(progress io.Writer) (func(), error) {
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("find cache folder: %w", err)
		}
		dir = filepath.Join(home, ".cache")
	}
	dir = filepath.Join(dir, "trustgate")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "kube-apiserver.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open build lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return func() {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			f.Close()
		}, nil
	}
	fmt.Fprintln(progress, "kube: another process is getting kube-apiserver; waiting for it")
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("take build lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

func lookBinary(name string, candidates ...string) (string, error) {
	for _, c := range candidates {
		if fileExists(c) {
			return c, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found: %v", ErrUnavailable, name, err)
	}
	return p, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
