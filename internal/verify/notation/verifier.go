package notation

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/notaryproject/notation-core-go/revocation"
	corecrl "github.com/notaryproject/notation-core-go/revocation/crl"
	"github.com/notaryproject/notation-core-go/revocation/purpose"
	revocationresult "github.com/notaryproject/notation-core-go/revocation/result"
	"github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	notationgo "github.com/notaryproject/notation-go"
	nregistry "github.com/notaryproject/notation-go/registry"
	nverifier "github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// DefaultRequestTimeout bounds one registry, CRL or OCSP request when the
// policy sets no requestTimeout.
const DefaultRequestTimeout = 5 * time.Second

// payloadContentType is the only payload Notation signs for OCI artifacts.
const payloadContentType = "application/vnd.cncf.notary.payload.v1+json"

// maxRepos bounds the remembered repositories (each knows whether its
// registry serves the referrers API and holds its auth tokens).
const maxRepos = 4096

// Verifier verifies Notation signatures of one trust configuration.
type Verifier struct {
	name   string
	cfg    *compiled
	nv     notationgo.Verifier
	http   *http.Client
	logger *slog.Logger

	mu    sync.Mutex
	repos map[string]*remote.Repository // credential key | repository
	// referrersAPI remembers, per registry host, whether it serves the
	// referrers API: a new repository on a known registry then costs no
	// probe (a registry's capability does not depend on the repository).
	referrersAPI map[string]bool
}

var _ verify.Verifier = (*Verifier)(nil)

// New builds a verifier from its configuration block.
func New(name string, cfg *Config, deps verify.Deps) (*Verifier, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c, err := cfg.compile(name, deps.BaseDir)
	if err != nil {
		return nil, err
	}
	timeout := deps.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	base, err := verify.NewHTTPClient(deps.Transport, nil)
	if err != nil {
		return nil, err
	}
	// Blob downloads may be redirected to the registry's storage host (ACR
	// to Azure blob storage); the envelope is checked against its digest.
	// Everything else stays on the registry's origin.
	regClient := &http.Client{Transport: guard{base: base.Transport}, CheckRedirect: verify.CheckBlobRedirect, Timeout: timeout}
	// CRL and OCSP requests go to the URLs of certificates that already
	// chained to the trust store: the trusted CA's endpoints.
	revClient := &http.Client{Transport: base.Transport, CheckRedirect: base.CheckRedirect, Timeout: timeout}
	fetcher, err := corecrl.NewHTTPFetcher(revClient)
	if err != nil {
		return nil, err
	}
	fetcher.Cache = &crlCache{}
	fetcher.DiscardCacheError = true
	codeSigning, err := revocation.NewWithOptions(revocation.Options{OCSPHTTPClient: revClient, CRLFetcher: fetcher, CertChainPurpose: purpose.CodeSigning})
	if err != nil {
		return nil, err
	}
	timestamping, err := revocation.NewWithOptions(revocation.Options{OCSPHTTPClient: revClient, CRLFetcher: fetcher, CertChainPurpose: purpose.Timestamping})
	if err != nil {
		return nil, err
	}
	nv, err := nverifier.NewWithOptions(c.doc, memStore(c.stores), nil, nverifier.VerifierOptions{
		RevocationCodeSigningValidator:  recording{codeSigning},
		RevocationTimestampingValidator: recording{timestamping},
	})
	if err != nil {
		return nil, err
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Verifier{name: name, cfg: c, nv: nv, http: regClient, logger: logger, repos: map[string]*remote.Repository{}, referrersAPI: map[string]bool{}}, nil
}

// Name is the verifier's policy name.
func (v *Verifier) Name() string { return v.name }

// Type is "notation".
func (v *Verifier) Type() string { return Type }

// Verify judges the subject's digest: some Notation signature that refers to
// it must pass the trust policy.
func (v *Verifier) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	dgst := s.Digest
	if dgst == "" {
		dgst = s.Ref.Digest()
	}
	if dgst == "" {
		// The engine resolves the digest for schemes that do not bind tags;
		// judging "whatever the tag means now" would verify one digest and
		// run another.
		return nil, fmt.Errorf("notation: %s: no digest to judge: %w", s.Ref, verify.ErrUnavailable)
	}
	d, err := digest.Parse(dgst)
	if err != nil {
		return nil, fmt.Errorf("notation: digest %q: %v: %w", dgst, err, verify.ErrUntrusted)
	}
	artifactRef := s.Ref.Repository() + "@" + d.String()
	if !v.cfg.inScope(s.Ref.Repository()) {
		return nil, fmt.Errorf("notation: %s is outside registryScopes: %w", s.Ref.Repository(), verify.ErrUntrusted)
	}
	if v.cfg.level.Name == trustpolicy.LevelSkip.Name {
		return &verify.Result{Digest: d.String(), Reason: "notation: verification level skip: signatures not checked"}, nil
	}

	b := &budget{host: orasHost(s.Ref.Registry())}
	ctx = context.WithValue(ctx, budgetKey{}, b)
	repo, err := v.repository(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("notation: %s: %v: %w", s.Ref, err, verify.ErrUnavailable)
	}
	sigs, more, err := v.listSignatures(ctx, repo, d)
	if err != nil {
		return nil, fmt.Errorf("notation: list signatures of %s: %v: %w", artifactRef, err, verify.ErrUnavailable)
	}
	if len(sigs) == 0 {
		return nil, fmt.Errorf("notation: no Notation signature refers to %s: %w", artifactRef, verify.ErrUntrusted)
	}
	var failures []error
	unavailable := false
	for _, desc := range sigs {
		res, err := v.verifyOne(ctx, repo, d, artifactRef, desc)
		if err == nil {
			return res, nil
		}
		if errors.Is(err, verify.ErrUnavailable) {
			unavailable = true
		}
		v.logger.Debug("notation signature not accepted", "verifier", v.name, "image", artifactRef, "signature", desc.Digest.String(), "err", err)
		failures = append(failures, err)
		if ctx.Err() != nil {
			break
		}
	}
	why := joinReasons(failures)
	if more {
		why += fmt.Sprintf(" (only the first %d signatures were tried: maxSignatures)", len(sigs))
	}
	if unavailable {
		return nil, fmt.Errorf("notation: %s: %s: %w", artifactRef, why, verify.ErrUnavailable)
	}
	return nil, fmt.Errorf("notation: %s: no signature passed: %s: %w", artifactRef, why, verify.ErrUntrusted)
}

// repository returns the remembered repository for the subject's
// credentials (it keeps auth tokens and what oras learned about the
// registry's referrers API).
func (v *Verifier) repository(ctx context.Context, s verify.Subject) (*remote.Repository, error) {
	cred, err := resolveCredential(ctx, s.Keychain, s.Ref)
	if err != nil {
		return nil, err
	}
	key := credentialKey(s.Ref.Registry(), cred) + "|" + s.Ref.Repository()
	v.mu.Lock()
	defer v.mu.Unlock()
	if r, ok := v.repos[key]; ok {
		return r, nil
	}
	if len(v.repos) >= maxRepos {
		for k := range v.repos {
			delete(v.repos, k)
			break
		}
	}
	r := v.newRepository(newAuthClient(v.http, s.Ref.Registry(), cred), registry.Reference{Registry: s.Ref.Registry(), Repository: s.Ref.Path()})
	if err := r.Reference.ValidateRepository(); err != nil {
		return nil, err
	}
	if capable, known := v.referrersAPI[s.Ref.Registry()]; known {
		_ = r.SetReferrersCapability(capable) // a new repository: cannot be set yet
	}
	v.repos[key] = r
	return r, nil
}

// learnReferrersAPI records whether host serves the referrers API.
func (v *Verifier) learnReferrersAPI(host string, capable bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.referrersAPI) >= maxRepos {
		clear(v.referrersAPI)
	}
	v.referrersAPI[host] = capable
}

func (v *Verifier) newRepository(client remote.Client, ref registry.Reference) *remote.Repository {
	return &remote.Repository{
		Client:           client,
		Reference:        ref,
		PlainHTTP:        plainHTTP(ref.Registry),
		MaxMetadataBytes: maxManifestBytes,
		SkipReferrersGC:  true,
	}
}

// errEnough stops listing once maxSignatures+1 signatures are known.
var errEnough = errors.New("enough signatures")

// listSignatures returns up to maxSignatures Notation signature manifests
// referring to d (referrers API, else the sha256-<hex> tag index) and
// whether there were more. On a registry met before, the repository is told
// which of the two the registry speaks, so only the first verification per
// registry probes the referrers API (one request, answered 404 by registries
// without it). Probing both at once would save that round trip once per
// registry but cost a second token exchange on registries that use the
// token flow.
func (v *Verifier) listSignatures(ctx context.Context, repo *remote.Repository, d digest.Digest) ([]ocispec.Descriptor, bool, error) {
	sigs, more, settled, err := v.list(ctx, repo, d)
	if err != nil {
		return nil, false, err
	}
	v.mu.Lock()
	_, known := v.referrersAPI[repo.Reference.Registry]
	v.mu.Unlock()
	if !known && settled {
		// oras has now used the referrers API (supported) or fallen back
		// to the tag index (unsupported); setting the same value succeeds.
		v.learnReferrersAPI(repo.Reference.Registry, repo.SetReferrersCapability(true) == nil)
	}
	return sigs, more, nil
}

// list lists through repo as its referrers capability says.
// settled reports that the listing went through (so oras knows the
// registry's referrers capability).
func (v *Verifier) list(ctx context.Context, repo *remote.Repository, d digest.Digest) (sigs []ocispec.Descriptor, more, settled bool, err error) {
	var out []ocispec.Descriptor
	err = repo.Referrers(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d}, nregistry.ArtifactTypeNotation, func(page []ocispec.Descriptor) error {
		for _, desc := range page {
			// The tag index is written by anyone who can push; filter here
			// as well as in oras.
			if desc.ArtifactType != nregistry.ArtifactTypeNotation {
				continue
			}
			out = append(out, desc)
			if len(out) > v.cfg.maxSignatures {
				return errEnough
			}
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return out[:v.cfg.maxSignatures], true, true, nil
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, false, false, nil
	}
	return out, false, err == nil, err
}

// verifyOne fetches one signature and runs notation-go's checks on it.
func (v *Verifier) verifyOne(ctx context.Context, repo *remote.Repository, d digest.Digest, artifactRef string, desc ocispec.Descriptor) (*verify.Result, error) {
	sig := desc.Digest.String()
	blob, mediaType, subject, err := fetchEnvelope(ctx, repo, desc)
	if err != nil {
		return nil, fmt.Errorf("signature %s: %w", sig, err)
	}
	return v.check(ctx, d, artifactRef, sig, mediaType, blob, subject)
}

// check runs notation-go's checks on one envelope fetched for digest d.
// Envelope bytes come from the registry: a panic in parsing them is
// refused like any other bad signature instead of ending the process.
func (v *Verifier) check(ctx context.Context, d digest.Digest, artifactRef, sig, mediaType string, blob []byte, subject *ocispec.Descriptor) (res *verify.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("signature %s: envelope made the verifier panic (%v): %w", sig, p, verify.ErrUntrusted)
		}
	}()
	// The descriptor notation-go checks the signed payload against: the
	// signature manifest's subject, which the signer copied from the target
	// (its digest must be the one under judgement; its size and media type
	// are then what the signature must name, or notation-go refuses it).
	// Without a subject, the payload's own target, read before
	// verification only to choose the descriptor.
	var target ocispec.Descriptor
	if subject != nil {
		target = ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	} else if target, err = signedTarget(mediaType, blob); err != nil {
		return nil, fmt.Errorf("signature %s: %v: %w", sig, err, verify.ErrUntrusted)
	}
	if target.Digest != d {
		return nil, fmt.Errorf("signature %s signs %s, not %s: %w", sig, target.Digest, d, verify.ErrUntrusted)
	}
	rec := &revocationRecord{}
	outcome, err := v.nv.Verify(context.WithValue(ctx, recordKey{}, rec), target, blob, notationgo.VerifierVerifyOptions{
		ArtifactReference:  artifactRef,
		SignatureMediaType: mediaType,
	})
	if err != nil {
		if signed, ok := verifiedTarget(outcome); ok && !content.Equal(signed, target) {
			if signed.Digest != d {
				return nil, fmt.Errorf("signature %s signs %s, not %s: %w", sig, signed.Digest, d, verify.ErrUntrusted)
			}
			return nil, fmt.Errorf("signature %s names %s of %d bytes (%s), the registry's subject %d bytes (%s): %w", sig, d, signed.Size, signed.MediaType, target.Size, target.MediaType, verify.ErrUntrusted)
		}
		return nil, classify(ctx, sig, outcome, err, rec)
	}
	return result(d, mediaType, outcome), nil
}

// fetchEnvelope reads the signature manifest and its one envelope layer,
// both bounded and checked against their digests, and returns the envelope,
// its media type and the manifest's subject (nil when it has none).
func fetchEnvelope(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) (_ []byte, _ string, _ *ocispec.Descriptor, err error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, "", nil, fmt.Errorf("manifest media type %q is not an OCI image manifest: %w", desc.MediaType, verify.ErrUntrusted)
	}
	if desc.Size <= 0 || desc.Size > maxManifestBytes {
		return nil, "", nil, fmt.Errorf("manifest size %d is outside 1..%d: %w", desc.Size, maxManifestBytes, verify.ErrUntrusted)
	}
	raw, err := fetchAll(ctx, repo.Manifests(), desc)
	if err != nil {
		return nil, "", nil, fmt.Errorf("fetch manifest: %w", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, "", nil, fmt.Errorf("decode manifest: %v: %w", err, verify.ErrUntrusted)
	}
	if len(m.Layers) != 1 {
		return nil, "", nil, fmt.Errorf("manifest has %d layers, want one envelope: %w", len(m.Layers), verify.ErrUntrusted)
	}
	layer := m.Layers[0]
	if layer.MediaType != jws.MediaTypeEnvelope && layer.MediaType != cose.MediaTypeEnvelope {
		return nil, "", nil, fmt.Errorf("envelope media type %q is neither JWS nor COSE: %w", layer.MediaType, verify.ErrUntrusted)
	}
	if layer.Size <= 0 || layer.Size > maxEnvelopeBytes {
		return nil, "", nil, fmt.Errorf("envelope size %d is outside 1..%d: %w", layer.Size, maxEnvelopeBytes, verify.ErrUntrusted)
	}
	blob, err := fetchAll(ctx, repo.Blobs(), layer)
	if err != nil {
		return nil, "", nil, fmt.Errorf("fetch envelope: %w", err)
	}
	return blob, layer.MediaType, m.Subject, nil
}

type fetcher interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// fetchAll reads exactly desc.Size bytes and checks their digest. A missing
// object or bytes that do not match are a definite no; a transport failure
// could not complete.
func fetchAll(ctx context.Context, f fetcher, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return nil, fmt.Errorf("%v: %w", err, verify.ErrUntrusted)
		}
		return nil, fmt.Errorf("%v: %w", err, verify.ErrUnavailable)
	}
	defer rc.Close()
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%v: %w", err, verify.ErrUnavailable)
		}
		return nil, fmt.Errorf("%v: %w", err, verify.ErrUntrusted)
	}
	return b, nil
}

// verifiedTarget is the target descriptor of an envelope notation-go
// verified (its content is only set once integrity passed).
func verifiedTarget(o *notationgo.VerificationOutcome) (ocispec.Descriptor, bool) {
	if o == nil || o.EnvelopeContent == nil || o.Error == nil {
		return ocispec.Descriptor{}, false
	}
	for _, r := range o.VerificationResults {
		if r.Error != nil && r.Action == trustpolicy.ActionEnforce {
			return ocispec.Descriptor{}, false // failed for another reason
		}
	}
	var p struct {
		TargetArtifact ocispec.Descriptor `json:"targetArtifact"`
	}
	if json.Unmarshal(o.EnvelopeContent.Payload.Content, &p) != nil {
		return ocispec.Descriptor{}, false
	}
	t := p.TargetArtifact
	return ocispec.Descriptor{MediaType: t.MediaType, Digest: t.Digest, Size: t.Size}, true
}

// signedTarget reads the target descriptor from the envelope's payload,
// before verification: only to choose the descriptor notation-go then
// verifies the signature against.
func signedTarget(mediaType string, blob []byte) (ocispec.Descriptor, error) {
	env, err := signature.ParseEnvelope(mediaType, blob)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("parse envelope: %w", err)
	}
	c, err := env.Content()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read envelope: %w", err)
	}
	if c.Payload.ContentType != payloadContentType {
		return ocispec.Descriptor{}, fmt.Errorf("payload content type %q is not %s", c.Payload.ContentType, payloadContentType)
	}
	var p struct {
		TargetArtifact ocispec.Descriptor `json:"targetArtifact"`
	}
	if err := json.Unmarshal(c.Payload.Content, &p); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("decode payload: %w", err)
	}
	t := p.TargetArtifact
	if err := t.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("payload target digest: %w", err)
	}
	return ocispec.Descriptor{MediaType: t.MediaType, Digest: t.Digest, Size: t.Size}, nil
}

// classify turns notation-go's failure into trustgate's two answers: a
// definite no (bad signature, untrusted chain or identity, expired, revoked)
// or could not complete (revocation status unknown because a CRL or OCSP
// responder did not answer, cancelled context).
func classify(ctx context.Context, sig string, outcome *notationgo.VerificationOutcome, err error, rec *revocationRecord) error {
	if ctx.Err() != nil {
		return fmt.Errorf("signature %s: %v: %w", sig, ctx.Err(), verify.ErrUnavailable)
	}
	if outcome != nil {
		for _, r := range outcome.VerificationResults {
			if r.Error == nil || r.Action != trustpolicy.ActionEnforce {
				continue
			}
			if r.Type == trustpolicy.TypeRevocation {
				if rec.revoked() {
					return fmt.Errorf("signature %s: %v: %w", sig, r.Error, verify.ErrUntrusted)
				}
				return fmt.Errorf("signature %s: revocation could not be checked (%v; CRL/OCSP errors: %s): %w", sig, r.Error, rec.problems(), verify.ErrUnavailable)
			}
			return fmt.Errorf("signature %s: %s: %v: %w", sig, r.Type, r.Error, verify.ErrUntrusted)
		}
	}
	return fmt.Errorf("signature %s: %v: %w", sig, err, verify.ErrUntrusted)
}

// result records what a passing signature proved.
func result(d digest.Digest, mediaType string, o *notationgo.VerificationOutcome) *verify.Result {
	res := &verify.Result{Digest: d.String()}
	kind := "JWS"
	if mediaType == cose.MediaTypeEnvelope {
		kind = "COSE"
	}
	var logged []string
	for _, r := range o.VerificationResults {
		if r.Error != nil {
			logged = append(logged, fmt.Sprintf("%s (%s): %v", r.Type, r.Action, r.Error))
		}
	}
	var signer string
	if o.EnvelopeContent != nil {
		si := o.EnvelopeContent.SignerInfo
		if len(si.CertificateChain) > 0 {
			signer = si.CertificateChain[0].Subject.String()
			res.Signers = []string{signer}
		}
		res.Expires = expires(si, time.Now())
	}
	res.Reason = fmt.Sprintf("notation: %s signature by %q, level %s", kind, signer, o.VerificationLevel.Name)
	if len(logged) > 0 {
		res.Reason += "; not enforced: " + strings.Join(logged, "; ")
	}
	return res
}

// expires bounds a passing result: the signature's own expiry, and the
// earliest certificate expiry of the chain while it is still ahead (once
// passed, only a timestamp countersignature kept the signature valid, and
// that does not expire).
func expires(si signature.SignerInfo, now time.Time) time.Time {
	var e time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (e.IsZero() || t.Before(e)) {
			e = t
		}
	}
	earlier(si.SignedAttributes.Expiry)
	for _, c := range si.CertificateChain {
		if c.NotAfter.After(now) {
			earlier(c.NotAfter)
		}
	}
	return e
}

func joinReasons(errs []error) string {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = strings.TrimSuffix(strings.TrimSuffix(e.Error(), ": "+verify.ErrUntrusted.Error()), ": "+verify.ErrUnavailable.Error())
	}
	return strings.Join(s, "; ")
}

// memStore is notation-go's X509TrustStore over the certificates parsed at
// construction: no file is read per verification.
type memStore map[string][]*x509.Certificate

func (m memStore) GetCertificates(_ context.Context, typ truststore.Type, named string) ([]*x509.Certificate, error) {
	certs := m[string(typ)]
	if named != storeName || len(certs) == 0 {
		return nil, truststore.TrustStoreError{Msg: fmt.Sprintf("the trust store %q of type %q does not exist", named, typ)}
	}
	return slices.Clone(certs), nil
}

// recordKey carries a revocationRecord through notation-go to the
// revocation validators.
type recordKey struct{}

// revocationRecord keeps the certificate results of one signature's
// revocation checks: notation-go reduces them to a message, and "revoked"
// (a definite no) must not be confused with "unknown" (could not check).
type revocationRecord struct {
	mu      sync.Mutex
	results []*revocationresult.CertRevocationResult
	errs    []error
}

func (r *revocationRecord) revoked() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.results {
		if c != nil && c.Result == revocationresult.ResultRevoked {
			return true
		}
	}
	return false
}

func (r *revocationRecord) problems() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.errs {
		out = append(out, e.Error())
	}
	for _, c := range r.results {
		if c == nil {
			continue
		}
		for _, sr := range c.ServerResults {
			if sr != nil && sr.Error != nil {
				out = append(out, sr.Error.Error())
			}
		}
	}
	if len(out) == 0 {
		return "none reported"
	}
	return strings.Join(out, "; ")
}

// recording wraps a revocation validator to fill the revocationRecord.
type recording struct{ inner revocation.Validator }

func (v recording) ValidateContext(ctx context.Context, opts revocation.ValidateContextOptions) ([]*revocationresult.CertRevocationResult, error) {
	if !revocable(opts.CertChain) {
		// No certificate names an OCSP responder or a CRL: every one is
		// non-revocable, which is what the inner validator would answer
		// after validating the chain a third time (integrity and
		// authenticity, which run first, already did).
		out := make([]*revocationresult.CertRevocationResult, len(opts.CertChain))
		for i := range out {
			out[i] = &revocationresult.CertRevocationResult{
				Result:        revocationresult.ResultNonRevokable,
				ServerResults: []*revocationresult.ServerResult{{Result: revocationresult.ResultNonRevokable}},
			}
		}
		return out, nil
	}
	res, err := v.inner.ValidateContext(ctx, opts)
	if rec, ok := ctx.Value(recordKey{}).(*revocationRecord); ok {
		rec.mu.Lock()
		rec.results = append(rec.results, res...)
		if err != nil {
			rec.errs = append(rec.errs, err)
		}
		rec.mu.Unlock()
	}
	return res, err
}

func revocable(chain []*x509.Certificate) bool {
	for _, c := range chain {
		if len(c.OCSPServer) > 0 || len(c.CRLDistributionPoints) > 0 {
			return true
		}
	}
	return false
}

// maxCRLs bounds the CRL cache.
const maxCRLs = 256

// crlCache keeps fetched CRLs in memory; the fetcher uses one until its
// NextUpdate.
type crlCache struct {
	mu sync.Mutex
	m  map[string]*corecrl.Bundle
}

func (c *crlCache) Get(_ context.Context, url string) (*corecrl.Bundle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[url]; ok {
		return b, nil
	}
	return nil, corecrl.ErrCacheMiss
}

func (c *crlCache) Set(_ context.Context, url string, b *corecrl.Bundle) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*corecrl.Bundle{}
	}
	if len(c.m) >= maxCRLs {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[url] = b
	return nil
}
