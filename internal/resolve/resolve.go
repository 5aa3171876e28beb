// Package resolve finds the digest a tag points to, from the registry, for
// digest pinning when a rule's verification proved none (`action: allow`).
// It is only ever called for registries a policy rule names.
package resolve

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trustgate-dev/trustgate/internal/imageref"
)

// Resolver resolves tags with a HEAD of the manifest. A multi-arch index
// resolves to the index digest, which is what the kubelet pulls by.
type Resolver struct {
	keychain  authn.Keychain
	transport http.RoundTripper
	timeout   time.Duration
}

// New returns a resolver using keychain for credentials (anonymous when nil)
// and timeout per registry request.
func New(keychain authn.Keychain, transport http.RoundTripper, timeout time.Duration) *Resolver {
	if keychain == nil {
		keychain = authn.NewMultiKeychain()
	}
	if transport == nil {
		transport = remote.DefaultTransport
	}
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	return &Resolver{keychain: keychain, transport: transport, timeout: timeout}
}

// Resolve returns "sha256:…" for ref's tag (or ref's own digest).
func (r *Resolver) Resolve(ctx context.Context, ref imageref.Ref) (string, error) {
	if ref.Digest() != "" {
		return ref.Digest(), nil
	}
	n, err := ref.Name()
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	desc, err := remote.Head(n, remote.WithContext(ctx), remote.WithAuthFromKeychain(r.keychain), remote.WithTransport(r.transport))
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	return desc.Digest.String(), nil
}
