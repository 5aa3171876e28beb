package verify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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
// set, redirects limited and never from https to http.
func NewHTTPClient(base http.RoundTripper, rootCAs *x509.CertPool) (*http.Client, error) {
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
	return &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("stopped after 3 redirects")
			}
			if len(via) > 0 && via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return errors.New("refusing redirect from https to http")
			}
			return nil
		},
	}, nil
}
