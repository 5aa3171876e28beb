package cosign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Version is the cosign CLI the tests sign with.
const Version = "v3.1.3"

// installTimeout bounds `go install` of the CLI: about 6 minutes cold on 2
// shared cores (213 modules), seconds warm.
const installTimeout = 25 * time.Minute

// ErrNoCLI marks a cosign CLI that could not be found or installed.
var ErrNoCLI = errors.New("cosign CLI unavailable")

// CacheDir is ${XDG_CACHE_HOME:-~/.cache}/trustgate/bin, shared with the
// kube-apiserver build and kept across runs and clones.
func CacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "trustgate", "bin"), nil
}

// Binary returns the cosign CLI: $TRUSTGATE_COSIGN if set, else the cached
// one, installed with `go install …@v3.1.3` first if missing. Concurrent
// test binaries wait on a lock file instead of building twice.
func Binary() (string, error) {
	if p := os.Getenv("TRUSTGATE_COSIGN"); p != "" {
		return p, nil
	}
	dir, err := CacheDir()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoCLI, err)
	}
	bin := filepath.Join(dir, "cosign")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoCLI, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".cosign.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoCLI, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("%w: lock: %v", ErrNoCLI, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // another process installed it while we waited
	}
	fmt.Fprintf(os.Stderr, "installing cosign %s into %s (about 6 minutes the first time)…\n", Version, dir)
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/sigstore/cosign/v3/cmd/cosign@"+Version)
	// Outside any module, so trustgate's go.mod is neither read nor changed.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: go install: %v\n%s", ErrNoCLI, err, lastLines(out.String(), 20))
	}
	return bin, nil
}

func lastLines(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// CLI runs the cosign CLI offline in its own HOME.
type CLI struct {
	Path string
	// Dir is the working directory and HOME of every run (keys live here).
	Dir string
}

// NewCLI returns the CLI for a test. Without it the test is skipped, or
// fails when CI is set (a broken CI image must not skip the suite).
func NewCLI(t testing.TB) *CLI {
	t.Helper()
	p, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%v (set CI to make this fatal)", err)
		}
		t.Fatal(err)
	}
	return &CLI{Path: p, Dir: t.TempDir()}
}

// Password is the password of every key pair the harness generates.
const Password = "trustgate-test"

// Run runs cosign with args and returns its combined output.
func (c *CLI) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "HOME="+c.Dir, "COSIGN_PASSWORD="+Password, "COSIGN_YES=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cosign %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// GenerateKeyPair writes NAME.key and NAME.pub into Dir and returns their
// paths.
func (c *CLI) GenerateKeyPair(name string) (key, pub string, err error) {
	if _, err := c.Run("generate-key-pair", "--output-key-prefix", name); err != nil {
		return "", "", err
	}
	return filepath.Join(c.Dir, name+".key"), filepath.Join(c.Dir, name+".pub"), nil
}

// offline are the flags that let `cosign sign` work without Sigstore's
// public services (no signing config fetch, no Rekor upload).
var offline = []string{"--use-signing-config=false", "--tlog-upload=false"}

// Sign signs image (NAME@sha256:…) with key: a Sigstore bundle (cosign v3's
// default), or a legacy `.sig` signature when legacy is set.
func (c *CLI) Sign(key, image string, legacy bool) error {
	args := append([]string{"sign", "--key", key, "-y"}, offline...)
	if legacy {
		args = append(args, "--new-bundle-format=false")
	}
	_, err := c.Run(append(args, image)...)
	return err
}

// Attest attaches an in-toto attestation of predicateType (an empty
// predicate) signed with key: not a signature of the image.
func (c *CLI) Attest(key, image, predicateType string) error {
	pred := filepath.Join(c.Dir, "predicate.json")
	if err := os.WriteFile(pred, []byte(`{"note":"not a signature"}`), 0o600); err != nil {
		return err
	}
	args := append([]string{"attest", "--key", key, "-y", "--type", predicateType, "--predicate", pred}, offline...)
	_, err := c.Run(append(args, image)...)
	return err
}

// VerifyKey runs `cosign verify --key` offline.
func (c *CLI) VerifyKey(pub, image string) error {
	_, err := c.Run("verify", "--key", pub, "--insecure-ignore-tlog=true", image)
	return err
}

// VerifyKeyless runs `cosign verify` against a trusted root, offline.
func (c *CLI) VerifyKeyless(trustedRoot, identity, issuer, image string) error {
	_, err := c.Run("verify", "--trusted-root", trustedRoot, "--certificate-identity", identity,
		"--certificate-oidc-issuer", issuer, "--insecure-ignore-sct", image)
	return err
}
