package cosign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"
)

const inTotoPayloadType = "application/vnd.in-toto+json"

// Statement returns the in-toto statement cosign v3 signs for image:
// predicateType SignPredicateType for `cosign sign`, another one for
// `cosign attest`.
func Statement(image name.Digest, predicateType string) []byte {
	hx := strings.TrimPrefix(image.DigestStr(), "sha256:")
	st := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": image.Context().Name(), "digest": map[string]string{"sha256": hx}}},
		"predicateType": predicateType,
		"predicate":     map[string]any{},
	}
	b, _ := json.Marshal(st)
	return b
}

func pae(payloadType string, payload []byte) []byte {
	return []byte(fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload))
}

// signerFor signs with key as cosign would (P-384 with SHA-384 …).
func signerFor(key crypto.Signer) (signature.Signer, error) {
	h := crypto.SHA256
	if ek, ok := key.(*ecdsa.PrivateKey); ok {
		switch ek.Curve {
		case elliptic.P384():
			h = crypto.SHA384
		case elliptic.P521():
			h = crypto.SHA512
		}
	}
	return signature.LoadSignerWithOpts(key, options.WithHash(h))
}

// KeyBundle is a bundle v0.3 a key signed for image, with predicateType,
// without log entry or timestamp (cosign sign --tlog-upload=false).
func KeyBundle(key crypto.Signer, image name.Digest, predicateType string) ([]byte, error) {
	stmt := Statement(image, predicateType)
	s, err := signerFor(key)
	if err != nil {
		return nil, err
	}
	sig, err := s.SignMessage(bytes.NewReader(pae(inTotoPayloadType, stmt)))
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	b := &protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{
				Hint: base64.StdEncoding.EncodeToString(sum[:]),
			}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: stmt, PayloadType: inTotoPayloadType,
			Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	return protojson.Marshal(b)
}

// KeyLegacy is a legacy signature by key of image: payload and annotations.
func KeyLegacy(key crypto.Signer, image name.Digest) (payload []byte, annotations map[string]string, err error) {
	payload = SimpleSigningPayload(image)
	s, err := signerFor(key)
	if err != nil {
		return nil, nil, err
	}
	sig, err := s.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, nil, err
	}
	return payload, map[string]string{AnnSignature: base64.StdEncoding.EncodeToString(sig)}, nil
}

// PublicKeyPEM is key's public half as cosign writes cosign.pub.
func PublicKeyPEM(key crypto.Signer) string {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Sigstore is an offline Sigstore for keyless tests: its own Fulcio CA
// (so certificate validity can be chosen, expired ones included) and the
// Rekor log and timestamp authority of sigstore-go's VirtualSigstore.
type Sigstore struct {
	vs        *ca.VirtualSigstore
	fulcio    *root.FulcioCertificateAuthority
	interKey  *ecdsa.PrivateKey
	serial    int64
	created   time.Time
	logIDHex  string
	rekorLogs map[string]*root.TransparencyLog
}

// NewSigstore builds one.
func NewSigstore() (*Sigstore, error) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trustgate test fulcio root", Organization: []string{"sigstore.dev"}},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	rootCert, _ := x509.ParseCertificate(rootDER)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "trustgate test fulcio intermediate", Organization: []string{"sigstore.dev"}},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, rootCert, interKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	interCert, _ := x509.ParseCertificate(interDER)
	logID, err := vs.RekorLogID()
	if err != nil {
		return nil, err
	}
	return &Sigstore{
		vs: vs, interKey: interKey, serial: 100, created: now, logIDHex: logID, rekorLogs: vs.RekorLogs(),
		fulcio: &root.FulcioCertificateAuthority{
			Root: rootCert, Intermediates: []*x509.Certificate{interCert},
			ValidityPeriodStart: now.Add(-24 * time.Hour), ValidityPeriodEnd: now.Add(24 * time.Hour),
			URI: "https://fulcio.trustgate.test",
		},
	}, nil
}

// TrustedRootJSON is the trusted_root.json of this Sigstore, readable by
// sigstore-go and by `cosign verify --trusted-root`.
func (s *Sigstore) TrustedRootJSON() ([]byte, error) {
	// Log IDs are raw key-ID bytes in the file; the virtual Sigstore keeps
	// them hex-encoded (the cosign CLI then finds "0 < 1" log entries).
	fix := func(in map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
		out := map[string]*root.TransparencyLog{}
		for k, l := range in {
			c := *l
			if raw, err := hex.DecodeString(string(l.ID)); err == nil {
				c.ID = raw
			}
			out[k] = &c
		}
		return out
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{s.fulcio}, fix(s.vs.CTLogs()), s.vs.TimestampingAuthorities(), fix(s.rekorLogs))
	if err != nil {
		return nil, err
	}
	return tr.MarshalJSON()
}

// KeylessOptions shapes one keyless signature.
type KeylessOptions struct {
	Subject, Issuer string
	// NotBefore of the 10-minute certificate; zero means a minute ago.
	NotBefore time.Time
	// NoTlog leaves out the Rekor entry; NoTimestamp the RFC 3161 one.
	NoTlog, NoTimestamp bool
	// PredicateType of the bundle statement; default SignPredicateType.
	PredicateType string
	// GitHubWorkflowRepository, when set, is recorded as Fulcio's GitHub
	// workflow repository claim (OID 1.3.6.1.4.1.57264.1.5).
	GitHubWorkflowRepository string
}

func (s *Sigstore) leaf(o KeylessOptions) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	nb := o.NotBefore
	if nb.IsZero() {
		nb = time.Now().Add(-time.Minute)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	s.serial++
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(s.serial),
		EmailAddresses: []string{o.Subject},
		NotBefore:      nb, NotAfter: nb.Add(10 * time.Minute),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{
			// Fulcio's OIDC issuer extension (v1, raw string).
			Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(o.Issuer),
		}},
	}
	if o.GitHubWorkflowRepository != "" {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{
			Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 5}, Value: []byte(o.GitHubWorkflowRepository),
		})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.fulcio.Intermediates[0], key.Public(), s.interKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

// integratedTime is inside the certificate's validity, a minute after it
// starts.
func integratedTime(c *x509.Certificate) time.Time { return c.NotBefore.Add(time.Minute) }

// Bundle is a keyless bundle v0.3 for image, attached with AttachBundle.
func (s *Sigstore) Bundle(image name.Digest, o KeylessOptions) ([]byte, error) {
	if o.PredicateType == "" {
		o.PredicateType = SignPredicateType
	}
	cert, key, err := s.leaf(o)
	if err != nil {
		return nil, err
	}
	stmt := Statement(image, o.PredicateType)
	signer, err := signature.LoadECDSASigner(key, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	sig, err := signer.SignMessage(bytes.NewReader(pae(inTotoPayloadType, stmt)))
	if err != nil {
		return nil, err
	}
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: cert.Raw}},
	}
	if !o.NoTimestamp {
		tsr, err := s.vs.TimestampResponse(sig)
		if err != nil {
			return nil, err
		}
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{
			Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: tsr}},
		}
	}
	if !o.NoTlog {
		env := &dsse.Envelope{PayloadType: inTotoPayloadType, Payload: base64.StdEncoding.EncodeToString(stmt),
			Signatures: []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}}}
		entry, err := s.vs.GenerateTlogEntry(cert, env, sig, integratedTime(cert).Unix(), true)
		if err != nil {
			return nil, err
		}
		tle, err := s.protoEntry(entry, "dsse", "0.0.1")
		if err != nil {
			return nil, err
		}
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{tle}
	}
	b := &protobundle.Bundle{
		MediaType:            BundleMediaType,
		VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: stmt, PayloadType: inTotoPayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	return protojson.Marshal(b)
}

// protoEntry completes the entry's protobuf form with its kind and SET,
// which bundle parsing requires.
func (s *Sigstore) protoEntry(e *tlog.Entry, kind, version string) (*protorekor.TransparencyLogEntry, error) {
	tle := e.TransparencyLogEntry()
	tle.KindVersion = &protorekor.KindVersion{Kind: kind, Version: version}
	set, err := s.vs.RekorSignPayload(tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
		IntegratedTime: tle.IntegratedTime, LogIndex: tle.LogIndex, LogID: s.logIDHex,
	})
	if err != nil {
		return nil, err
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	return tle, nil
}

// Legacy is a keyless legacy signature for image: payload and the
// annotations cosign writes (certificate, chain, Rekor bundle, timestamp).
func (s *Sigstore) Legacy(image name.Digest, o KeylessOptions) (payload []byte, annotations map[string]string, err error) {
	cert, key, err := s.leaf(o)
	if err != nil {
		return nil, nil, err
	}
	payload = SimpleSigningPayload(image)
	signer, err := signature.LoadECDSASigner(key, crypto.SHA256)
	if err != nil {
		return nil, nil, err
	}
	sig, err := signer.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	var chain []byte
	for _, c := range []*x509.Certificate{s.fulcio.Intermediates[0], s.fulcio.Root} {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	ann := map[string]string{
		AnnSignature:   base64.StdEncoding.EncodeToString(sig),
		AnnCertificate: string(certPEM),
		AnnChain:       string(chain),
	}
	if !o.NoTlog {
		body, err := hashedRekordBody(payload, sig, certPEM)
		if err != nil {
			return nil, nil, err
		}
		it := integratedTime(cert).Unix()
		rp := tlog.RekorPayload{Body: base64.StdEncoding.EncodeToString(body), IntegratedTime: it, LogIndex: 7, LogID: s.logIDHex}
		set, err := s.vs.RekorSignPayload(rp)
		if err != nil {
			return nil, nil, err
		}
		rb, _ := json.Marshal(map[string]any{"SignedEntryTimestamp": set, "Payload": rp})
		ann[AnnBundle] = string(rb)
	}
	if !o.NoTimestamp {
		tsr, err := s.vs.TimestampResponse(sig)
		if err != nil {
			return nil, nil, err
		}
		tb, _ := json.Marshal(map[string]any{"SignedRFC3161Timestamp": tsr})
		ann[AnnTimestamp] = string(tb)
	}
	return payload, ann, nil
}

// hashedRekordBody is the canonical Rekor hashedrekord v0.0.1 entry body.
func hashedRekordBody(payload, sig, certPEM []byte) ([]byte, error) {
	sum := sha256.Sum256(payload)
	body := map[string]any{
		"apiVersion": "0.0.1", "kind": "hashedrekord",
		"spec": map[string]any{
			"data": map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": hex.EncodeToString(sum[:])}},
			"signature": map[string]any{
				"content":   base64.StdEncoding.EncodeToString(sig),
				"publicKey": map[string]string{"content": base64.StdEncoding.EncodeToString(certPEM)},
			},
		},
	}
	// encoding/json sorts map keys: the canonical form Rekor stores.
	return json.Marshal(body)
}
