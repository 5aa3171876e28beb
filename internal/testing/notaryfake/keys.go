package notaryfake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// Key is a generated signing key and its public form as Notary publishes it.
type Key struct {
	// Public is the key as it appears in root.json or a delegation.
	Public tuf.Key
	// ID is Notary's key ID of Public.
	ID     string
	signer crypto.Signer
	method string
}

// GenerateKey makes a key of a Notary key type: "ecdsa", "ed25519", "rsa",
// or "ecdsa-x509"/"rsa-x509" (a self-signed certificate with CN=cn, as
// Notary makes for root keys). It panics on failure: it is test setup.
func GenerateKey(typ, cn string) *Key {
	var signer crypto.Signer
	var method string
	var err error
	switch typ {
	case tuf.KeyTypeECDSA, tuf.KeyTypeECDSAX509:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		method = tuf.MethodECDSA
	case tuf.KeyTypeRSA, tuf.KeyTypeRSAX509:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
		method = tuf.MethodRSAPSS
	case tuf.KeyTypeED25519:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
		method = tuf.MethodEDDSA
	default:
		panic(fmt.Sprintf("notaryfake: unsupported key type %q", typ))
	}
	if err != nil {
		panic(err)
	}
	var public []byte
	switch typ {
	case tuf.KeyTypeECDSAX509, tuf.KeyTypeRSAX509:
		public = selfSignedCert(signer, cn)
	case tuf.KeyTypeED25519:
		public = []byte(signer.Public().(ed25519.PublicKey))
	default:
		public, err = x509.MarshalPKIXPublicKey(signer.Public())
		if err != nil {
			panic(err)
		}
	}
	k := &Key{Public: tuf.Key{Type: typ, Value: tuf.KeyVal{Public: public}}, signer: signer, method: method}
	k.ID = k.Public.ID()
	return k
}

func selfSignedCert(signer crypto.Signer, cn string) []byte {
	now := time.Now()
	return selfSignedCertFor(signer, cn, now.Add(-time.Hour), now.Add(10*365*24*time.Hour))
}

func selfSignedCertFor(signer crypto.Signer, cn string, notBefore, notAfter time.Time) []byte {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// WithCert returns the same private key published as an x509 key type
// ("ecdsa-x509" or "rsa-x509") with a new self-signed certificate for cn,
// valid from notBefore to notAfter: the notary CLI reuses one root key for
// every repository of a trust directory, each with a certificate whose CN is
// that repository's GUN. It panics for ed25519 keys (Notary has no x509
// type for them).
func (k *Key) WithCert(cn string, notBefore, notAfter time.Time) *Key {
	var typ string
	switch k.signer.(type) {
	case *ecdsa.PrivateKey:
		typ = tuf.KeyTypeECDSAX509
	case *rsa.PrivateKey:
		typ = tuf.KeyTypeRSAX509
	default:
		panic(fmt.Sprintf("notaryfake: no x509 key type for a %T", k.signer))
	}
	c := &Key{Public: tuf.Key{Type: typ, Value: tuf.KeyVal{Public: selfSignedCertFor(k.signer, cn, notBefore, notAfter)}}, signer: k.signer, method: k.method}
	c.ID = c.Public.ID()
	return c
}

// PublicPEM returns the key as a pin: the certificate for x509 types,
// otherwise a PKIX "PUBLIC KEY" block.
func (k *Key) PublicPEM() string {
	b, err := k.Public.PEM()
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Sign signs msg the way Notary does for this key type.
func (k *Key) Sign(msg []byte) tuf.Signature {
	var sig []byte
	var err error
	digest := sha256.Sum256(msg)
	switch s := k.signer.(type) {
	case *ecdsa.PrivateKey:
		var r, ss *big.Int
		r, ss, err = ecdsa.Sign(rand.Reader, s, digest[:])
		size := (s.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		if err == nil {
			r.FillBytes(sig[:size])
			ss.FillBytes(sig[size:])
		}
	case *rsa.PrivateKey:
		sig, err = rsa.SignPSS(rand.Reader, s, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case ed25519.PrivateKey:
		sig = ed25519.Sign(s, msg)
	}
	if err != nil {
		panic(err)
	}
	return tuf.Signature{KeyID: k.ID, Method: k.method, Sig: sig}
}
