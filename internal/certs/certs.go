// Package certs creates the TLS material a webhook needs: a private CA whose
// certificate goes into the webhook configuration's caBundle, and a serving
// certificate for the webhook's Service signed by it. ECDSA P-256, standard
// library only. The CA key is never written out: to rotate, generate a new
// set and update the caBundle.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names written by Write, as a kubernetes.io/tls Secret mounts them.
const (
	CAFile   = "ca.crt"
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// DefaultValidity is how long generated certificates last.
const DefaultValidity = 365 * 24 * time.Hour

// Options say what the serving certificate is for.
type Options struct {
	Service   string   // required: the webhook's Service name
	Namespace string   // required: its namespace
	DNSNames  []string // extra DNS SANs
	IPs       []string // extra IP SANs (e.g. 127.0.0.1 for a webhook reached by URL)
	// Validity of the CA and the serving certificate; default DefaultValidity.
	Validity time.Duration
	// Now is the clock; default time.Now. Tests set it.
	Now func() time.Time
}

// Bundle is generated TLS material in PEM.
type Bundle struct {
	CA   []byte // CA certificate: the caBundle
	Cert []byte // serving certificate
	Key  []byte // serving key (PKCS#8)
}

// Hosts returns the DNS SANs for a Service: NAME, NAME.NS, NAME.NS.svc and
// NAME.NS.svc.cluster.local.
func Hosts(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// Generate creates a CA and a serving certificate for the Service.
func Generate(opts Options) (*Bundle, error) {
	if opts.Service == "" || opts.Namespace == "" {
		return nil, errors.New("certs: service and namespace are required")
	}
	for _, n := range []string{opts.Service, opts.Namespace} {
		if strings.ContainsAny(n, "./ ") {
			return nil, fmt.Errorf("certs: %q is not a DNS label", n)
		}
	}
	hosts := Hosts(opts.Service, opts.Namespace)
	for _, d := range opts.DNSNames {
		if net.ParseIP(d) != nil {
			return nil, fmt.Errorf("certs: %q is an IP address; pass it as an IP SAN", d)
		}
		hosts = append(hosts, d)
	}
	for _, ip := range opts.IPs {
		parsed := net.ParseIP(ip)
		if parsed == nil {
			return nil, fmt.Errorf("certs: %q is not an IP address", ip)
		}
		hosts = append(hosts, parsed.String())
	}
	return generate(hosts, opts.Service+"."+opts.Namespace+".svc", opts.Validity, opts.Now)
}

// SelfSigned creates an in-memory CA and a serving certificate for hosts
// (DNS names or IP addresses), for `trustgate serve` when no certificate files
// are given. It returns the CA in PEM (for the caBundle) and the certificate
// ready for tls.Config.
func SelfSigned(hosts []string) (caPEM []byte, cert tls.Certificate, err error) {
	if len(hosts) == 0 {
		return nil, tls.Certificate{}, errors.New("certs: at least one host is required")
	}
	b, err := generate(hosts, hosts[0], 0, nil)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	cert, err = tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("certs: load generated key pair: %w", err)
	}
	return b.CA, cert, nil
}

func generate(hosts []string, commonName string, validity time.Duration, now func() time.Time) (*Bundle, error) {
	ca, err := NewCA("trustgate webhook CA", validity, now)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Issue(commonName, hosts, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	return &Bundle{CA: ca.CertPEM, Cert: cert, Key: key}, nil
}

// CA is a P-256 certificate authority held in memory, issuing leaves.
type CA struct {
	Cert      *x509.Certificate
	CertPEM   []byte
	key       *ecdsa.PrivateKey
	notBefore time.Time
	notAfter  time.Time
}

// NewCA creates a CA named commonName, valid for validity (DefaultValidity
// when zero) from now (time.Now when nil), backdated a little so that a
// client whose clock is slightly behind accepts what it issues.
func NewCA(commonName string, validity time.Duration, now func() time.Time) (*CA, error) {
	if validity <= 0 {
		validity = DefaultValidity
	}
	if now == nil {
		now = time.Now
	}
	notBefore := now().Add(-5 * time.Minute).UTC()
	notAfter := notBefore.Add(validity)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"trustgate"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse CA certificate: %w", err)
	}
	return &CA{
		Cert:      cert,
		CertPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:       key,
		notBefore: notBefore,
		notAfter:  notAfter,
	}, nil
}

// Issue creates a leaf for hosts (DNS names or IP addresses) with the given
// extended key usages, valid as long as the CA, and returns it and its
// PKCS#8 key in PEM.
func (ca *CA) Issue(commonName string, hosts []string, usages ...x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key for %s: %w", commonName, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"trustgate"}},
		NotBefore:    ca.notBefore,
		NotAfter:     ca.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create certificate for %s: %w", commonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: encode key for %s: %w", commonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// serial returns a random 128-bit serial number (RFC 5280 allows up to 20 octets).
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms (it panics itself
		// since Go 1.24); keep a usable, unique-enough value regardless.
		return big.NewInt(time.Now().UnixNano())
	}
	return n.Add(n, big.NewInt(1)) // never zero
}

// Write generates a bundle for opts and stores it in dir (`trustgate certs`).
func Write(dir string, opts Options) error {
	b, err := Generate(opts)
	if err != nil {
		return err
	}
	return b.Write(dir)
}

// Write stores b in dir as ca.crt, tls.crt and tls.key (the key 0600). Each
// file is written to a temporary name and renamed, so a process watching the
// files never reads a half-written one.
func (b *Bundle) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("certs: create %s: %w", dir, err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAFile, b.CA, 0o644},
		{CertFile, b.Cert, 0o644},
		{KeyFile, b.Key, 0o600},
	} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("certs: write %s: %w", path, err)
	}
	return nil
}
