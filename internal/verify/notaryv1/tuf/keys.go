package tuf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Key types and signature methods of Notary v1.
const (
	KeyTypeECDSA     = "ecdsa"
	KeyTypeECDSAX509 = "ecdsa-x509"
	KeyTypeRSA       = "rsa"
	KeyTypeRSAX509   = "rsa-x509"
	KeyTypeED25519   = "ed25519"

	MethodECDSA   = "ecdsa"
	MethodEDDSA   = "eddsa" // what Notary writes for ed25519 keys
	MethodRSAPSS  = "rsapss"
	MethodRSAPKCS = "rsapkcs1v15"

	// Aliases Notary also accepts.
	methodED25519  = "ed25519"
	methodPyCrypto = "pycrypto-pkcs#1 pss"
)

// minRSABits is the smallest RSA modulus accepted, as in Notary.
const minRSABits = 2048

// Key is a public key as it appears in root.json and delegations. For the
// x509 types Public holds a PEM certificate; for ecdsa/rsa a PKIX DER public
// key; for ed25519 the raw 32 bytes.
type Key struct {
	Type  string `json:"keytype"`
	Value KeyVal `json:"keyval"`
}

// KeyVal holds the key material; Private is always null in metadata.
type KeyVal struct {
	Public  []byte `json:"public"`
	Private []byte `json:"private"`
}

// ID is Notary's key ID: the hex SHA-256 of the canonical JSON of the key
// with its private part null.
func (k Key) ID() string {
	pub := Key{Type: k.Type, Value: KeyVal{Public: k.Value.Public}}
	b, err := MarshalCanonical(pub)
	if err != nil {
		// Cannot happen: the struct only holds strings and bytes.
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// PublicKey decodes the key material. For certificates it also returns the
// certificate so callers can check its validity period.
func (k Key) PublicKey() (crypto.PublicKey, *x509.Certificate, error) {
	switch k.Type {
	case KeyTypeECDSAX509, KeyTypeRSAX509:
		block, _ := pem.Decode(k.Value.Public)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("%s key: public value is not a PEM certificate", k.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s key: %w", k.Type, err)
		}
		if err := checkKeyKind(k.Type, cert.PublicKey); err != nil {
			return nil, nil, err
		}
		return cert.PublicKey, cert, nil
	case KeyTypeECDSA, KeyTypeRSA:
		pub, err := x509.ParsePKIXPublicKey(k.Value.Public)
		if err != nil {
			return nil, nil, fmt.Errorf("%s key: %w", k.Type, err)
		}
		if err := checkKeyKind(k.Type, pub); err != nil {
			return nil, nil, err
		}
		return pub, nil, nil
	case KeyTypeED25519:
		if len(k.Value.Public) != ed25519.PublicKeySize {
			return nil, nil, fmt.Errorf("ed25519 key: %d bytes, want %d", len(k.Value.Public), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(k.Value.Public), nil, nil
	default:
		return nil, nil, fmt.Errorf("unsupported key type %q", k.Type)
	}
}

func checkKeyKind(typ string, pub crypto.PublicKey) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if typ == KeyTypeECDSA || typ == KeyTypeECDSAX509 {
			return nil
		}
	case *rsa.PublicKey:
		if typ == KeyTypeRSA || typ == KeyTypeRSAX509 {
			if p.N.BitLen() < minRSABits {
				return fmt.Errorf("%s key: %d-bit modulus is below %d", typ, p.N.BitLen(), minRSABits)
			}
			return nil
		}
	}
	return fmt.Errorf("%s key holds a %T", typ, pub)
}

// VerifySignature checks one signature made with method over msg.
func (k Key) VerifySignature(method string, msg, sig []byte) error {
	pub, _, err := k.PublicKey()
	if err != nil {
		return err
	}
	digest := sha256.Sum256(msg)
	switch method {
	case MethodECDSA:
		p, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("method ecdsa with a %s key", k.Type)
		}
		size := (p.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("ecdsa signature is %d bytes, want %d", len(sig), 2*size)
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(p, digest[:], r, s) {
			return errors.New("ecdsa signature does not verify")
		}
	case MethodEDDSA, methodED25519:
		p, ok := pub.(ed25519.PublicKey)
		if !ok {
			return fmt.Errorf("method %s with a %s key", method, k.Type)
		}
		if !ed25519.Verify(p, msg, sig) {
			return errors.New("ed25519 signature does not verify")
		}
	case MethodRSAPSS, methodPyCrypto:
		p, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("method rsapss with a %s key", k.Type)
		}
		if err := rsa.VerifyPSS(p, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
			return fmt.Errorf("rsapss signature does not verify: %w", err)
		}
	case MethodRSAPKCS:
		p, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("method rsapkcs1v15 with a %s key", k.Type)
		}
		if err := rsa.VerifyPKCS1v15(p, crypto.SHA256, digest[:], sig); err != nil {
			return fmt.Errorf("rsapkcs1v15 signature does not verify: %w", err)
		}
	default:
		return fmt.Errorf("unsupported signature method %q", method)
	}
	return nil
}

// CheckCertValidity rejects x509 keys whose certificate is outside its
// validity period at now; other key types have no dates and pass.
func (k Key) CheckCertValidity(now time.Time) error {
	_, cert, err := k.PublicKey()
	if err != nil || cert == nil {
		return err
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate %q is not valid before %s", cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate %q expired at %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// PKIX returns the key's public material as PKIX DER: the form used to
// compare keys regardless of whether they came wrapped in a certificate.
func (k Key) PKIX() ([]byte, error) {
	pub, _, err := k.PublicKey()
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKIXPublicKey(pub)
}

// PEM returns the key in a form usable as a trust pin: the certificate for
// x509 key types, a "PUBLIC KEY" block otherwise.
func (k Key) PEM() ([]byte, error) {
	switch k.Type {
	case KeyTypeECDSAX509, KeyTypeRSAX509:
		if _, _, err := k.PublicKey(); err != nil {
			return nil, err
		}
		block, _ := pem.Decode(k.Value.Public)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), nil
	}
	der, err := k.PKIX()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePinnedKeys reads PEM data holding public keys or certificates (any
// block headers, as `docker trust key generate` writes, are ignored) and
// returns each key as PKIX DER.
func ParsePinnedKeys(data []byte) ([][]byte, error) {
	var out [][]byte
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var pub crypto.PublicKey
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		} else if p, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
			pub = p
		} else if len(block.Bytes) == ed25519.PublicKeySize {
			pub = ed25519.PublicKey(block.Bytes)
		} else {
			return nil, fmt.Errorf("PEM block %q is neither a certificate nor a public key", block.Type)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", block.Type, err)
		}
		out = append(out, der)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM public key or certificate found")
	}
	return out, nil
}
