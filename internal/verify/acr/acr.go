// Package acr implements the "acrSignedTag" verifier: it asks an Azure
// Container Registry whether a tag is marked as signed.
//
// This trusts the registry's word. ACR sets `signed: true` on a tag when
// Docker Content Trust data exists for it, but trustgate checks no signature
// and no key here: anyone who controls the registry (or its API answers) can
// claim any tag is signed and name any digest. It is weaker than the
// notaryv1 verifier, which checks the Notary metadata itself, and is meant
// for setups where the registry is already trusted for content.
package acr

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
)

// Type is the verifier type name used in policies.
const Type = "acrSignedTag"

// maxResponse bounds the tag API's answer.
const maxResponse = 1 << 20

const defaultTimeout = 5 * time.Second

// Config is the `acrSignedTag:` block of a policy verifier.
type Config struct {
	// Registry is the registry host, e.g. myregistry.azurecr.io.
	Registry string `json:"registry"`
	// CAFile is an extra CA bundle for the registry's certificate.
	CAFile      string              `json:"caFile,omitempty"`
	Credentials *credentials.Config `json:"credentials,omitempty"`
	// InsecureHTTP talks plain HTTP to the registry (tests, local mirrors).
	InsecureHTTP bool `json:"insecureHTTP,omitempty"`
}

// Verifier asks one registry about its tags' signed flag.
type Verifier struct {
	name     string
	registry string // lower-case host[:port]
	base     string // scheme://host
	auth     *credentials.Client
	timeout  time.Duration
}

var _ verify.Verifier = (*Verifier)(nil)

// New builds a Verifier; getenv may be nil (os.Getenv).
func New(name string, cfg Config, deps verify.Deps, getenv func(string) string) (*Verifier, error) {
	wrap := func(err error) error { return fmt.Errorf("acrSignedTag %s: %w", name, err) }
	reg := strings.ToLower(strings.TrimSpace(cfg.Registry))
	if reg == "" {
		return nil, wrap(errors.New("registry: required"))
	}
	if strings.Contains(reg, "/") {
		return nil, wrap(fmt.Errorf("registry: %q must be a host name, without scheme or path", cfg.Registry))
	}
	if u, err := url.Parse("https://" + reg); err != nil || u.Host != reg {
		return nil, wrap(fmt.Errorf("registry: %q is not a host name", cfg.Registry))
	}
	scheme := "https"
	if cfg.InsecureHTTP {
		scheme = "http"
	}
	store, err := credentials.Load(cfg.Credentials, deps.BaseDir, getenv)
	if err != nil {
		return nil, wrap(err)
	}
	var rootCAs *x509.CertPool
	if cfg.CAFile != "" {
		if rootCAs, err = verify.LoadCAFile(deps.BaseDir, cfg.CAFile); err != nil {
			return nil, wrap(fmt.Errorf("caFile: %w", err))
		}
	}
	client, err := verify.NewHTTPClient(deps.Transport, rootCAs)
	if err != nil {
		return nil, wrap(err)
	}
	timeout := deps.RequestTimeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return &Verifier{
		name:     name,
		registry: reg,
		base:     scheme + "://" + reg,
		auth:     credentials.NewClient(client, store),
		timeout:  timeout,
	}, nil
}

// Name returns the verifier's name from the policy.
func (v *Verifier) Name() string { return v.name }

// Type returns "acrSignedTag".
func (v *Verifier) Type() string { return Type }

type tagResponse struct {
	Tag struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
		Signed bool   `json:"signed"`
	} `json:"tag"`
}

// BindsTags reports that the registry's answer says which digest a tag
// means: the engine asks it before digest-bound schemes.
func (v *Verifier) BindsTags() bool { return true }

// Verify admits the subject when the registry reports its tag as signed (and,
// with a digest in the reference or in s.Digest, as that digest).
func (v *Verifier) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	ref := s.Reference()
	fail := func(kind error, format string, args ...any) error {
		return fmt.Errorf("acrSignedTag %s: %s: %w", v.name, fmt.Sprintf(format, args...), kind)
	}
	if ref.Registry() != v.registry {
		return nil, fail(verify.ErrUntrusted, "%s is not in registry %s", ref.Repository(), v.registry)
	}
	if ref.Tag() == "" {
		return nil, fail(verify.ErrUntrusted, "%s names no tag; the registry's signed flag is per tag", ref)
	}
	rctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	u := v.base + "/acr/v1/" + ref.Path() + "/_tags/" + url.PathEscape(ref.Tag())
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fail(verify.ErrUnavailable, "build request: %v", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.auth.Do(req, credentials.Target{
		Scope:    "repository:" + ref.Path() + ":metadata_read",
		Registry: v.registry,
		// The pod's pull secrets for this registry, when the verifier
		// has no credentials of its own.
		Keychain: s.Keychain,
	})
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(rctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, fail(verify.ErrUnavailable, "look up tag %s of %s: timed out", ref.Tag(), ref.Repository())
		}
		return nil, fail(verify.ErrUnavailable, "look up tag %s of %s: %v", ref.Tag(), ref.Repository(), err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fail(verify.ErrUntrusted, "tag %s of %s does not exist in the registry", ref.Tag(), ref.Repository())
	default:
		return nil, fail(verify.ErrUnavailable, "look up tag %s of %s: registry answered %s", ref.Tag(), ref.Repository(), resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fail(verify.ErrUnavailable, "look up tag %s of %s: %v", ref.Tag(), ref.Repository(), err)
	}
	if len(body) > maxResponse {
		return nil, fail(verify.ErrUnavailable, "look up tag %s of %s: answer larger than %d bytes", ref.Tag(), ref.Repository(), maxResponse)
	}
	var tr tagResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, fail(verify.ErrUnavailable, "look up tag %s of %s: malformed answer: %v", ref.Tag(), ref.Repository(), err)
	}
	if tr.Tag.Name != "" && tr.Tag.Name != ref.Tag() {
		return nil, fail(verify.ErrUnavailable, "look up tag %s of %s: registry answered for tag %q", ref.Tag(), ref.Repository(), tr.Tag.Name)
	}
	if !tr.Tag.Signed {
		return nil, fail(verify.ErrUntrusted, "tag %s of %s is not signed according to the registry", ref.Tag(), ref.Repository())
	}
	if !validDigest(tr.Tag.Digest) {
		return nil, fail(verify.ErrUnavailable, "tag %s of %s: registry reported digest %q", ref.Tag(), ref.Repository(), tr.Tag.Digest)
	}
	if ref.Digest() != "" && ref.Digest() != tr.Tag.Digest {
		return nil, fail(verify.ErrUntrusted, "tag %s of %s is %s in the registry, not %s", ref.Tag(), ref.Repository(), tr.Tag.Digest, ref.Digest())
	}
	return &verify.Result{
		Digest:  tr.Tag.Digest,
		Signers: []string{"registry:" + v.registry},
		Reason:  fmt.Sprintf("registry %s reports tag %s as signed", v.registry, ref.Tag()),
	}, nil
}

func validDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
