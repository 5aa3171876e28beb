package credentials

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// maxTokenResponse bounds a token endpoint's answer.
const maxTokenResponse = 1 << 20

// Target says what a request is for: the token scope to ask for when the
// server does not name one, and the hosts whose credentials may be presented
// (in order of preference).
type Target struct {
	Scope string
	Hosts []string
}

// Authenticator sends requests anonymously first and, when the server answers
// 401 with a challenge, retries once with Basic credentials or with a bearer
// token fetched from the challenge's realm (the Docker registry token flow).
// Tokens are cached per (host, scope) until they expire, so a steady stream
// of lookups costs one request each. It is safe for concurrent use.
type Authenticator struct {
	client *http.Client
	store  *Store
	now    func() time.Time

	mu     sync.Mutex
	tokens map[authKey]cachedAuth
}

type authKey struct{ host, scope string }

type cachedAuth struct {
	header  string // full Authorization header value
	expires time.Time
}

// NewAuthenticator wraps client (which carries TLS settings and timeouts).
// now may be nil (time.Now).
func NewAuthenticator(client *http.Client, store *Store, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{client: client, store: store, now: now, tokens: map[authKey]cachedAuth{}}
}

// Do sends req (a GET without body) with whatever authorization is known for
// its host and target scope, handling one 401 challenge.
func (a *Authenticator) Do(req *http.Request, target Target) (*http.Response, error) {
	key := authKey{host: req.URL.Host, scope: target.Scope}
	if h, ok := a.cached(key); ok {
		req = cloneWith(req, h)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return resp, nil
	}
	challenge := resp.Header.Get("WWW-Authenticate")
	drain(resp)
	scheme, params := parseChallenge(challenge)
	creds, haveCreds := a.store.Lookup(target.Hosts...)
	var header string
	var expires time.Time
	switch scheme {
	case "bearer":
		tok, exp, err := a.fetchToken(req, params, target.Scope, creds, haveCreds)
		if err != nil {
			return nil, err
		}
		header, expires = "Bearer "+tok, exp
	case "basic":
		if !haveCreds {
			return nil, fmt.Errorf("%s requires credentials and none are configured: %w", redact(req.URL), ErrUnauthorized)
		}
		header, expires = basicHeader(creds), a.now().Add(24*time.Hour)
	default:
		return nil, fmt.Errorf("%s answered 401 without a usable challenge (%q): %w", redact(req.URL), truncate(challenge, 200), ErrUnauthorized)
	}
	a.store1(key, cachedAuth{header: header, expires: expires})
	resp, err = a.client.Do(cloneWith(req, header))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		drain(resp)
		a.forget(key)
		return nil, fmt.Errorf("%s refused the credentials: %w", redact(req.URL), ErrUnauthorized)
	}
	return resp, nil
}

// ErrUnauthorized reports that the server would not accept what we presented.
var ErrUnauthorized = errors.New("unauthorized")

func (a *Authenticator) cached(k authKey) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.tokens[k]
	if !ok || !a.now().Before(c.expires) {
		return "", false
	}
	return c.header, true
}

func (a *Authenticator) store1(k authKey, c cachedAuth) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.tokens) > 10000 {
		// Bounded memory: the key space is hosts × repositories in the policy,
		// so reaching this means churn; start over rather than grow.
		clear(a.tokens)
	}
	a.tokens[k] = c
}

func (a *Authenticator) forget(k authKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.tokens, k)
}

func (a *Authenticator) fetchToken(orig *http.Request, params map[string]string, scope string, creds Basic, haveCreds bool) (string, time.Time, error) {
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Host == "" {
		return "", time.Time{}, fmt.Errorf("%s: bearer challenge has no usable realm: %w", redact(orig.URL), ErrUnauthorized)
	}
	// Never send credentials in clear text unless the registry itself is
	// plain HTTP (an explicitly insecure setup).
	if realm.Scheme != "https" && !(realm.Scheme == "http" && orig.URL.Scheme == "http") {
		return "", time.Time{}, fmt.Errorf("%s: token realm %s is not https: %w", redact(orig.URL), redact(realm), ErrUnauthorized)
	}
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if s := params["scope"]; s != "" {
		for _, one := range strings.Fields(s) {
			q.Add("scope", one)
		}
	} else if scope != "" {
		q.Set("scope", scope)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(orig.Context(), http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token request: %w", err)
	}
	if haveCreds {
		req.Header.Set("Authorization", basicHeader(creds))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("fetch token from %s: %w", redact(realm), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("fetch token from %s: %w", redact(realm), err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", time.Time{}, fmt.Errorf("token endpoint %s refused the credentials (%s): %w", redact(realm), resp.Status, ErrUnauthorized)
	}
	if resp.StatusCode != http.StatusOK {
		return "", time.Time{}, &StatusError{URL: redact(realm), Code: resp.StatusCode, Status: resp.Status}
	}
	if len(body) > maxTokenResponse {
		return "", time.Time{}, fmt.Errorf("token from %s: response larger than %d bytes", redact(realm), maxTokenResponse)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", time.Time{}, fmt.Errorf("token from %s: %w", redact(realm), err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", time.Time{}, fmt.Errorf("token from %s: empty token", redact(realm))
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	if life <= 0 {
		life = 60 * time.Second // the spec's default
	}
	// Renew a little early so a token never expires in flight.
	if life > 20*time.Second {
		life -= 10 * time.Second
	}
	return tok, a.now().Add(life), nil
}

// StatusError is an unexpected HTTP status from a server.
type StatusError struct {
	URL    string
	Code   int
	Status string
}

func (e *StatusError) Error() string { return fmt.Sprintf("%s answered %s", e.URL, e.Status) }

func basicHeader(b Basic) string {
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(b.Username, b.Password)
	return req.Header.Get("Authorization")
}

func cloneWith(req *http.Request, authorization string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", authorization)
	return r
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// parseChallenge parses `Scheme k="v",k2=v2` into a lower-case scheme and
// its parameters; quoted values may contain commas.
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
