// Package notation verifies Notary Project (Notation) signatures: the
// signature manifests that refer to an image's digest, found through the OCI
// referrers API or the `sha256-<hex>` tag index, in JWS or COSE envelopes,
// with certificate chains checked against X.509 trust stores and a
// Notation trust policy (trusted identities, verification level and its
// per-check overrides, revocation). The cryptography and the trust policy
// semantics are notation-go's own (v1.3.2); trustgate fetches the signatures
// itself, with the subject's credentials, so it contacts only the image's
// registry and never resolves a digest the engine already holds.
package notation

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/notaryproject/notation-go/verifier/trustpolicy"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Type is the verifier type name used in policies.
const Type = "notation"

// Bounds.
const (
	// DefaultMaxSignatures is how many signatures of one image are tried
	// when the policy says nothing (the notation CLI tries up to 100; an
	// image with more than a handful of Notation signatures is unusual and
	// each costs two requests).
	DefaultMaxSignatures = 10
	// MaxMaxSignatures caps the configurable bound.
	MaxMaxSignatures = 50
	// maxManifestBytes caps a signature manifest and a referrers or tag
	// index: a Notation signature manifest is under 1 KiB.
	maxManifestBytes = 256 << 10
	// maxEnvelopeBytes caps a signature envelope: a chain of a few
	// certificates and a timestamp token fit in tens of KiB.
	maxEnvelopeBytes = 1 << 20
	// maxRequests caps the registry requests of one verification (referrers
	// pages, manifests, envelopes, auth), so a hostile registry cannot keep
	// trustgate busy until the deadline with endless empty pages.
	maxRequests = 64
)

// Config is the `notation:` block of a policy verifier.
type Config struct {
	// TrustStores holds the trusted certificates, each entry inline PEM or a
	// file (relative to the policy file's folder) holding PEM certificates.
	TrustStores TrustStores `json:"trustStores"`
	// TrustedIdentities are Notation's identities: "x509.subject: C=US,
	// ST=WA, O=acme, CN=release" (every attribute listed must match the
	// signing certificate's subject), or "*" for any certificate that chains
	// to the trust store.
	TrustedIdentities []string `json:"trustedIdentities,omitempty"`
	// SignatureVerification is Notation's block: level strict (default),
	// permissive, audit or skip; override per check (authenticity, expiry,
	// authenticTimestamp, revocation: enforce, log or skip); verifyTimestamp
	// always (default) or afterCertExpiry.
	SignatureVerification SignatureVerification `json:"signatureVerification"`
	// RegistryScopes limits the verifier to these repositories
	// ("registry/path", exact, as Notation's trust policy scopes). Empty
	// means every image the rule sends (the rule's patterns are the scope).
	RegistryScopes []string `json:"registryScopes,omitempty"`
	// MaxSignatures bounds how many signatures of one image are tried
	// (default 10, at most 50).
	MaxSignatures int `json:"maxSignatures,omitempty"`
}

// TrustStores are the certificates of each Notation trust store type.
type TrustStores struct {
	// CA roots (and intermediates) for `notary.x509` signatures, what
	// `notation sign` makes: type `ca`.
	CA []string `json:"ca,omitempty"`
	// SigningAuthority certificates for `notary.x509.signingAuthority`
	// signatures: type `signingAuthority`.
	SigningAuthority []string `json:"signingAuthority,omitempty"`
	// TSA roots for RFC 3161 timestamp countersignatures: type `tsa`.
	TSA []string `json:"tsa,omitempty"`
}

// SignatureVerification mirrors the trust policy's block.
type SignatureVerification struct {
	Level           string            `json:"level,omitempty"`
	Override        map[string]string `json:"override,omitempty"`
	VerifyTimestamp string            `json:"verifyTimestamp,omitempty"`
}

// Files lists the files the configuration references, as written (inline
// PEM is not a file).
func (c *Config) Files() []string {
	var out []string
	for _, list := range [][]string{c.TrustStores.CA, c.TrustStores.SigningAuthority, c.TrustStores.TSA} {
		for _, s := range list {
			if !isInlinePEM(s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func isInlinePEM(s string) bool { return strings.Contains(s, "-----BEGIN") }

// storeName is the one named store of each type a verifier has; the trust
// policy refers to it as "<type>:trustgate".
const storeName = "trustgate"

// compiled is a validated configuration: the trust policy document and the
// parsed trust stores notation-go's verifier consumes.
type compiled struct {
	doc           *trustpolicy.Document
	level         *trustpolicy.VerificationLevel
	stores        map[string][]*x509.Certificate // "ca", "signingAuthority", "tsa"
	maxSignatures int
	scopes        map[string]bool // nil: every repository
}

// inScope is the trust policy's scope check, answered from a set (notation-go
// compiles a regular expression on every lookup; it still makes its own).
func (c *compiled) inScope(repository string) bool {
	return c.scopes == nil || c.scopes[repository]
}

var levels = []string{trustpolicy.LevelStrict.Name, trustpolicy.LevelPermissive.Name, trustpolicy.LevelAudit.Name, trustpolicy.LevelSkip.Name}

// compile checks every field and builds the trust policy. Errors name the
// field as written in the policy.
func (c *Config) compile(name, baseDir string) (*compiled, error) {
	out := &compiled{stores: map[string][]*x509.Certificate{}, maxSignatures: DefaultMaxSignatures}
	sv := c.SignatureVerification
	if sv.Level == "" {
		sv.Level = trustpolicy.LevelStrict.Name
	}
	if !slices.Contains(levels, sv.Level) {
		return nil, fmt.Errorf("signatureVerification.level: %q is not one of %s", sv.Level, strings.Join(levels, ", "))
	}
	override := map[trustpolicy.ValidationType]trustpolicy.ValidationAction{}
	for k, v := range sv.Override {
		t := trustpolicy.ValidationType(k)
		if !slices.Contains(trustpolicy.ValidationTypes, t) {
			return nil, fmt.Errorf("signatureVerification.override.%s: unknown check (want %s)", k, joinTypes(trustpolicy.ValidationTypes))
		}
		a := trustpolicy.ValidationAction(v)
		if !slices.Contains(trustpolicy.ValidationActions, a) {
			return nil, fmt.Errorf("signatureVerification.override.%s: %q is not enforce, log or skip", k, v)
		}
		override[t] = a
	}
	switch sv.VerifyTimestamp {
	case "", string(trustpolicy.OptionAlways), string(trustpolicy.OptionAfterCertExpiry):
	default:
		return nil, fmt.Errorf("signatureVerification.verifyTimestamp: %q is not %s or %s", sv.VerifyTimestamp, trustpolicy.OptionAlways, trustpolicy.OptionAfterCertExpiry)
	}
	tsv := trustpolicy.SignatureVerification{VerificationLevel: sv.Level, VerifyTimestamp: trustpolicy.TimestampOption(sv.VerifyTimestamp)}
	if len(override) > 0 {
		tsv.Override = override
	}
	level, err := tsv.GetVerificationLevel()
	if err != nil {
		return nil, fmt.Errorf("signatureVerification: %w", err)
	}
	out.level = level

	skip := sv.Level == trustpolicy.LevelSkip.Name
	var storeRefs []string
	for _, st := range []struct {
		field, typ string
		list       []string
	}{
		{"trustStores.ca", "ca", c.TrustStores.CA},
		{"trustStores.signingAuthority", "signingAuthority", c.TrustStores.SigningAuthority},
		{"trustStores.tsa", "tsa", c.TrustStores.TSA},
	} {
		for i, s := range st.list {
			certs, err := loadCerts(baseDir, s)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", st.field, i, err)
			}
			for _, cert := range certs {
				if err := checkStoreCert(st.typ, cert); err != nil {
					return nil, fmt.Errorf("%s[%d]: certificate %q: %w", st.field, i, cert.Subject, err)
				}
			}
			out.stores[st.typ] = append(out.stores[st.typ], certs...)
		}
		if len(st.list) > 0 {
			storeRefs = append(storeRefs, st.typ+":"+storeName)
		}
	}
	if skip {
		if len(storeRefs) > 0 || len(c.TrustedIdentities) > 0 {
			return nil, fmt.Errorf("signatureVerification.level: skip takes no trustStores or trustedIdentities (they would be ignored)")
		}
	} else {
		if len(c.TrustStores.CA)+len(c.TrustStores.SigningAuthority) == 0 {
			return nil, fmt.Errorf("trustStores: at least one ca or signingAuthority certificate is required")
		}
		if len(c.TrustedIdentities) == 0 {
			return nil, fmt.Errorf(`trustedIdentities: required ("x509.subject: C=…, ST=…, O=…, CN=…" or "*")`)
		}
	}
	for i, id := range c.TrustedIdentities {
		if id != "*" && !strings.HasPrefix(id, "x509.subject:") {
			return nil, fmt.Errorf(`trustedIdentities[%d]: %q is neither "*" nor "x509.subject: …"`, i, id)
		}
	}
	scopes := c.RegistryScopes
	if len(scopes) == 0 {
		scopes = []string{"*"}
	}
	for i, s := range c.RegistryScopes {
		if s == "*" && len(c.RegistryScopes) == 1 {
			continue
		}
		if strings.ContainsAny(s, "*?@") {
			// Notation's scopes are exact repositories or the lone "*";
			// patterns belong in the rule's images.
			return nil, fmt.Errorf("registryScopes[%d]: %q: want an exact repository (registry/path); use the rule's images for patterns", i, s)
		}
	}
	if !(len(scopes) == 1 && scopes[0] == "*") {
		out.scopes = map[string]bool{}
		for _, s := range scopes {
			out.scopes[s] = true
		}
	}
	if c.MaxSignatures < 0 || c.MaxSignatures > MaxMaxSignatures {
		return nil, fmt.Errorf("maxSignatures: %d is not between 1 and %d", c.MaxSignatures, MaxMaxSignatures)
	}
	if c.MaxSignatures > 0 {
		out.maxSignatures = c.MaxSignatures
	}
	out.doc = &trustpolicy.Document{
		Version: "1.0",
		TrustPolicies: []trustpolicy.TrustPolicy{{
			Name:                  policyName(name),
			RegistryScopes:        scopes,
			SignatureVerification: tsv,
			TrustStores:           storeRefs,
			TrustedIdentities:     c.TrustedIdentities,
		}},
	}
	if err := out.doc.Validate(); err != nil {
		// What notation-go refuses beyond the checks above (a malformed
		// x509.subject, a tsa store without a ca store, a bad scope).
		return nil, fmt.Errorf("trust policy: %w", err)
	}
	return out, nil
}

// policyName keeps the statement name within what Notation accepts; it only
// appears in notation-go's messages.
func policyName(name string) string {
	if name == "" {
		return "trustgate"
	}
	return name
}

func joinTypes(ts []trustpolicy.ValidationType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// loadCerts reads PEM certificates inline or from a file.
func loadCerts(baseDir, s string) ([]*x509.Certificate, error) {
	data := []byte(s)
	if !isInlinePEM(s) {
		b, err := os.ReadFile(verify.ResolvePath(baseDir, s))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s, err)
		}
		data = b
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q: want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return certs, nil
}

// checkStoreCert applies the rules of notation's file trust store: CA
// certificates (or self-signed ones) only, and TSA roots must be self-signed
// CAs.
func checkStoreCert(typ string, c *x509.Certificate) error {
	selfSigned := c.CheckSignatureFrom(c) == nil && c.Subject.String() == c.Issuer.String()
	if typ == "tsa" {
		if !(c.IsCA && c.BasicConstraintsValid && selfSigned) {
			return fmt.Errorf("a tsa trust store holds self-signed root CA certificates only")
		}
		return nil
	}
	if !(c.IsCA && c.BasicConstraintsValid) && !selfSigned {
		return fmt.Errorf("not a CA certificate and not self-signed")
	}
	return nil
}
