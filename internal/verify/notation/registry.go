package notation

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/trustgate-dev/trustgate/internal/imageref"
)

// resolveCredential resolves the keychain for the image's registry. A
// keychain error is reported: a pod whose pull secret cannot be read should
// not silently go anonymous.
func resolveCredential(ctx context.Context, kc authn.Keychain, ref imageref.Ref) (auth.Credential, error) {
	host := ref.Registry()
	if kc == nil {
		return auth.EmptyCredential, nil
	}
	reg, err := name.NewRegistry(registryForKeychain(host))
	if err != nil {
		return auth.EmptyCredential, fmt.Errorf("registry %s: %w", host, err)
	}
	authr, err := authn.Resolve(ctx, kc, reg)
	if err != nil {
		return auth.EmptyCredential, fmt.Errorf("credentials for %s: %w", host, err)
	}
	cfg, err := authn.Authorization(ctx, authr)
	if err != nil {
		return auth.EmptyCredential, fmt.Errorf("credentials for %s: %w", host, err)
	}
	cred, err := orasCredential(cfg)
	if err != nil {
		return auth.EmptyCredential, fmt.Errorf("credentials for %s: %w", host, err)
	}
	return cred, nil
}

// newAuthClient is the oras auth client of one (registry, credential): its
// token cache serves that credential only, so a token earned with one pod's
// pull secret never answers for another's.
func newAuthClient(httpClient *http.Client, host string, cred auth.Credential) *auth.Client {
	return &auth.Client{
		Client: httpClient,
		Cache:  auth.NewCache(),
		// Bound to the image's registry: oras asks for the host it talks
		// to, and any other host gets no credential.
		Credential: auth.StaticCredential(orasHost(host), cred),
		ClientID:   "trustgate",
		Header:     http.Header{"User-Agent": {"trustgate"}},
	}
}

// registryForKeychain names Docker Hub as docker config files and ggcr's
// keychains know it.
func registryForKeychain(host string) string {
	if host == imageref.DockerHub {
		return name.DefaultRegistry
	}
	return host
}

// orasHost is the host oras asks credentials for: it maps docker.io to
// registry-1.docker.io.
func orasHost(host string) string {
	if host == "docker.io" {
		return "registry-1.docker.io"
	}
	return host
}

// orasCredential adapts a go-containerregistry AuthConfig (what keychains,
// docker config files, credential helpers and pull secrets produce) to the
// credential oras-go's auth client takes.
func orasCredential(cfg *authn.AuthConfig) (auth.Credential, error) {
	if cfg == nil {
		return auth.EmptyCredential, nil
	}
	c := auth.Credential{
		Username:     cfg.Username,
		Password:     cfg.Password,
		RefreshToken: cfg.IdentityToken,
		AccessToken:  cfg.RegistryToken,
	}
	if cfg.Auth != "" && c.Username == "" && c.Password == "" {
		raw, err := base64.StdEncoding.DecodeString(cfg.Auth)
		if err != nil {
			return auth.EmptyCredential, fmt.Errorf("auth field: %w", err)
		}
		u, p, ok := strings.Cut(string(raw), ":")
		if !ok {
			return auth.EmptyCredential, errors.New(`auth field: want base64 of "user:password"`)
		}
		c.Username, c.Password = u, p
	}
	return c, nil
}

func credentialKey(host string, c auth.Credential) string {
	h := sha256.New()
	for _, s := range []string{host, c.Username, c.Password, c.RefreshToken, c.AccessToken} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// plainHTTP reports whether the registry is spoken to over plain HTTP: only
// loopback hosts, as go-containerregistry and the container runtimes do.
func plainHTTP(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// budgetKey carries the per-verification request budget in the context.
type budgetKey struct{}

type budget struct {
	host string // the image's registry, as oras addresses it
	n    atomic.Int64
}

// errBudget and errForeignHost are refusals of the guard transport.
var (
	errBudget      = fmt.Errorf("more than %d registry requests for one verification", maxRequests)
	errForeignHost = errors.New("registry API request to a host other than the image's registry")
)

// guard is the transport of every registry request: it counts requests
// against the verification's budget and refuses registry API calls (/v2/…)
// to any host but the image's registry, which a hostile referrers page link
// could otherwise send trustgate to. Token endpoints (the registry's own
// auth realm) and redirects the registry answers with (blob storage) pass.
type guard struct{ base http.RoundTripper }

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if b, ok := req.Context().Value(budgetKey{}).(*budget); ok {
		if b.n.Add(1) > maxRequests {
			return nil, errBudget
		}
		if req.Response == nil && strings.HasPrefix(req.URL.Path, "/v2/") && !strings.EqualFold(req.URL.Host, b.host) {
			return nil, fmt.Errorf("%w: %s", errForeignHost, req.URL.Host)
		}
	}
	return g.base.RoundTrip(req)
}
