package dct

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

// pushTimeout bounds one push or manifest fetch against the local registry.
const pushTimeout = 30 * time.Second

// RegistryOptions configures a registry.
type RegistryOptions struct {
	// Dir holds the configuration, the storage and the log; required for
	// StartRegistry, a t.TempDir() by default for NewRegistry.
	Dir string
}

// Registry is a running Debian docker-registry (distribution) with
// filesystem storage, serving plain HTTP on 127.0.0.1, which
// go-containerregistry treats as an insecure-by-default loopback registry.
type Registry struct {
	port    int
	process *proc.Process
}

// StartRegistry starts docker-registry and waits until GET /v2/ answers 200.
func StartRegistry(opts RegistryOptions) (*Registry, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("start docker-registry: RegistryOptions.Dir is required")
	}
	bin, err := LookBinary("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	storage := filepath.Join(opts.Dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	r := &Registry{}
	for attempt := 1; ; attempt++ {
		if r.port, err = FreePort(); err != nil {
			return nil, fmt.Errorf("start docker-registry: %w", err)
		}
		// JSON is valid YAML, so the config needs no YAML library.
		cfg := map[string]any{
			"version": 0.1,
			"log":     map[string]any{"level": "warn", "accesslog": map[string]any{"disabled": true}},
			"storage": map[string]any{
				"filesystem": map[string]any{"rootdirectory": storage},
				"delete":     map[string]any{"enabled": true},
			},
			"http": map[string]any{"addr": hostPort(r.port)},
		}
		cfgFile := filepath.Join(opts.Dir, "registry.yml")
		if err := writeJSON(cfgFile, cfg); err != nil {
			return nil, fmt.Errorf("start docker-registry: %w", err)
		}
		r.process, err = startProcess(proc.Spec{
			Name:    "docker-registry",
			Path:    bin,
			Args:    []string{"serve", cfgFile},
			LogFile: filepath.Join(opts.Dir, "registry.log"),
			// REGISTRY_* variables override the file; pin the address.
			Env: []string{"REGISTRY_HTTP_ADDR=" + hostPort(r.port)},
		}, r.healthy)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, proc.ErrAddrInUse) || attempt == portAttempts {
			return nil, err
		}
	}
}

// NewRegistry is StartRegistry for tests, stopped at cleanup.
func NewRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	RequireBinaries(t, "docker-registry")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	r, err := StartRegistry(opts)
	if err != nil {
		skipOrFatal(t, err)
	}
	t.Cleanup(r.Close)
	return r
}

func (r *Registry) healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return proc.CheckHTTP(ctx, http.DefaultClient, r.URL()+"/v2/", nil)
}

// Host is 127.0.0.1:PORT, the registry part of image references.
func (r *Registry) Host() string { return hostPort(r.port) }

// URL is http://127.0.0.1:PORT.
func (r *Registry) URL() string { return "http://" + r.Host() }

// Repo returns the full repository name (and Notary GUN) for path, e.g.
// "127.0.0.1:PORT/demo/app".
func (r *Registry) Repo(path string) string { return r.Host() + "/" + path }

// Close stops the registry.
func (r *Registry) Close() {
	stopProcess(r.process)
}

// PushRandomImage pushes a small random image to path:tag and returns the
// manifest digest ("sha256:…") and byte length as the registry serves them,
// which is what a Notary target must record.
func (r *Registry) PushRandomImage(path, tag string) (digest string, size int64, err error) {
	img, err := random.Image(512, 1)
	if err != nil {
		return "", 0, fmt.Errorf("push %s:%s: random image: %w", path, tag, err)
	}
	return r.PushImage(path, tag, img)
}

// PushImage pushes img to path:tag and returns the digest and size of the
// manifest as the registry serves it.
func (r *Registry) PushImage(path, tag string, img v1.Image) (digest string, size int64, err error) {
	ref, err := name.NewTag(r.Repo(path)+":"+tag, name.StrictValidation)
	if err != nil {
		return "", 0, fmt.Errorf("push %s:%s: %w", path, tag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return "", 0, fmt.Errorf("push %s: %w", ref, err)
	}
	// Read the manifest back rather than trusting what was sent: the digest
	// and size must describe the bytes a puller will get.
	return r.Resolve(path, tag)
}

// Resolve returns the digest and size of the manifest path:tag points to.
func (r *Registry) Resolve(path, tag string) (digest string, size int64, err error) {
	ref, err := name.NewTag(r.Repo(path)+":"+tag, name.StrictValidation)
	if err != nil {
		return "", 0, fmt.Errorf("resolve %s:%s: %w", path, tag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	desc, err := remote.Get(ref, remote.WithContext(ctx))
	if err != nil {
		return "", 0, fmt.Errorf("resolve %s: %w", ref, err)
	}
	if int64(len(desc.Manifest)) != desc.Size {
		return "", 0, fmt.Errorf("resolve %s: served manifest is %d bytes, descriptor says %d", ref, len(desc.Manifest), desc.Size)
	}
	return desc.Digest.String(), desc.Size, nil
}
