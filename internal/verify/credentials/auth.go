package credentials

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Target says what a request is for and whose credentials may go with it.
type Target struct {
	// Scope is the token scope to ask for, e.g. "repository:<gun>:pull".
	Scope string
	// Registry is the image's registry host. Docker presents a registry's
	// credentials to its notary server, so the verifier's own credentials
	// are looked up for Registry first, then for the server's host.
	Registry string
	// Keychain is the subject's (the pod's pull secrets, the CLI's docker
	// config); it is asked after the verifier's own credentials, and only
	// when the server is the image's registry itself (ACR serves its notary
	// and its tag API on the registry's host): a pod's secret for one
	// registry is never handed to another host. Nil means none.
	Keychain authn.Keychain
}

// Client sends requests with credentials from authn keychains, doing the
// registry token flow with go-containerregistry's transport: a request goes
// out anonymously first (or through a transport already set up for its
// host, scope and credential); a 401 challenge is answered with
// transport.Exchange (Basic → bearer token, identity tokens through OAuth2,
// the realm checked against SSRF) and the request is retried once through
// the bearer (or basic) transport transport.FromToken builds, which renews
// its token itself on a later 401. Transports are kept per (host, scope,
// credential), so a token is reused only for the credential that earned it.
//
// The challenge is taken from the request's own 401 and not from a ping of
// /v2/ (transport.NewWithContext): a notary server's /v2/ may answer 200
// while its repositories ask for a token, and ACR's tag API is not under
// /v2/; this way a server that never challenges costs no extra request.
//
// It is safe for concurrent use.
type Client struct {
	// base carries TLS, the request limiter and the redirect guard; ggcr's
	// token requests go through it too.
	base http.RoundTripper
	// check is the redirect policy of requests trustgate sends itself.
	check func(*http.Request, []*http.Request) error
	own   *Store

	mu         sync.Mutex
	transports map[authKey]http.RoundTripper
}

type authKey struct{ host, scope, cred string }

// maxTransports bounds the transports kept: the key space is hosts ×
// repositories × credentials, so reaching it means churn; start over rather
// than grow.
const maxTransports = 10000

// NewClient wraps client (which carries TLS settings, timeouts, the request
// limiter and the redirect policy). own are the verifier's own credentials
// (nil: none).
func NewClient(client *http.Client, own *Store) *Client {
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	check := client.CheckRedirect
	if check == nil {
		check = verify.CheckRedirect
	}
	// ggcr's token requests use an http.Client of its own, which would
	// follow redirects to public hosts: refuse any 3xx leaving a request's
	// origin below every client, so the realm named by the challenge is the
	// only other host contacted and a redirect from it is refused.
	return &Client{
		base:       verify.RefuseCrossOriginRedirects(rt),
		check:      check,
		own:        own,
		transports: map[authKey]http.RoundTripper{},
	}
}

// ErrUnauthorized reports that the server would not accept what we presented.
var ErrUnauthorized = errors.New("unauthorized")

// Do sends req (a GET without body) with whatever authorization is known for
// its host, target scope and credential, handling one 401 challenge.
func (c *Client) Do(req *http.Request, target Target) (*http.Response, error) {
	ctx := req.Context()
	auth, cred, err := c.authenticator(ctx, req.URL.Host, target)
	if err != nil {
		return nil, err
	}
	key := authKey{host: req.URL.Host, scope: target.Scope, cred: cred}
	rt := c.cached(key)
	if rt == nil {
		rt = c.base
	}
	resp, err := c.send(rt, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	// A 401 through a kept transport means its token or credentials no
	// longer do (ggcr's bearer transport has already tried a new token):
	// start over from this challenge.
	c.forget(key)
	challenge := resp.Header.Get("WWW-Authenticate")
	drain(resp)
	rt, err = c.answer(ctx, req.URL, challenge, auth, target.Scope)
	if err != nil {
		return nil, err
	}
	resp, err = c.send(rt, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		drain(resp)
		return nil, fmt.Errorf("%s refused the credentials: %w", redact(req.URL), ErrUnauthorized)
	}
	c.keep(key, rt)
	return resp, nil
}

func (c *Client) send(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	hc := &http.Client{Transport: rt, CheckRedirect: c.check}
	return hc.Do(req.Clone(req.Context()))
}

// authenticator picks the credential to present: the verifier's own for the
// image's registry, then for the server's host, then the subject's keychain
// when the server is the image's registry. cred identifies the credential
// (a hash of what it authorizes with; "" for anonymous).
func (c *Client) authenticator(ctx context.Context, host string, t Target) (authn.Authenticator, string, error) {
	var hosts []string
	if t.Registry != "" {
		hosts = append(hosts, t.Registry)
	}
	hosts = append(hosts, host)
	auth := authn.Anonymous
	if cfg, ok := c.own.Lookup(hosts...); ok {
		auth = authn.FromConfig(cfg)
	} else if t.Keychain != nil && t.Registry != "" && sameHost(t.Registry, host) {
		reg, err := name.NewRegistry(t.Registry, name.WeakValidation)
		if err != nil {
			return nil, "", fmt.Errorf("credentials for %s: %w", t.Registry, err)
		}
		a, err := authn.Resolve(ctx, t.Keychain, reg)
		if err != nil {
			return nil, "", fmt.Errorf("credentials for %s: %w", t.Registry, err)
		}
		auth = a
	}
	if auth == authn.Anonymous {
		return auth, "", nil
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil {
		return nil, "", fmt.Errorf("credentials for %s: %w", host, err)
	}
	if *cfg == (authn.AuthConfig{}) {
		return authn.Anonymous, "", nil
	}
	b, _ := json.Marshal(cfg)
	sum := sha256.Sum256(b)
	return auth, hex.EncodeToString(sum[:]), nil
}

// answer builds the transport that meets challenge (a 401's
// WWW-Authenticate) for u's host: a bearer token from the realm through
// ggcr's token flow, or Basic credentials.
func (c *Client) answer(ctx context.Context, u *url.URL, challenge string, auth authn.Authenticator, scope string) (http.RoundTripper, error) {
	scheme, params := parseChallenge(challenge)
	reg, err := name.NewRegistry(u.Host, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redact(u), err)
	}
	pr := &transport.Challenge{Scheme: scheme, Parameters: params, Insecure: u.Scheme == "http"}
	switch scheme {
	case "bearer":
		var scopes []string
		if scope != "" {
			scopes = []string{scope}
		}
		if s := params["scope"]; s != "" && s != scope {
			// What the server says it wants, first: some token servers
			// read only the first scope.
			scopes = append(strings.Fields(s), scopes...)
		}
		tok, err := transport.Exchange(ctx, reg, auth, c.base, scopes, pr)
		if err != nil {
			return nil, tokenError(u, params["realm"], err)
		}
		if tok.Token == "" {
			tok.Token = tok.AccessToken // some token servers answer access_token only
		}
		return transport.FromToken(reg, auth, c.base, pr, tok)
	case "basic":
		if auth == authn.Anonymous {
			return nil, fmt.Errorf("%s requires credentials and none are configured: %w", redact(u), ErrUnauthorized)
		}
		return transport.FromToken(reg, auth, c.base, pr, nil)
	default:
		return nil, fmt.Errorf("%s answered 401 without a usable challenge (%q): %w", redact(u), truncate(challenge, 200), ErrUnauthorized)
	}
}

// tokenError says why a token could not be had: the token endpoint's
// refusal is ErrUnauthorized (access denied), anything else (a redirect
// refused, a realm refused, a server error, a timeout) keeps its cause.
func tokenError(u *url.URL, realm string, err error) error {
	where := realm
	if r, perr := url.Parse(realm); perr == nil {
		where = redact(r)
	}
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("token endpoint %s refused the credentials (%d): %w", where, te.StatusCode, ErrUnauthorized)
	}
	return fmt.Errorf("fetch token from %s for %s: %w", where, redact(u), err)
}

func (c *Client) cached(k authKey) http.RoundTripper {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transports[k]
}

func (c *Client) keep(k authKey, rt http.RoundTripper) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.transports) >= maxTransports {
		clear(c.transports)
	}
	c.transports[k] = rt
}

func (c *Client) forget(k authKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.transports, k)
}

// sameHost compares two host[:port] the way credentials are keyed.
func sameHost(a, b string) bool { return normalizeHost(a) == normalizeHost(b) }

// keychainKey carries a subject's keychain through a context, for callers
// whose request path is shared with code that takes no subject.
type keychainKey struct{}

// WithKeychain returns ctx carrying kc.
func WithKeychain(ctx context.Context, kc authn.Keychain) context.Context {
	if kc == nil {
		return ctx
	}
	return context.WithValue(ctx, keychainKey{}, kc)
}

// KeychainFrom returns the keychain WithKeychain put in ctx, or nil.
func KeychainFrom(ctx context.Context) authn.Keychain {
	kc, _ := ctx.Value(keychainKey{}).(authn.Keychain)
	return kc
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// parseChallenge parses `Scheme k="v",k2=v2` into a lower-case scheme and
// its parameters; quoted values may contain commas. (ggcr's parser is
// internal to its module.)
func parseChallenge(h string) (string, map[string]string) {
	h = strings.TrimSpace(h)
	scheme, rest, _ := strings.Cut(h, " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		k, r, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		r = strings.TrimLeft(r, " ")
		var v string
		if strings.HasPrefix(r, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(r); i++ {
				if r[i] == '\\' && i+1 < len(r) {
					i++
					b.WriteByte(r[i])
					continue
				}
				if r[i] == '"' {
					break
				}
				b.WriteByte(r[i])
			}
			v = b.String()
			if i < len(r) {
				i++
			}
			r = r[i:]
		} else {
			end := strings.IndexByte(r, ',')
			if end < 0 {
				end = len(r)
			}
			v, r = strings.TrimSpace(r[:end]), r[end:]
		}
		params[k] = v
		rest = strings.TrimLeft(r, ", ")
	}
	return strings.ToLower(scheme), params
}

// redact drops user info and query strings from URLs shown in errors.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.ForceQuery = false
	return c.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
