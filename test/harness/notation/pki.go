package notation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Subject builds a certificate subject with the attributes Notation's
// trusted identities require (C, ST, O) and a common name.
func Subject(org, cn string) pkix.Name {
	return pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{org}, CommonName: cn}
}

// Identity is the trusted identity string matching a subject made by
// Subject: "x509.subject: C=US, ST=WA, O=org, CN=cn".
func Identity(org, cn string) string {
	return fmt.Sprintf("x509.subject: C=US, ST=WA, O=%s, CN=%s", org, cn)
}

// CA is a P-256 certificate authority made in the test. It signs code
// signing leaves and CRLs.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey

	serial  atomic.Int64
	mu      sync.Mutex
	revoked []x509.RevocationListEntry
	crlNum  int64
}

var serialBase = time.Now().UnixNano()

// NewCA makes a self-signed root valid from an hour ago for ten years.
func NewCA(subject pkix.Name) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serialBase),
		Subject:               subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, Key: key}
	ca.serial.Store(serialBase)
	return ca, nil
}

// PEM is the CA certificate in PEM.
func (ca *CA) PEM() string { return CertPEM(ca.Cert) }

// CertPEM encodes one certificate.
func CertPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// LeafOptions describes a signing certificate.
type LeafOptions struct {
	Subject pkix.Name
	// NotBefore defaults to an hour ago, NotAfter to a year ahead.
	NotBefore, NotAfter time.Time
	// CRLURL, when set, is the leaf's CRL distribution point.
	CRLURL string
	// OCSPURL, when set, is the leaf's OCSP responder.
	OCSPURL string
}

// Leaf is a signing key and its certificate chain (leaf first, then the
// CA), as signer.NewGenericSigner takes them.
type Leaf struct {
	Key   crypto.Signer
	Cert  *x509.Certificate
	Chain []*x509.Certificate
}

// Leaf issues a code signing certificate.
func (ca *CA) Leaf(o LeafOptions) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = time.Now().Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = time.Now().AddDate(1, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(ca.serial.Add(1)),
		Subject:               o.Subject,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
	}
	if o.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{o.CRLURL}
	}
	if o.OCSPURL != "" {
		tmpl.OCSPServer = []string{o.OCSPURL}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("create leaf certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Leaf{Key: key, Cert: cert, Chain: []*x509.Certificate{cert, ca.Cert}}, nil
}

// Revoke adds the certificate to the CA's next CRL.
func (ca *CA) Revoke(c *x509.Certificate) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.revoked = append(ca.revoked, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
}

// CRL issues a CRL valid for validity, listing the revoked certificates.
func (ca *CA) CRL(validity time.Duration) ([]byte, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.crlNum++
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(ca.crlNum),
		ThisUpdate:                time.Now().Add(-time.Minute),
		NextUpdate:                time.Now().Add(validity),
		RevokedCertificateEntries: append([]x509.RevocationListEntry(nil), ca.revoked...),
	}, ca.Cert, ca.Key)
}

// CRLServer serves a CA's CRL over HTTP at /ca.crl, fresh on every request
// (valid for a minute); Down makes it answer 503, as an unreachable
// distribution point would make the check impossible.
type CRLServer struct {
	srv      *httptest.Server
	down     atomic.Bool
	requests atomic.Int64
}

// StartCRLServer serves ca's CRL.
func StartCRLServer(ca *CA) *CRLServer {
	s := &CRLServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.down.Load() || r.URL.Path != "/ca.crl" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		crl, err := ca.CRL(time.Minute)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(crl)
	}))
	return s
}

// URL is the CRL's distribution point.
func (s *CRLServer) URL() string { return s.srv.URL + "/ca.crl" }

// SetDown makes the server fail (true) or serve again (false).
func (s *CRLServer) SetDown(down bool) { s.down.Store(down) }

// Requests counts CRL requests.
func (s *CRLServer) Requests() int64 { return s.requests.Load() }

// Close stops the server.
func (s *CRLServer) Close() { s.srv.Close() }
