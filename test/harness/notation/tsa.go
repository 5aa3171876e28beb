package notation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/notaryproject/tspclient-go"
	"github.com/notaryproject/tspclient-go/pki"
)

// OIDs of RFC 3161, RFC 5652 and RFC 5035.
var (
	oidSHA256               = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidECDSAWithSHA256      = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidSignedData           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidTSTInfo              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidSigningCertificateV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidExtKeyUsage          = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidTimeStamping         = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	// oidTSAPolicy is this test TSA's policy.
	oidTSAPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}
)

// TSA is an RFC 3161 timestamping authority made in the test: a
// self-signed root (for the verifier's `tsa` trust store) and a
// timestamping leaf that signs tokens. It implements tspclient.Timestamper,
// which notation-go's signer calls to countersign a signature, and produces
// real DER TimeStampResp tokens that tspclient-go parses and verifies.
type TSA struct {
	Root   *x509.Certificate
	leaf   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64
	calls  atomic.Int64
}

var _ tspclient.Timestamper = (*TSA)(nil)

// NewTSA makes the TSA's root and leaf (valid from an hour ago for a year).
func NewTSA() (*TSA, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               Subject("tsa", "test TSA root"),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("TSA root: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// RFC 3161 2.3: the one extended key usage, timeStamping, critical.
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidTimeStamping})
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               Subject("tsa", "test TSA"),
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: eku}},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("TSA leaf: %w", err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return nil, err
	}
	return &TSA{Root: root, leaf: leaf, key: key}, nil
}

// RootPEM is the TSA root for a `tsa` trust store.
func (t *TSA) RootPEM() string { return CertPEM(t.Root) }

// Roots is the TSA root as the signer's TSARootCAs.
func (t *TSA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(t.Root)
	return p
}

// Calls counts the timestamps issued.
func (t *TSA) Calls() int64 { return t.calls.Load() }

// The structures below mirror RFC 3161 and RFC 5652 for encoding; tspclient-go
// keeps its own in an internal package.

type tstInfo struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint tspclient.MessageImprint
	SerialNumber   *big.Int
	GenTime        time.Time `asn1:"generalized"`
	Accuracy       accuracy  `asn1:"optional"`
	Nonce          *big.Int  `asn1:"optional"`
}

type accuracy struct {
	Seconds int `asn1:"optional"`
}

type attribute struct {
	Type   asn1.ObjectIdentifier
	Values asn1.RawValue
}

type essCertIDv2 struct {
	CertHash []byte
}

type signingCertificateV2 struct {
	Certificates []essCertIDv2
}

type issuerAndSerial struct {
	Issuer       asn1.RawValue
	SerialNumber *big.Int
}

type signerInfo struct {
	Version            int
	SignerIdentifier   issuerAndSerial
	DigestAlgorithm    pkix.AlgorithmIdentifier
	SignedAttributes   []attribute `asn1:"tag:0"`
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          []byte
}

type encapsulatedContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     []byte `asn1:"explicit,tag:0"`
}

type signedData struct {
	Version                    int
	DigestAlgorithmIdentifiers []pkix.AlgorithmIdentifier `asn1:"set"`
	EncapsulatedContentInfo    encapsulatedContentInfo
	Certificates               asn1.RawValue
	SignerInfos                []signerInfo `asn1:"set"`
}

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue // [0] EXPLICIT, built by hand: encoding/asn1 ignores tags on a RawValue
}

func setOf(v any) (asn1.RawValue, error) {
	der, err := asn1.Marshal(v)
	if err != nil {
		return asn1.RawValue{}, err
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: der}, nil
}

// Timestamp issues a token over the request's message imprint, at the
// current time, with one second of accuracy.
func (t *TSA) Timestamp(_ context.Context, req *tspclient.Request) (*tspclient.Response, error) {
	t.calls.Add(1)
	info, err := asn1.Marshal(tstInfo{
		Version:        1,
		Policy:         oidTSAPolicy,
		MessageImprint: req.MessageImprint,
		SerialNumber:   big.NewInt(t.serial.Add(1)),
		GenTime:        time.Now().UTC().Truncate(time.Second),
		Accuracy:       accuracy{Seconds: 1},
		Nonce:          req.Nonce,
	})
	if err != nil {
		return nil, fmt.Errorf("TSTInfo: %w", err)
	}
	digest := sha256.Sum256(info)
	certHash := sha256.Sum256(t.leaf.Raw)
	var attrs []attribute
	for _, a := range []struct {
		oid asn1.ObjectIdentifier
		v   any
	}{
		{oidContentType, oidTSTInfo},
		{oidMessageDigest, digest[:]},
		{oidSigningCertificateV2, signingCertificateV2{Certificates: []essCertIDv2{{CertHash: certHash[:]}}}},
	} {
		vals, err := setOf(a.v)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, attribute{Type: a.oid, Values: vals})
	}
	// RFC 5652 5.4: the signature covers the DER of the attributes as a
	// SET OF, which is how the verifier re-encodes them.
	signedAttrs, err := asn1.MarshalWithParams(attrs, "set")
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(signedAttrs)
	sig, err := ecdsa.SignASN1(rand.Reader, t.key, h[:])
	if err != nil {
		return nil, err
	}
	sd, err := asn1.Marshal(signedData{
		Version:                    3,
		DigestAlgorithmIdentifiers: []pkix.AlgorithmIdentifier{{Algorithm: oidSHA256}},
		EncapsulatedContentInfo:    encapsulatedContentInfo{ContentType: oidTSTInfo, Content: info},
		Certificates:               asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: t.leaf.Raw},
		SignerInfos: []signerInfo{{
			Version:            1,
			SignerIdentifier:   issuerAndSerial{Issuer: asn1.RawValue{FullBytes: t.leaf.RawIssuer}, SerialNumber: t.leaf.SerialNumber},
			DigestAlgorithm:    pkix.AlgorithmIdentifier{Algorithm: oidSHA256},
			SignedAttributes:   attrs,
			SignatureAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256},
			Signature:          sig,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("SignedData: %w", err)
	}
	token, err := asn1.Marshal(contentInfo{ContentType: oidSignedData, Content: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: sd}})
	if err != nil {
		return nil, err
	}
	return &tspclient.Response{Status: pki.StatusInfo{Status: pki.StatusGranted}, TimestampToken: asn1.RawValue{FullBytes: token}}, nil
}
