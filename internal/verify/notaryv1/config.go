// Package notaryv1 verifies images signed with Docker Content Trust (Notary
// v1). It implements the TUF checks itself — root pinning or trust on first
// use, timestamp → snapshot → targets → delegations, signatures, thresholds,
// expiry, rollback and hash chaining — and maps tags to signed digests the
// way `docker pull` does (targets/releases, then targets), or by a configured
// list of signer roles and a threshold.
package notaryv1

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// Type is the verifier type name used in policies.
const Type = "notaryv1"

// Defaults.
const (
	DefaultFreshness        = 30 * time.Second
	DefaultMaxMetadataBytes = 10 << 20
	DefaultRequestTimeout   = 5 * time.Second
	// maxGUNs bounds the per-repository memory (trusted root, versions seen,
	// verified metadata). Past it an arbitrary idle entry is dropped.
	maxGUNs = 4096
)

// Config is the `notaryv1:` block of a policy verifier.
type Config struct {
	// Server is the notary server's base URL (https).
	Server string `json:"server"`
	// CAFile is an extra CA bundle for the server's certificate.
	CAFile string `json:"caFile,omitempty"`
	// RootKeys pins root keys: PEM public keys or certificates, each given
	// inline or as a file path.
	RootKeys []string `json:"rootKeys,omitempty"`
	// TrustOnFirstUse accepts the first root seen for a repository when no
	// keys are pinned; later roots must be signed by it.
	TrustOnFirstUse bool `json:"trustOnFirstUse,omitempty"`
	// Signers lists the roles whose signatures count. Empty means Docker's
	// rule: targets/releases, else targets.
	Signers []string `json:"signers,omitempty"`
	// Threshold is how many distinct listed signer roles must have signed
	// the same digest (default 1).
	Threshold int `json:"threshold,omitempty"`
	// Credentials for the notary server (token flow or basic).
	Credentials *credentials.Config `json:"credentials,omitempty"`
	// InsecureHTTP allows an http:// server URL.
	InsecureHTTP bool `json:"insecureHTTP,omitempty"`
}

// Option tunes a Verifier; for tests and benchmarks.
type Option func(*options)

type options struct {
	now       func() time.Time
	freshness time.Duration
	maxMeta   int64
	getenv    func(string) string
}

// WithClock injects the clock used for expiry checks and freshness.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithFreshness sets how long verified metadata is used without asking the
// server again (0 disables that: every lookup re-fetches the timestamp).
func WithFreshness(d time.Duration) Option { return func(o *options) { o.freshness = d } }

// WithMaxMetadataBytes caps reads whose length is not yet known from signed
// metadata (root.json, timestamp.json).
func WithMaxMetadataBytes(n int64) Option { return func(o *options) { o.maxMeta = n } }

// WithGetenv replaces os.Getenv for credentials.usernameEnv/passwordEnv.
func WithGetenv(f func(string) string) Option { return func(o *options) { o.getenv = f } }

// settings is the validated form of Config.
type settings struct {
	server  *url.URL
	pins    [][]byte // PKIX DER of pinned root keys
	tofu    bool
	signers []string // nil: Docker's rule
	thresh  int
	creds   *credentials.Store
	rootCAs *x509.CertPool
}

func parseConfig(cfg Config, deps verify.Deps, getenv func(string) string) (*settings, error) {
	s := &settings{tofu: cfg.TrustOnFirstUse}
	if cfg.Server == "" {
		return nil, errors.New("server: required")
	}
	u, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("server: %q is not an absolute URL", cfg.Server)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && cfg.InsecureHTTP:
	case u.Scheme == "http":
		return nil, fmt.Errorf("server: %q is plain http; use https or set insecureHTTP: true", cfg.Server)
	default:
		return nil, fmt.Errorf("server: scheme %q is not https", u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server: %q must not carry user info, a query or a fragment", cfg.Server)
	}
	s.server = u

	if cfg.CAFile != "" {
		pool, err := verify.LoadCAFile(deps.BaseDir, cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		s.rootCAs = pool
	}

	switch {
	case len(cfg.RootKeys) == 0 && !cfg.TrustOnFirstUse:
		return nil, errors.New("rootKeys: required unless trustOnFirstUse is true (the configuration must decide which root to trust)")
	case len(cfg.RootKeys) > 0 && cfg.TrustOnFirstUse:
		return nil, errors.New("rootKeys: set either rootKeys or trustOnFirstUse, not both")
	}
	for i, k := range cfg.RootKeys {
		data := []byte(k)
		if !strings.Contains(k, "-----BEGIN") {
			data, err = os.ReadFile(verify.ResolvePath(deps.BaseDir, k))
			if err != nil {
				return nil, fmt.Errorf("rootKeys[%d]: read %s: %w", i, k, err)
			}
		}
		keys, err := tuf.ParsePinnedKeys(data)
		if err != nil {
			return nil, fmt.Errorf("rootKeys[%d]: %w", i, err)
		}
		s.pins = append(s.pins, keys...)
	}

	for i, r := range cfg.Signers {
		if r != tuf.RoleTargets && (!strings.HasPrefix(r, tuf.RoleTargets+"/") || strings.HasSuffix(r, "/") || strings.Contains(r, "//")) {
			return nil, fmt.Errorf("signers[%d]: %q is not targets or a targets/... delegation role", i, r)
		}
		if slices.Contains(cfg.Signers[:i], r) {
			return nil, fmt.Errorf("signers[%d]: %q is listed twice", i, r)
		}
	}
	s.signers = cfg.Signers
	s.thresh = cfg.Threshold
	switch {
	case cfg.Threshold < 0:
		return nil, fmt.Errorf("threshold: %d is negative", cfg.Threshold)
	case cfg.Threshold == 0:
		s.thresh = 1
	case len(cfg.Signers) == 0 && cfg.Threshold > 1:
		return nil, fmt.Errorf("threshold: %d needs that many roles listed in signers", cfg.Threshold)
	case len(cfg.Signers) > 0 && cfg.Threshold > len(cfg.Signers):
		return nil, fmt.Errorf("threshold: %d is more than the %d listed signers", cfg.Threshold, len(cfg.Signers))
	}

	s.creds, err = credentials.Load(cfg.Credentials, deps.BaseDir, getenv)
	if err != nil {
		return nil, err
	}
	return s, nil
}
