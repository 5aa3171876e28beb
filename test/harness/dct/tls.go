package dct

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a throwaway P-256 certificate authority whose certificate is written
// to CertFile, so that notary-server, notary-signer, the notary CLI and the
// verifier under test can all be told to trust it.
type CA struct {
	CertFile string
	Cert     *x509.Certificate
	CertPEM  []byte
	key      *ecdsa.PrivateKey
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "trustgate dct harness CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	ca := &CA{
		CertFile: filepath.Join(dir, "ca.crt"),
		Cert:     cert,
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:      key,
	}
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s key: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue %s certificate: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal %s key: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand never fails on supported platforms.
		panic(err)
	}
	return n
}

// newPool returns a pool holding the PEM certificates in pemBytes.
func newPool(pemBytes []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pemBytes)
	return p
}
