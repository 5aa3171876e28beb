package cosign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Config is the `cosign:` block of a policy verifier. Exactly one of Keys
// and Keyless is set.
type Config struct {
	// Keys are PEM public keys (ECDSA P-256/P-384/P-521, Ed25519, RSA), each
	// inline or a file path relative to the policy's folder.
	Keys []string `json:"keys,omitempty"`
	// Threshold is how many distinct Keys must have signed the digest
	// (default 1, at most len(Keys)).
	Threshold int `json:"threshold,omitempty"`
	// Keyless trusts Fulcio certificates issued to the listed identities.
	Keyless *KeylessConfig `json:"keyless,omitempty"`
	// TrustedRoot is a Sigstore trusted_root.json (Fulcio CAs, Rekor logs,
	// timestamp authorities); required for keyless, and for keys when the
	// transparency log or a signed timestamp is required. Never fetched.
	TrustedRoot string `json:"trustedRoot,omitempty"`
	// TransparencyLog is "required" or "ignore": whether a signature must
	// carry a Rekor entry verified against TrustedRoot. Default: required
	// for keyless, ignore for keys.
	TransparencyLog string `json:"transparencyLog,omitempty"`
	// SignedTimestamp is "required" or "ignore": whether a signature must
	// carry an RFC 3161 timestamp from a TrustedRoot timestamp authority.
	// Default: required for keyless, ignore for keys.
	SignedTimestamp string `json:"signedTimestamp,omitempty"`
	// CertificateTransparency is "required" or "ignore": whether a keyless
	// certificate must carry an SCT from a TrustedRoot CT log. Default:
	// required for keyless; not applicable to keys.
	CertificateTransparency string `json:"certificateTransparency,omitempty"`
	// SignatureRepository is where signatures are stored instead of the
	// image's own repository (cosign's COSIGN_REPOSITORY), e.g.
	// "registry.example.com/signatures".
	SignatureRepository string `json:"signatureRepository,omitempty"`
}

// KeylessConfig lists the certificate identities allowed to sign.
type KeylessConfig struct {
	Identities []Identity `json:"identities"`
}

// Identity is one allowed signer: an OIDC issuer and a certificate subject
// (SAN), each exact or a regular expression that must match the whole value.
type Identity struct {
	Issuer        string `json:"issuer,omitempty"`
	IssuerRegExp  string `json:"issuerRegExp,omitempty"`
	Subject       string `json:"subject,omitempty"`
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
	// GitHub optionally pins GitHub Actions workflow claims (exact values).
	GitHub *GitHubClaims `json:"github,omitempty"`
}

// GitHubClaims are the GitHub Actions claims Fulcio records in a certificate.
type GitHubClaims struct {
	WorkflowRepository string `json:"workflowRepository,omitempty"`
	WorkflowRef        string `json:"workflowRef,omitempty"`
	WorkflowTrigger    string `json:"workflowTrigger,omitempty"`
	WorkflowSHA        string `json:"workflowSHA,omitempty"`
	WorkflowName       string `json:"workflowName,omitempty"`
}

// Requirement values.
const (
	Required = "required"
	Ignore   = "ignore"
)

// Files lists the files the configuration reads, as written (relative ones
// resolve against Deps.BaseDir). Inline PEM keys are not files.
func (c *Config) Files() []string {
	var out []string
	for _, k := range c.Keys {
		if !isInlinePEM(k) {
			out = append(out, k)
		}
	}
	if c.TrustedRoot != "" {
		out = append(out, c.TrustedRoot)
	}
	return out
}

func isInlinePEM(s string) bool { return strings.Contains(s, "-----BEGIN") }

// trustKey is one configured public key.
type trustKey struct {
	id       string // "sha256:<hex of the DER SubjectPublicKeyInfo>"
	verifier signature.Verifier
}

// settings is a checked Config.
type settings struct {
	keys        []trustKey
	threshold   int
	identities  sgverify.CertificateIdentities
	idNames     []string
	trusted     root.TrustedMaterial // nil when no trustedRoot is configured
	requireTlog bool
	requireTSA  bool
	requireSCT  bool
	sigRepo     *name.Repository
}

// check validates c and loads what it references. Errors name the field.
func (c *Config) check(baseDir string) (*settings, error) {
	s := &settings{}
	switch {
	case len(c.Keys) == 0 && c.Keyless == nil:
		return nil, errors.New("keys or keyless: one is required")
	case len(c.Keys) > 0 && c.Keyless != nil:
		return nil, errors.New("keys and keyless: set only one (use two verifiers to accept both)")
	}
	keyless := c.Keyless != nil
	var err error
	if s.requireTlog, err = requirement("transparencyLog", c.TransparencyLog, keyless); err != nil {
		return nil, err
	}
	if s.requireTSA, err = requirement("signedTimestamp", c.SignedTimestamp, keyless); err != nil {
		return nil, err
	}
	if s.requireSCT, err = requirement("certificateTransparency", c.CertificateTransparency, keyless); err != nil {
		return nil, err
	}
	if !keyless && c.CertificateTransparency != "" {
		return nil, errors.New("certificateTransparency: only meaningful with keyless")
	}
	if c.TrustedRoot != "" {
		data, err := os.ReadFile(verify.ResolvePath(baseDir, c.TrustedRoot))
		if err != nil {
			return nil, fmt.Errorf("trustedRoot: %w", err)
		}
		tr, err := root.NewTrustedRootFromJSON(data)
		if err != nil {
			return nil, fmt.Errorf("trustedRoot: %s: %w", c.TrustedRoot, err)
		}
		s.trusted = tr
	}
	if (keyless || s.requireTlog || s.requireTSA) && s.trusted == nil {
		why := "keyless verification"
		if !keyless {
			why = "a required transparency log or signed timestamp"
		}
		return nil, fmt.Errorf("trustedRoot: required for %s", why)
	}
	if c.SignatureRepository != "" {
		r, err := name.NewRepository(c.SignatureRepository, name.StrictValidation)
		if err != nil {
			return nil, fmt.Errorf("signatureRepository: %w", err)
		}
		if r.RegistryStr() == name.DefaultRegistry && !strings.HasPrefix(c.SignatureRepository, name.DefaultRegistry) &&
			!strings.HasPrefix(c.SignatureRepository, "docker.io/") {
			// "team/sigs" would silently mean Docker Hub: ask for the host.
			return nil, fmt.Errorf("signatureRepository: %q must start with its registry host", c.SignatureRepository)
		}
		s.sigRepo = &r
	}
	if keyless {
		if c.Threshold != 0 {
			return nil, errors.New("threshold: only meaningful with keys")
		}
		if len(c.Keyless.Identities) == 0 {
			return nil, errors.New("keyless.identities: at least one identity is required")
		}
		for i, id := range c.Keyless.Identities {
			ci, err := id.compile()
			if err != nil {
				return nil, fmt.Errorf("keyless.identities[%d]: %w", i, err)
			}
			s.identities = append(s.identities, ci)
			s.idNames = append(s.idNames, id.String())
		}
		return s, nil
	}
	seen := map[string]bool{}
	for i, k := range c.Keys {
		tk, err := loadKey(baseDir, k)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		if seen[tk.id] {
			// A key listed twice would count twice towards the threshold.
			return nil, fmt.Errorf("keys[%d]: the same key as an earlier entry (%s)", i, tk.id)
		}
		seen[tk.id] = true
		s.keys = append(s.keys, tk)
	}
	s.threshold = c.Threshold
	if s.threshold == 0 {
		s.threshold = 1
	}
	if s.threshold < 1 || s.threshold > len(s.keys) {
		return nil, fmt.Errorf("threshold: %d, want 1 to %d (the number of keys)", c.Threshold, len(s.keys))
	}
	return s, nil
}

func requirement(field, v string, keyless bool) (bool, error) {
	switch v {
	case "":
		return keyless, nil
	case Required:
		return true, nil
	case Ignore:
		return false, nil
	}
	return false, fmt.Errorf("%s: %q, want %q or %q", field, v, Required, Ignore)
}

// anchored compiles re so that it must match the whole value: cosign's
// --certificate-identity-regexp is unanchored, so '.*@example\.com' accepts
// dev@example.com.evil.test there; not here.
func anchored(field, re string) (*regexp.Regexp, error) {
	r, err := regexp.Compile(`^(?:` + re + `)$`)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return r, nil
}

func (id Identity) compile() (sgverify.CertificateIdentity, error) {
	var zero sgverify.CertificateIdentity
	var san sgverify.SubjectAlternativeNameMatcher
	var iss sgverify.IssuerMatcher
	switch {
	case (id.Subject == "") == (id.SubjectRegExp == ""):
		return zero, errors.New("subject or subjectRegExp: set exactly one")
	case (id.Issuer == "") == (id.IssuerRegExp == ""):
		return zero, errors.New("issuer or issuerRegExp: set exactly one")
	}
	san.SubjectAlternativeName = id.Subject
	if id.SubjectRegExp != "" {
		r, err := anchored("subjectRegExp", id.SubjectRegExp)
		if err != nil {
			return zero, err
		}
		san.Regexp = *r
	}
	iss.Issuer = id.Issuer
	if id.IssuerRegExp != "" {
		r, err := anchored("issuerRegExp", id.IssuerRegExp)
		if err != nil {
			return zero, err
		}
		iss.Regexp = *r
	}
	var ext certificate.Extensions
	if g := id.GitHub; g != nil {
		if *g == (GitHubClaims{}) {
			return zero, errors.New("github: name at least one claim")
		}
		ext.GithubWorkflowRepository = g.WorkflowRepository
		ext.GithubWorkflowRef = g.WorkflowRef
		ext.GithubWorkflowTrigger = g.WorkflowTrigger
		ext.GithubWorkflowSHA = g.WorkflowSHA
		ext.GithubWorkflowName = g.WorkflowName
	}
	return sgverify.NewCertificateIdentity(san, iss, ext)
}

// String names the identity for Result.Signers and messages.
func (id Identity) String() string {
	sub, iss := id.Subject, id.Issuer
	if sub == "" {
		sub = "~" + id.SubjectRegExp
	}
	if iss == "" {
		iss = "~" + id.IssuerRegExp
	}
	return sub + " (" + iss + ")"
}

// loadKey reads one inline or file PEM public key and builds its verifier
// with the hash cosign signs that key type with (P-384 uses SHA-384:
// a SHA-256 verifier would refuse every P-384 signature).
func loadKey(baseDir, k string) (trustKey, error) {
	data := []byte(k)
	if !isInlinePEM(k) {
		var err error
		if data, err = os.ReadFile(verify.ResolvePath(baseDir, k)); err != nil {
			return trustKey{}, err
		}
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return trustKey{}, errors.New("no PEM block")
	}
	if b2, _ := pem.Decode(rest); b2 != nil {
		return trustKey{}, errors.New("more than one PEM block: list each key separately")
	}
	var pub crypto.PublicKey
	switch block.Type {
	case "PUBLIC KEY":
		p, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return trustKey{}, fmt.Errorf("parse public key: %w", err)
		}
		pub = p
	case "CERTIFICATE":
		// A certificate here is just a carrier for its key; its validity
		// and chain are not checked (use keyless for certificate trust).
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return trustKey{}, fmt.Errorf("parse certificate: %w", err)
		}
		pub = c.PublicKey
	default:
		return trustKey{}, fmt.Errorf("PEM block %q: want PUBLIC KEY", block.Type)
	}
	var h crypto.Hash
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		switch p.Curve {
		case elliptic.P256():
			h = crypto.SHA256
		case elliptic.P384():
			h = crypto.SHA384
		case elliptic.P521():
			h = crypto.SHA512
		default:
			return trustKey{}, fmt.Errorf("unsupported ECDSA curve %s", p.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return trustKey{}, fmt.Errorf("RSA key of %d bits: want at least 2048", p.N.BitLen())
		}
		h = crypto.SHA256
	case ed25519.PublicKey:
		h = crypto.Hash(0)
	default:
		return trustKey{}, fmt.Errorf("unsupported key type %T", pub)
	}
	v, err := signature.LoadVerifierWithOpts(pub, options.WithHash(h))
	if err != nil {
		return trustKey{}, fmt.Errorf("load verifier: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return trustKey{}, err
	}
	sum := sha256.Sum256(der)
	return trustKey{id: "sha256:" + hex.EncodeToString(sum[:]), verifier: v}, nil
}
