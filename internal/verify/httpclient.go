package verify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// The helpers below are shared by the scheme implementations (notaryv1,
// acr, …), which all read files named in the policy and talk HTTPS to one
// configured server.

// ResolvePath resolves a file named in a verifier's configuration against
// baseDir, the policy file's folder (Deps.BaseDir).
func ResolvePath(baseDir, p string) string {
	if filepath.IsAbs(p) || baseDir == "" {
		return p
	}
	return filepath.Join(baseDir, p)
}

// LoadCAFile returns the system roots plus the PEM certificates in file
// (resolved against baseDir). Errors name the file as the policy wrote it.
func LoadCAFile(baseDir, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(ResolvePath(baseDir, file))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// NewHTTPClient builds the one client a verifier uses: its own keep-alive
// pool cloned from base (http.DefaultTransport when nil), rootCAs added when
// set, redirects only within the origin of the request (CheckRedirect).
func NewHTTPClient(base http.RoundTripper, rootCAs *x509.CertPool) (*http.Client, error) {
	if lt, ok := base.(*limitedTransport); ok {
		// Own pool and CAs as below, behind the shared request slots.
		c, err := NewHTTPClient(lt.next, rootCAs)
		if err != nil {
			return nil, err
		}
		c.Transport = lt.with(c.Transport)
		return c, nil
	}
	if base == nil {
		base = http.DefaultTransport
	}
	rt := base
	if rootCAs != nil {
		t, ok := base.(*http.Transport)
		if !ok {
			return nil, fmt.Errorf("caFile: cannot add a CA to a %T transport", base)
		}
		t = t.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.TLSClientConfig.RootCAs = rootCAs
		rt = t
	} else if t, ok := base.(*http.Transport); ok {
		// Own connection pool, so verifiers do not starve each other.
		rt = t.Clone()
	}
	if t, ok := rt.(*http.Transport); ok {
		// Keep enough idle connections for concurrent admissions: a new
		// TLS handshake costs ten times a metadata fetch on a warm one.
		t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, 16)
	}
	return &http.Client{Transport: rt, CheckRedirect: CheckRedirect}, nil
}

// maxRedirects bounds the same-origin redirects one request may follow.
const maxRedirects = 3

// ErrRedirect is matched (errors.Is) by every refused redirect.
var ErrRedirect = errors.New("redirect refused")

// CheckRedirect is the http.Client redirect policy of every outbound client:
// a verifier contacts only its configured server (README, "No contact with
// strangers"), so a redirect may change the path but never the scheme, host
// or port of the first request (that also refuses https→http), and at most
// maxRedirects are followed. TUF would still catch tampered metadata from
// another host, but following the redirect would let a server send
// trustgate, from inside the cluster, to any address it likes.
//
// A token realm on another host (the registry token flow, e.g. Docker Hub's
// auth.docker.io) is not a redirect: it is a new request to the host the
// configured server's 401 challenge names, and a redirect from the realm is
// judged against the realm.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if err := checkRedirectTarget(via[0].URL, req.URL); err != nil {
		return err
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: stopped after %d redirects", ErrRedirect, maxRedirects)
	}
	return nil
}

// CheckBlobRedirect is the redirect policy for clients that download
// content-addressed blobs from a registry (signature layers, bundles).
// Registries legitimately answer blob GETs with a redirect to a storage
// host (Docker Hub to its CDN, ACR to Azure blob storage, ECR to S3), and
// what comes back is checked against the digest asked for, so a redirect
// of a request for /v2/…/blobs/<digest> may leave the registry's origin,
// to https only. Every other request (the /v2/ ping, manifests, tags,
// referrers) stays on its origin as CheckRedirect requires.
func CheckBlobRedirect(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if !isBlobPath(via[0].URL.Path) {
		return CheckRedirect(req, via)
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w: refusing redirect from https to %s (%s)", ErrRedirect, req.URL.Scheme, origin(req.URL))
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: stopped after %d redirects", ErrRedirect, maxRedirects)
	}
	return nil
}

// isBlobPath reports whether p is a registry blob download,
// /v2/<name>/blobs/<algorithm>:<hex>.
func isBlobPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return false
	}
	i := strings.LastIndex(rest, "/blobs/")
	if i <= 0 {
		return false
	}
	alg, hex, ok := strings.Cut(rest[i+len("/blobs/"):], ":")
	return ok && (alg == "sha256" || alg == "sha512") && hex != "" && strings.Trim(hex, "0123456789abcdef") == ""
}

func checkRedirectTarget(from, to *url.URL) error {
	if from.Scheme == "https" && to.Scheme != "https" {
		return fmt.Errorf("%w: refusing redirect from https to %s (%s)", ErrRedirect, to.Scheme, origin(to))
	}
	if origin(from) != origin(to) {
		return fmt.Errorf("%w: %s redirected to another host, %s; only %s is contacted", ErrRedirect, origin(from), origin(to), origin(from))
	}
	return nil
}

// origin is scheme://host:port with the host lower-cased and the default
// port written out, so "https://Reg" and "https://reg:443" compare equal.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// RefuseCrossOriginRedirects wraps a transport for clients whose redirect
// policy trustgate does not control (go-containerregistry's remote builds
// its own http.Client, which follows up to 10 redirects anywhere): a 3xx
// answer whose Location leaves the request's origin becomes an error before
// the client can follow it, so the other host gets no request. Same-origin
// redirects pass through to the client.
func RefuseCrossOriginRedirects(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	if _, ok := rt.(sameOriginTransport); ok {
		return rt
	}
	return sameOriginTransport{rt}
}

type sameOriginTransport struct{ next http.RoundTripper }

func (t sameOriginTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || !isRedirect(resp.StatusCode) {
		return resp, err
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return resp, nil // the client does not follow it either
	}
	to, perr := req.URL.Parse(loc)
	if perr == nil {
		perr = checkRedirectTarget(req.URL, to)
	}
	if perr != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if !errors.Is(perr, ErrRedirect) {
			perr = fmt.Errorf("%w: unparsable Location %q from %s: %v", ErrRedirect, loc, origin(req.URL), perr)
		}
		return nil, perr
	}
	return resp, nil
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}
