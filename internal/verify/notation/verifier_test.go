package notation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notation"
	harness "github.com/trustgate-dev/trustgate/test/harness/notation"
)

// pki is the trust material of one test: a trusted CA with a leaf, a CA
// nobody trusts, and a CRL server for the trusted CA.
type pki struct {
	ca, other *harness.CA
	leaf      *harness.Leaf // C=US, ST=WA, O=acme, CN=release
	crl       *harness.CRLServer
}

var (
	pkiOnce sync.Once
	shared  pki
	pkiErr  error
)

func testPKI(t *testing.T) pki {
	t.Helper()
	pkiOnce.Do(func() {
		if shared.ca, pkiErr = harness.NewCA(harness.Subject("acme", "acme root")); pkiErr != nil {
			return
		}
		if shared.other, pkiErr = harness.NewCA(harness.Subject("evil", "evil root")); pkiErr != nil {
			return
		}
		shared.leaf, pkiErr = shared.ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return shared
}

func newVerifier(t *testing.T, cfg notation.Config) *notation.Verifier {
	t.Helper()
	v, err := notation.New("nv", &cfg, verify.Deps{RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func strictConfig(p pki) notation.Config {
	return notation.Config{
		TrustStores:       notation.TrustStores{CA: []string{p.ca.PEM()}},
		TrustedIdentities: []string{harness.Identity("acme", "release")},
	}
}

// image pushes a fresh image to reg and returns its repository and digest.
func image(t *testing.T, host, path string) (repo, digest string) {
	t.Helper()
	repo = host + "/" + path
	d, err := harness.PushRandomImage(context.Background(), repo, "v1")
	if err != nil {
		t.Fatal(err)
	}
	return repo, d
}

func sign(t *testing.T, leaf *harness.Leaf, repo, digest string, o harness.SignOptions) {
	t.Helper()
	if _, err := harness.Sign(context.Background(), leaf, repo, digest, o); err != nil {
		t.Fatal(err)
	}
}

func subject(t *testing.T, repo, digest string) verify.Subject {
	t.Helper()
	ref, err := imageref.Parse(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	return verify.Subject{Ref: ref, Digest: digest, Keychain: authn.DefaultKeychain}
}

func wantErr(t *testing.T, err error, sentinel error, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Verify passed, want an error wrapping %v containing %q", sentinel, contains)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("Verify = %v, want it to wrap %v", err, sentinel)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("Verify = %v, want it to contain %q", err, contains)
	}
}

// A signed image passes in both envelope formats, through the referrers API
// and through the tag index, with exactly the requests the signatures need.
func TestVerifySigned(t *testing.T) {
	p := testPKI(t)
	for _, tc := range []struct {
		name      string
		referrers bool
		mediaType string
		requests  int64 // a second verification of the same digest
	}{
		// referrers list, signature manifest, envelope
		{"JWS via referrers API", true, harness.JWS, 3},
		{"COSE via referrers API", true, harness.COSE, 3},
		// tag index, signature manifest, envelope
		{"JWS via tag index", false, harness.JWS, 3},
		{"COSE via tag index", false, harness.COSE, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := harness.StartReferrersRegistry()
			if !tc.referrers {
				reg = harness.StartTagSchemaRegistry()
			}
			defer reg.Close()
			repo, d := image(t, reg.Host(), "team/app")
			sign(t, p.leaf, repo, d, harness.SignOptions{MediaType: tc.mediaType})
			v := newVerifier(t, strictConfig(p))
			before := reg.Requests()
			res, err := v.Verify(context.Background(), subject(t, repo, d))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			cold := reg.Requests() - before
			wantCold := tc.requests
			if !tc.referrers {
				wantCold++ // first contact: the referrers API probe (404)
			}
			if cold != wantCold {
				t.Errorf("cold verification sent %d requests, want %d", cold, wantCold)
			}
			if res.Digest != d {
				t.Errorf("Digest = %s, want %s", res.Digest, d)
			}
			if len(res.Signers) != 1 || res.Signers[0] != p.leaf.Cert.Subject.String() {
				t.Errorf("Signers = %q, want [%q]", res.Signers, p.leaf.Cert.Subject.String())
			}
			if !res.Expires.Equal(p.leaf.Cert.NotAfter) {
				t.Errorf("Expires = %v, want the leaf's NotAfter %v", res.Expires, p.leaf.Cert.NotAfter)
			}
			kind := "JWS"
			if tc.mediaType == harness.COSE {
				kind = "COSE"
			}
			if !strings.Contains(res.Reason, kind) || !strings.Contains(res.Reason, "level strict") {
				t.Errorf("Reason = %q, want the envelope kind %s and the level", res.Reason, kind)
			}
			before = reg.Requests()
			if _, err := v.Verify(context.Background(), subject(t, repo, d)); err != nil {
				t.Fatalf("second Verify: %v", err)
			}
			if n := reg.Requests() - before; n != tc.requests {
				t.Errorf("second verification sent %d requests, want %d", n, tc.requests)
			}
		})
	}
}

// Every definite "no" is ErrUntrusted and says why.
func TestVerifyUntrusted(t *testing.T) {
	p := testPKI(t)
	reg := harness.NewReferrersRegistry(t)
	ctx := context.Background()

	otherLeaf, err := p.other.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	if err != nil {
		t.Fatal(err)
	}
	intern, err := p.ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "intern")})
	if err != nil {
		t.Fatal(err)
	}

	unsignedRepo, unsigned := image(t, reg.Host(), "t/unsigned")
	rootRepo, byOther := image(t, reg.Host(), "t/other-root")
	sign(t, otherLeaf, rootRepo, byOther, harness.SignOptions{})
	idRepo, byIntern := image(t, reg.Host(), "t/identity")
	sign(t, intern, idRepo, byIntern, harness.SignOptions{})

	// A valid signature for image A, attached to image B: the replay must
	// not count for B.
	replayRepo, a := image(t, reg.Host(), "t/replay")
	sign(t, p.leaf, replayRepo, a, harness.SignOptions{})
	env, envDesc, err := harness.Envelope(ctx, replayRepo, a)
	if err != nil {
		t.Fatal(err)
	}
	bd, err := harness.PushRandomImage(ctx, replayRepo, "b")
	if err != nil {
		t.Fatal(err)
	}
	bDesc, err := harness.Describe(ctx, replayRepo, bd)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.Attach(ctx, replayRepo, bDesc, envDesc.MediaType, env, false); err != nil {
		t.Fatal(err)
	}

	v := newVerifier(t, strictConfig(p))
	for _, tc := range []struct {
		name, repo, digest, want string
	}{
		{"unsigned", unsignedRepo, unsigned, "no Notation signature refers to"},
		{"untrusted root", rootRepo, byOther, "authenticity"},
		{"wrong identity", idRepo, byIntern, "trusted identities"},
		{"signature for another digest", replayRepo, bd, "signs " + a + ", not " + bd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(ctx, subject(t, tc.repo, tc.digest))
			wantErr(t, err, verify.ErrUntrusted, tc.want)
		})
	}
}

// strict, permissive and audit differ exactly as Notation defines them: an
// expired certificate fails strict and passes permissive (expiry is
// logged); an untrusted root fails strict and permissive and passes audit
// (authenticity is logged); integrity is never relaxed. Per-check
// overrides change one check.
func TestVerificationLevels(t *testing.T) {
	p := testPKI(t)
	reg := harness.NewReferrersRegistry(t)
	ctx := context.Background()

	short, err := p.ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release"), NotAfter: time.Now().Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	expRepo, expired := image(t, reg.Host(), "lv/expired")
	sign(t, short, expRepo, expired, harness.SignOptions{})
	sigExpRepo, sigExpired := image(t, reg.Host(), "lv/sig-expired")
	sign(t, p.leaf, sigExpRepo, sigExpired, harness.SignOptions{Expiry: time.Second})
	otherLeaf, err := p.other.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	if err != nil {
		t.Fatal(err)
	}
	rootRepo, byOther := image(t, reg.Host(), "lv/other-root")
	sign(t, otherLeaf, rootRepo, byOther, harness.SignOptions{})
	// The same kind of short-lived certificate, with an RFC 3161
	// countersignature from a local TSA proving the signing time.
	tsa, err := harness.NewTSA()
	if err != nil {
		t.Fatal(err)
	}
	otherTSA, err := harness.NewTSA()
	if err != nil {
		t.Fatal(err)
	}
	tsRepo, timestamped := image(t, reg.Host(), "lv/timestamped")
	for _, mt := range []string{harness.JWS, harness.COSE} {
		sign(t, short, tsRepo, timestamped, harness.SignOptions{MediaType: mt, Timestamper: tsa, TSARoots: tsa.Roots()})
	}
	if tsa.Calls() != 2 {
		t.Fatalf("the TSA issued %d timestamps, want 2", tsa.Calls())
	}
	// notation-go refuses to sign with an expired certificate: wait for it.
	time.Sleep(time.Until(short.Cert.NotAfter.Add(500 * time.Millisecond)))

	level := func(l string, override map[string]string) notation.Config {
		c := strictConfig(p)
		c.SignatureVerification = notation.SignatureVerification{Level: l, Override: override}
		return c
	}
	withTSA := func(root string, verifyTimestamp string) notation.Config {
		c := strictConfig(p)
		c.TrustStores.TSA = []string{root}
		c.SignatureVerification.VerifyTimestamp = verifyTimestamp
		return c
	}
	for _, tc := range []struct {
		name         string
		cfg          notation.Config
		repo, digest string
		want         string // "" = passes
		reason       string // on a pass, in Reason
	}{
		// Notation checks certificate validity under authenticTimestamp and
		// the signature's own expiry under expiry.
		{"strict, expired certificate", level("strict", nil), expRepo, expired, "authenticTimestamp", ""},
		{"permissive, expired certificate", level("permissive", nil), expRepo, expired, "", "authenticTimestamp (log)"},
		{"strict with authenticTimestamp overridden to log", level("strict", map[string]string{"authenticTimestamp": "log"}), expRepo, expired, "", "authenticTimestamp (log)"},
		{"strict with expiry overridden to log, expired signature", level("strict", map[string]string{"expiry": "log"}), sigExpRepo, sigExpired, "", "expiry (log)"},
		{"strict, expired signature", level("strict", nil), sigExpRepo, sigExpired, "expiry", ""},
		{"permissive, expired signature", level("permissive", nil), sigExpRepo, sigExpired, "", "expiry (log)"},
		{"strict, untrusted root", level("strict", nil), rootRepo, byOther, "authenticity", ""},
		{"permissive, untrusted root", level("permissive", nil), rootRepo, byOther, "authenticity", ""},
		{"audit, untrusted root", level("audit", nil), rootRepo, byOther, "", "authenticity (log)"},
		{"audit, expired certificate", level("audit", nil), expRepo, expired, "", "authenticTimestamp (log)"},
		// A trusted timestamp keeps a signature made while the certificate
		// was valid; both envelopes carry one (either may be tried first).
		{"strict, expired certificate, trusted timestamp", withTSA(tsa.RootPEM(), ""), tsRepo, timestamped, "", "level strict"},
		{"strict afterCertExpiry, expired certificate, trusted timestamp", withTSA(tsa.RootPEM(), "afterCertExpiry"), tsRepo, timestamped, "", "level strict"},
		{"strict, expired certificate, timestamp from an untrusted TSA", withTSA(otherTSA.RootPEM(), ""), tsRepo, timestamped, "authenticTimestamp", ""},
		{"strict, expired certificate, timestamp but no tsa store", level("strict", nil), tsRepo, timestamped, "authenticTimestamp", ""},
		{"strict, expired certificate without timestamp, tsa store", withTSA(tsa.RootPEM(), ""), expRepo, expired, "authenticTimestamp", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.cfg)
			res, err := v.Verify(ctx, subject(t, tc.repo, tc.digest))
			if tc.want != "" {
				wantErr(t, err, verify.ErrUntrusted, tc.want)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("Reason = %q, want it to name %q", res.Reason, tc.reason)
			}
		})
	}

	// skip never contacts the registry.
	v := newVerifier(t, notation.Config{SignatureVerification: notation.SignatureVerification{Level: "skip"}})
	before := reg.Requests()
	res, err := v.Verify(ctx, subject(t, expRepo, expired))
	if err != nil || !strings.Contains(res.Reason, "skip") {
		t.Fatalf("skip: %v, %v", res, err)
	}
	if n := reg.Requests() - before; n != 0 {
		t.Errorf("skip sent %d requests, want 0", n)
	}
}

// A revoked certificate is a definite no; a CRL that cannot be fetched is
// "could not complete" under strict, and only logged where revocation is
// set to log.
func TestRevocation(t *testing.T) {
	ca, err := harness.NewCA(harness.Subject("acme", "crl root"))
	if err != nil {
		t.Fatal(err)
	}
	crl := harness.StartCRLServer(ca)
	defer crl.Close()
	good, err := ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release"), CRLURL: crl.URL()})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release"), CRLURL: crl.URL()})
	if err != nil {
		t.Fatal(err)
	}
	reg := harness.NewReferrersRegistry(t)
	goodRepo, goodD := image(t, reg.Host(), "rv/good")
	sign(t, good, goodRepo, goodD, harness.SignOptions{})
	badRepo, badD := image(t, reg.Host(), "rv/revoked")
	sign(t, bad, badRepo, badD, harness.SignOptions{})
	ca.Revoke(bad.Cert)

	cfg := notation.Config{
		TrustStores:       notation.TrustStores{CA: []string{ca.PEM()}},
		TrustedIdentities: []string{"*"},
	}
	ctx := context.Background()
	v := newVerifier(t, cfg)
	if _, err := v.Verify(ctx, subject(t, goodRepo, goodD)); err != nil {
		t.Fatalf("not revoked: %v", err)
	}
	if crl.Requests() == 0 {
		t.Fatal("the CRL was never fetched: revocation was not checked")
	}
	_, err = v.Verify(ctx, subject(t, badRepo, badD))
	wantErr(t, err, verify.ErrUntrusted, "revoked")

	// A fresh verifier (empty CRL cache) with the distribution point down.
	crl.SetDown(true)
	_, err = newVerifier(t, cfg).Verify(ctx, subject(t, goodRepo, goodD))
	wantErr(t, err, verify.ErrUnavailable, "revocation could not be checked")

	cfg.SignatureVerification = notation.SignatureVerification{Level: "strict", Override: map[string]string{"revocation": "log"}}
	res, err := newVerifier(t, cfg).Verify(ctx, subject(t, goodRepo, goodD))
	if err != nil {
		t.Fatalf("revocation log, CRL down: %v", err)
	}
	if !strings.Contains(res.Reason, "revocation (log)") {
		t.Errorf("Reason = %q, want the unchecked revocation named", res.Reason)
	}
}

// Several signatures: a bad one does not hide a good one, and the bound
// stops the work.
func TestSeveralSignatures(t *testing.T) {
	p := testPKI(t)
	reg := harness.NewReferrersRegistry(t)
	otherLeaf, err := p.other.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	if err != nil {
		t.Fatal(err)
	}
	repo, d := image(t, reg.Host(), "ms/app")
	sign(t, otherLeaf, repo, d, harness.SignOptions{})
	sign(t, otherLeaf, repo, d, harness.SignOptions{MediaType: harness.COSE})
	sign(t, p.leaf, repo, d, harness.SignOptions{MediaType: harness.COSE})
	ctx := context.Background()
	if _, err := newVerifier(t, strictConfig(p)).Verify(ctx, subject(t, repo, d)); err != nil {
		t.Fatalf("three signatures, one good: %v", err)
	}

	repo2, d2 := image(t, reg.Host(), "ms/bad")
	for range 3 {
		sign(t, otherLeaf, repo2, d2, harness.SignOptions{})
	}
	cfg := strictConfig(p)
	cfg.MaxSignatures = 2
	before := reg.Requests()
	_, err = newVerifier(t, cfg).Verify(ctx, subject(t, repo2, d2))
	wantErr(t, err, verify.ErrUntrusted, "only the first 2 signatures were tried")
	// referrers list + 2 × (manifest + envelope)
	if n := reg.Requests() - before; n != 5 {
		t.Errorf("sent %d requests, want 5", n)
	}
}

// Failures to complete are ErrUnavailable, never a definite no.
func TestUnavailable(t *testing.T) {
	p := testPKI(t)
	reg := harness.StartReferrersRegistry()
	repo, d := image(t, reg.Host(), "down/app")
	reg.Close()
	v := newVerifier(t, strictConfig(p))
	ctx := context.Background()
	_, err := v.Verify(ctx, subject(t, repo, d))
	wantErr(t, err, verify.ErrUnavailable, "list signatures")

	// No digest to judge: the engine must resolve it first.
	ref, _ := imageref.Parse(repo + ":v1")
	_, err = v.Verify(ctx, verify.Subject{Ref: ref})
	wantErr(t, err, verify.ErrUnavailable, "no digest")

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	reg2 := harness.NewReferrersRegistry(t)
	repo2, d2 := image(t, reg2.Host(), "c/app")
	_, err = v.Verify(cctx, subject(t, repo2, d2))
	wantErr(t, err, verify.ErrUnavailable, "")
}

// registryScopes limit the verifier to named repositories.
func TestRegistryScopes(t *testing.T) {
	p := testPKI(t)
	reg := harness.NewReferrersRegistry(t)
	repo, d := image(t, reg.Host(), "scoped/app")
	sign(t, p.leaf, repo, d, harness.SignOptions{})
	cfg := strictConfig(p)
	cfg.RegistryScopes = []string{reg.Host() + "/scoped/other"}
	_, err := newVerifier(t, cfg).Verify(context.Background(), subject(t, repo, d))
	wantErr(t, err, verify.ErrUntrusted, "outside registryScopes")
	cfg.RegistryScopes = []string{repo}
	if _, err := newVerifier(t, cfg).Verify(context.Background(), subject(t, repo, d)); err != nil {
		t.Fatalf("in scope: %v", err)
	}
}

// Signature manifests without a subject (tag index only, as registries
// without OCI 1.1 manifests hold them): the target comes from the signed
// payload, and a replayed envelope is still refused.
func TestSignatureWithoutSubject(t *testing.T) {
	p := testPKI(t)
	ctx := context.Background()
	src := harness.NewReferrersRegistry(t)
	srcRepo, a := image(t, src.Host(), "ns/src")
	sign(t, p.leaf, srcRepo, a, harness.SignOptions{MediaType: harness.COSE})
	env, envDesc, err := harness.Envelope(ctx, srcRepo, a)
	if err != nil {
		t.Fatal(err)
	}

	reg := harness.NewTagSchemaRegistry(t)
	repo := reg.Host() + "/ns/app"
	// The same image content in the second registry: the same digest a.
	img, err := harness.PushRandomImage(ctx, repo, "other")
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.Copy(ctx, srcRepo+"@"+a, repo+":v1"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{a, img} {
		if err := harness.AttachWithoutSubject(ctx, repo, d, envDesc.MediaType, env); err != nil {
			t.Fatal(err)
		}
	}
	v := newVerifier(t, strictConfig(p))
	if _, err := v.Verify(ctx, subject(t, repo, a)); err != nil {
		t.Fatalf("signature without subject: %v", err)
	}
	_, err = v.Verify(ctx, subject(t, repo, img))
	wantErr(t, err, verify.ErrUntrusted, "signs "+a+", not "+img)
}

// One verifier serves concurrent admissions: shared repositories, tokens
// and referrers knowledge stay consistent (run with -race).
func TestConcurrentVerifications(t *testing.T) {
	p := testPKI(t)
	reg := harness.NewReferrersRegistry(t)
	reg.RequireBearerToken()
	ctx := context.Background()
	repo := reg.Host() + "/cc/app"
	var ds []string
	for i := range 8 {
		d, err := harness.PushRandomImage(ctx, repo, fmt.Sprint("v", i))
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			sign(t, p.leaf, repo, d, harness.SignOptions{})
		}
		ds = append(ds, d)
	}
	v := newVerifier(t, strictConfig(p))
	var wg sync.WaitGroup
	errs := make([]error, len(ds))
	for i, d := range ds {
		s := subject(t, repo, d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = v.Verify(ctx, s)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if signed := i%2 == 0; signed != (err == nil) {
			t.Errorf("image %d (signed %v): %v", i, signed, err)
		}
		if err != nil && !errors.Is(err, verify.ErrUntrusted) {
			t.Errorf("image %d: %v, want ErrUntrusted", i, err)
		}
	}
}

// OCSP: a good answer passes, a revoked one is a definite no, a responder
// that does not answer makes the check unavailable.
func TestRevocationOCSP(t *testing.T) {
	ca, err := harness.NewCA(harness.Subject("acme", "ocsp root"))
	if err != nil {
		t.Fatal(err)
	}
	responder := harness.StartOCSPServer(ca)
	defer responder.Close()
	good, err := ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release"), OCSPURL: responder.URL()})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release"), OCSPURL: responder.URL()})
	if err != nil {
		t.Fatal(err)
	}
	reg := harness.NewReferrersRegistry(t)
	goodRepo, goodD := image(t, reg.Host(), "ocsp/good")
	sign(t, good, goodRepo, goodD, harness.SignOptions{})
	badRepo, badD := image(t, reg.Host(), "ocsp/revoked")
	sign(t, bad, badRepo, badD, harness.SignOptions{MediaType: harness.COSE})
	ca.Revoke(bad.Cert)

	v := newVerifier(t, notation.Config{TrustStores: notation.TrustStores{CA: []string{ca.PEM()}}, TrustedIdentities: []string{"*"}})
	ctx := context.Background()
	if _, err := v.Verify(ctx, subject(t, goodRepo, goodD)); err != nil {
		t.Fatalf("good: %v", err)
	}
	if responder.Requests() == 0 {
		t.Fatal("the OCSP responder was never asked")
	}
	_, err = v.Verify(ctx, subject(t, badRepo, badD))
	wantErr(t, err, verify.ErrUntrusted, "revoked")
	responder.SetDown(true)
	_, err = v.Verify(ctx, subject(t, goodRepo, goodD))
	wantErr(t, err, verify.ErrUnavailable, "revocation could not be checked")
}
