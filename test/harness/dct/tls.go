package dct

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/trustgate-dev/trustgate/internal/certs"
)

// CA is a throwaway P-256 certificate authority whose certificate is written
// to CertFile, so that notary-server, notary-signer, the notary CLI and the
// verifier under test can all be told to trust it. It is trustgate's own
// internal/certs CA, the one `trustgate certs` uses.
type CA struct {
	CertFile string
	Cert     *x509.Certificate
	CertPEM  []byte
	ca       *certs.CA
}

// ServerCert is a certificate issued by a CA, written to files.
type ServerCert struct {
	CertFile string
	KeyFile  string
	// TLS is the same pair loaded for in-process servers (the proxies).
	TLS tls.Certificate
}

// NewCA creates a CA valid for a day and writes its certificate to dir/ca.crt.
func NewCA(dir string) (*CA, error) {
	c, err := certs.NewCA("trustgate dct harness CA", 24*time.Hour, nil)
	if err != nil {
		return nil, err
	}
	ca := &CA{CertFile: filepath.Join(dir, "ca.crt"), Cert: c.Cert, CertPEM: c.CertPEM, ca: c}
	if err := os.WriteFile(ca.CertFile, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA certificate: %w", err)
	}
	return ca, nil
}

// Pool returns a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue creates a leaf for 127.0.0.1 and localhost and writes it to
// dir/name.crt and dir/name.key. Leaves carry both the serverAuth and
// clientAuth usages because notary-server presents its certificate as a
// client certificate to notary-signer.
func (ca *CA) Issue(dir, name string) (*ServerCert, error) {
	certPEM, keyPEM, err := ca.issuePEM(name)
	if err != nil {
		return nil, err
	}
	sc := &ServerCert{
		CertFile: filepath.Join(dir, name+".crt"),
		KeyFile:  filepath.Join(dir, name+".key"),
	}
	if err := os.WriteFile(sc.CertFile, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write %s certificate: %w", name, err)
	}
	if err := os.WriteFile(sc.KeyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write %s key: %w", name, err)
	}
	sc.TLS, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load %s key pair: %w", name, err)
	}
	return sc, nil
}

// IssueTLS is Issue without files, for in-process servers.
func (ca *CA) IssueTLS(name string) (tls.Certificate, error) {
	certPEM, keyPEM, err := ca.issuePEM(name)
	if err != nil {
		return tls.Certificate{}, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s key pair: %w", name, err)
	}
	return c, nil
}

func (ca *CA) issuePEM(name string) (certPEM, keyPEM []byte, err error) {
	return ca.ca.Issue(name, []string{"127.0.0.1", "localhost"}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// newPool returns a pool holding the PEM certificates in pemBytes.
func newPool(pemBytes []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pemBytes)
	return p
}
