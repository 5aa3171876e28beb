// Package cosign implements the "cosign" verifier: Sigstore signatures on an
// image digest, made with keys (k of n) or keyless (Fulcio certificates for
// listed identities, checked against a trusted_root.json), in both formats
// cosign writes: Sigstore bundles (OCI referrers API or the `sha256-<hex>`
// tag index) and legacy `sha256-<hex>.sig` simple-signing images.
//
// Library choice: the cryptographic checks are sigstore-go's
// (pkg/verify.Verifier: signatures, DSSE, certificate chains at the
// observed time, Rekor SETs and inclusion proofs, RFC 3161 timestamps,
// SCTs, identity policy); fetching is a few bounded GETs over
// go-containerregistry's authenticated transport, which trustgate already
// uses. cosign's pkg/cosign would do both, but it pulls in cosign's whole
// dependency tree (Rekor and Fulcio clients, TUF, OCI layout, KMS
// plumbing): the trustgate binary would grow by tens of MiB, and its
// GetBundles / VerifyImageSignatures would decide which hosts to contact
// and how much to read. sigstore-go v1.3.0 with ggcr costs far less (see
// BENCHMARKS.md for the measured sizes) and leaves the bounds here. Legacy
// signatures are presented to sigstore-go as a SignedEntity (legacy.go), so
// both formats go through the same verifier.
//
// Only signatures count: a bundle must be a DSSE in-toto statement whose
// predicateType is cosign's sign predicate, and a legacy payload must be a
// "cosign container image signature" for the digest judged. Attestations
// signed by the same key do not make an image signed.
package cosign

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Type is the verifier type name used in policies.
const Type = "cosign"

// DefaultRequestTimeout bounds one registry request when Deps sets none.
const DefaultRequestTimeout = 5 * time.Second

// Verifier checks cosign signatures of image digests.
type Verifier struct {
	name     string
	s        *settings
	base     http.RoundTripper
	timeout  time.Duration
	perKey   []*sgverify.Verifier // keys mode: one per configured key
	keyless  *sgverify.Verifier
	idPolicy []sgverify.PolicyOption
	pings    pings
	noRefs   noReferrers
}

// New builds a verifier from a decoded configuration.
func New(name string, cfg Config, deps verify.Deps) (*Verifier, error) {
	s, err := cfg.check(deps.BaseDir)
	if err != nil {
		return nil, fmt.Errorf("cosign %s: %w", name, err)
	}
	base := deps.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	if t, ok := base.(*http.Transport); ok {
		t = t.Clone()
		t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, 16)
		base = t
	}
	base = guardOrigins(base)
	v := &Verifier{name: name, s: s, base: base, timeout: deps.RequestTimeout}
	if v.timeout <= 0 {
		v.timeout = DefaultRequestTimeout
	}
	opts := s.verifierOptions(cfg.Keyless != nil)
	if cfg.Keyless != nil {
		if v.keyless, err = sgverify.NewVerifier(s.trusted, opts...); err != nil {
			return nil, fmt.Errorf("cosign %s: %w", name, err)
		}
		for _, id := range s.identities {
			v.idPolicy = append(v.idPolicy, sgverify.WithCertificateIdentity(id))
		}
		return v, nil
	}
	for _, k := range s.keys {
		// The key is the only public key this verifier knows, whatever hint
		// a signature names: hints are unsigned.
		km := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(k.verifier, time.Time{}, time.Time{}), nil
		})
		var tm root.TrustedMaterial = km
		if s.trusted != nil {
			tm = root.TrustedMaterialCollection{km, s.trusted}
		}
		sv, err := sgverify.NewVerifier(tm, opts...)
		if err != nil {
			return nil, fmt.Errorf("cosign %s: %w", name, err)
		}
		v.perKey = append(v.perKey, sv)
	}
	return v, nil
}

func (s *settings) verifierOptions(keyless bool) []sgverify.VerifierOption {
	var o []sgverify.VerifierOption
	if s.requireTlog {
		// The log's integrated time is also an observer timestamp at which
		// a short-lived certificate must have been valid.
		o = append(o, sgverify.WithTransparencyLog(1), sgverify.WithIntegratedTimestamps(1))
	}
	if s.requireTSA {
		o = append(o, sgverify.WithSignedTimestamps(1))
	}
	if keyless && s.requireSCT {
		o = append(o, sgverify.WithSignedCertificateTimestamps(1))
	}
	if !s.requireTlog && !s.requireTSA {
		if keyless {
			// No observed time: the certificate must be valid now, which a
			// 10-minute Fulcio certificate rarely is. Explicitly chosen.
			o = append(o, sgverify.WithCurrentTime())
		} else {
			o = append(o, sgverify.WithNoObserverTimestamps())
		}
	}
	return o
}

// Name returns the verifier's name from the policy.
func (v *Verifier) Name() string { return v.name }

// Type returns "cosign".
func (v *Verifier) Type() string { return Type }

// Verify judges s.Digest: it is trusted when the configured keys (threshold
// of them) or one allowed identity signed exactly that digest.
func (v *Verifier) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	if s.Digest == "" {
		return nil, fmt.Errorf("cosign %s: no digest to judge for %s: %w", v.name, s.Ref, verify.ErrUnavailable)
	}
	digestBytes, err := parseDigest(s.Digest)
	if err != nil {
		return nil, fmt.Errorf("cosign %s: %w: %w", v.name, err, verify.ErrUntrusted)
	}
	repo, err := v.signatureRepo(s)
	if err != nil {
		return nil, fmt.Errorf("cosign %s: %w: %w", v.name, err, verify.ErrUntrusted)
	}
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	c, err := openRepo(ctx, v.base, repo, s.Keychain, &v.pings)
	if err != nil {
		return nil, v.unavailable(err)
	}
	j := &judgement{v: v, digest: s.Digest, digestBytes: digestBytes, passed: map[int]string{}, judged: map[string]bool{}}

	reg := repo.RegistryStr()
	skipAPI := v.noRefs.known(reg, time.Now())
	d := c.discover(ctx, s.Digest, skipAPI)
	if d.api != nil {
		v.noRefs.set(reg, !*d.api)
	}
	if d.bundleErr != nil {
		return nil, v.unavailable(d.bundleErr)
	}
	// Bundles first (cosign v3's default), then legacy .sig signatures only
	// if the bundles were not enough: the common case fetches no legacy blob.
	if err := j.bundles(ctx, c, d.bundles); err != nil {
		return nil, v.unavailable(err)
	}
	if !j.done() {
		if err := j.legacy(ctx, c, d.legacy, d.legacyErr); err != nil {
			return nil, v.unavailable(err)
		}
	}
	if !j.done() && skipAPI {
		// Before saying no, ask the referrers API after all: the registry
		// may have gained one since, and then cosign writes no tag index.
		idx, ok, err := c.referrersAPI(ctx, s.Digest)
		if err != nil {
			return nil, v.unavailable(fmt.Errorf("referrers of %s: %w", s.Digest, err))
		}
		v.noRefs.set(reg, !ok)
		if ok {
			if err := j.bundles(ctx, c, bundleDescriptors(idx)); err != nil {
				return nil, v.unavailable(err)
			}
		}
	}
	if !j.done() {
		return nil, fmt.Errorf("cosign %s: %s: %w", v.name, j.why(), verify.ErrUntrusted)
	}
	signers := make([]string, 0, len(j.passed))
	for i := range len(v.perKey) + 1 {
		if sg, ok := j.passed[i]; ok {
			signers = append(signers, sg)
		}
	}
	reason := fmt.Sprintf("cosign signature by %s", strings.Join(signers, ", "))
	return &verify.Result{Digest: s.Digest, Signers: signers, Reason: reason}, nil
}

func (v *Verifier) unavailable(err error) error {
	return fmt.Errorf("cosign %s: %w: %w", v.name, err, verify.ErrUnavailable)
}

// signatureRepo is where the signatures of s live: the configured
// signature repository, else the image's own repository.
func (v *Verifier) signatureRepo(s verify.Subject) (name.Repository, error) {
	if v.s.sigRepo != nil {
		return *v.s.sigRepo, nil
	}
	r, err := name.NewRepository(s.Ref.Repository(), name.StrictValidation)
	if err != nil {
		return name.Repository{}, fmt.Errorf("repository of %s: %w", s.Ref, err)
	}
	return r, nil
}

func parseDigest(d string) ([]byte, error) {
	hx, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hx) != 64 {
		return nil, fmt.Errorf("digest %q: want sha256:<64 hex>", d)
	}
	b, err := hex.DecodeString(hx)
	if err != nil {
		return nil, fmt.Errorf("digest %q: %w", d, err)
	}
	return b, nil
}

// judgement accumulates what the signatures of one digest proved.
type judgement struct {
	v           *Verifier
	digest      string
	digestBytes []byte
	passed      map[int]string  // key index (or 0 for keyless) → signer
	judged      map[string]bool // bundle manifest digests already looked at
	seen        int
	rejects     []string
}

func (j *judgement) done() bool {
	if j.v.keyless != nil {
		return len(j.passed) > 0
	}
	return len(j.passed) >= j.v.s.threshold
}

func (j *judgement) reject(why string) {
	if len(j.rejects) < 4 {
		j.rejects = append(j.rejects, why)
	}
}

// why explains a deny in words a user can act on.
func (j *judgement) why() string {
	var b strings.Builder
	switch {
	case j.seen == 0:
		fmt.Fprintf(&b, "no cosign signature found for %s (sign it with `cosign sign … IMAGE@%s`)", j.digest, j.digest)
	case j.v.keyless != nil:
		fmt.Fprintf(&b, "none of %d signature(s) of %s is by an allowed identity (%s)", j.seen, j.digest, strings.Join(j.v.s.idNames, "; "))
	default:
		fmt.Fprintf(&b, "%d of the %d required key(s) signed %s (looked at %d signature(s))", len(j.passed), j.v.s.threshold, j.digest, j.seen)
	}
	if len(j.rejects) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(j.rejects, "; "))
	}
	return b.String()
}

// bundles fetches and judges bundles not judged before, until the
// requirement is met or the candidate bound is reached.
func (j *judgement) bundles(ctx context.Context, c *repoClient, ds []descriptor) error {
	for _, b := range ds {
		if j.done() || j.seen >= maxCandidates {
			return nil
		}
		if j.judged[b.Digest] {
			continue
		}
		j.judged[b.Digest] = true
		j.seen++
		bd, err := fetchBundle(ctx, c, b)
		if err != nil {
			if ctx.Err() != nil || !isContentError(err) {
				return err
			}
			j.reject(fmt.Sprintf("bundle %s: %v", short(b.Digest), err))
			continue
		}
		j.judgeBundle(b.Digest, bd)
	}
	return nil
}

// judgeBundle verifies one bundle against the keys not yet satisfied (or
// the keyless policy).
func (j *judgement) judgeBundle(ref string, b *bundle.Bundle) {
	j.judge("bundle "+short(ref), b, func() sgverify.ArtifactPolicyOption {
		return sgverify.WithArtifactDigest("sha256", j.digestBytes)
	}, checkSignStatement)
}

// judge runs sigstore-go on entity and records what passed. artifact makes
// a fresh policy option per attempt: an artifact reader is consumed by the
// first key tried.
func (j *judgement) judge(what string, entity sgverify.SignedEntity, artifact func() sgverify.ArtifactPolicyOption, check func(*sgverify.VerificationResult) error) {
	if j.v.keyless != nil {
		res, err := j.v.keyless.Verify(entity, sgverify.NewPolicy(artifact(), j.v.idPolicy...))
		if err == nil {
			err = check(res)
		}
		if err != nil {
			j.reject(fmt.Sprintf("%s: %v", what, err))
			return
		}
		j.passed[0] = signerName(res)
		return
	}
	var errs []string
	for i, sv := range j.v.perKey {
		if _, ok := j.passed[i]; ok {
			continue
		}
		res, err := sv.Verify(entity, sgverify.NewPolicy(artifact(), sgverify.WithKey()))
		if err == nil {
			err = check(res)
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		j.passed[i] = "key " + j.v.s.keys[i].id
		return // one signature proves one key
	}
	if len(errs) > 0 {
		j.reject(fmt.Sprintf("%s: %s", what, firstDistinct(errs)))
	}
}

func firstDistinct(errs []string) string {
	slices.Sort(errs)
	errs = slices.Compact(errs)
	if len(errs) == 1 {
		return errs[0]
	}
	return errs[0] + fmt.Sprintf(" (and %d other errors)", len(errs)-1)
}

func signerName(res *sgverify.VerificationResult) string {
	if res.Signature != nil && res.Signature.Certificate != nil {
		c := res.Signature.Certificate
		return c.SubjectAlternativeName + " (" + c.Issuer + ")"
	}
	return "certificate"
}

// checkSignStatement accepts only cosign's image-signature statement:
// `cosign attest` bundles verify with the same key and must not count.
func checkSignStatement(res *sgverify.VerificationResult) error {
	if res.Statement == nil {
		return errors.New("not a DSSE statement (cosign signs images with one)")
	}
	if pt := res.Statement.GetPredicateType(); pt != signPredicateType {
		return fmt.Errorf("an attestation (predicateType %s), not a signature", pt)
	}
	return nil
}

// contentError marks a signature artifact that is malformed: it counts as
// a rejected signature, not as an outage.
type contentError struct{ err error }

func (e *contentError) Error() string { return e.err.Error() }
func (e *contentError) Unwrap() error { return e.err }

func isContentError(err error) bool {
	var ce *contentError
	return errors.As(err, &ce) || errors.Is(err, errNotFound)
}

func fetchBundle(ctx context.Context, c *repoClient, d descriptor) (*bundle.Bundle, error) {
	m, err := c.manifest(ctx, d.Digest, ociManifest)
	if err != nil {
		return nil, err
	}
	var layer *descriptor
	for i := range m.Layers {
		if strings.HasPrefix(m.Layers[i].MediaType, bundleMediaTypePrefix) {
			layer = &m.Layers[i]
			break
		}
	}
	if layer == nil {
		return nil, &contentError{errors.New("no bundle layer")}
	}
	raw, err := c.blob(ctx, *layer)
	if err != nil {
		return nil, err
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, &contentError{fmt.Errorf("parse bundle: %w", err)}
	}
	return &b, nil
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
