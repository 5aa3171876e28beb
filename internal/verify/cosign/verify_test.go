package cosign

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
	harness "github.com/trustgate-dev/trustgate/test/harness/cosign"
)

// plainRegistry is go-containerregistry's in-memory registry without a
// referrers API: signatures are found through the tag schema.
func plainRegistry(t testing.TB) string {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

func pushImage(t testing.TB, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	return tag.Context().Digest(h.String())
}

func newKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func subject(d name.Digest) verify.Subject {
	return verify.Subject{Ref: imageref.MustParse(d.String()), Digest: d.DigestStr()}
}

func attachKeyBundle(t testing.TB, key crypto.Signer, img name.Digest, signed name.Digest, pt string, sigRepo *name.Repository) {
	t.Helper()
	b, err := harness.KeyBundle(key, signed, pt)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.AttachBundle(context.Background(), img, sigRepo, b, pt); err != nil {
		t.Fatal(err)
	}
}

func attachKeyLegacy(t testing.TB, key crypto.Signer, img name.Digest, signed name.Digest) {
	t.Helper()
	p, ann, err := harness.KeyLegacy(key, signed)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.AttachLegacy(context.Background(), img, nil, p, ann); err != nil {
		t.Fatal(err)
	}
}

func keysVerifier(t testing.TB, threshold int, sigRepo string, keys ...crypto.Signer) *Verifier {
	t.Helper()
	cfg := Config{Threshold: threshold, SignatureRepository: sigRepo}
	for _, k := range keys {
		cfg.Keys = append(cfg.Keys, harness.PublicKeyPEM(k))
	}
	v, err := New("test", cfg, verify.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestKeys(t *testing.T) {
	regs := map[string]string{"referrers API": harness.NewReferrersRegistry(t), "tag schema": plainRegistry(t)}
	keyA, keyB := newKey(t, elliptic.P256()), newKey(t, elliptic.P256())
	keyP384 := newKey(t, elliptic.P384())
	_, keyEd, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for regName, host := range regs {
		other := pushImage(t, host+"/other")
		cases := []struct {
			name      string
			sign      func(t *testing.T, img name.Digest)
			verifier  *Verifier
			wantErr   error
			wantInErr string
			signers   int
		}{
			{name: "bundle signed", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyA, img, img, harness.SignPredicateType, nil)
			}, verifier: keysVerifier(t, 1, "", keyA), signers: 1},
			{name: "legacy signed", sign: func(t *testing.T, img name.Digest) {
				attachKeyLegacy(t, keyA, img, img)
			}, verifier: keysVerifier(t, 1, "", keyA), signers: 1},
			{name: "P-384 key", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyP384, img, img, harness.SignPredicateType, nil)
			}, verifier: keysVerifier(t, 1, "", keyP384), signers: 1},
			{name: "Ed25519 key, both formats", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyEd, img, img, harness.SignPredicateType, nil)
				attachKeyLegacy(t, keyRSA, img, img)
			}, verifier: keysVerifier(t, 2, "", keyEd, keyRSA), signers: 2},
			{name: "RSA key, legacy", sign: func(t *testing.T, img name.Digest) {
				attachKeyLegacy(t, keyRSA, img, img)
			}, verifier: keysVerifier(t, 1, "", keyRSA), signers: 1},
			{name: "Ed25519 key, legacy", sign: func(t *testing.T, img name.Digest) {
				attachKeyLegacy(t, keyEd, img, img)
			}, verifier: keysVerifier(t, 1, "", keyEd), signers: 1},
			{name: "unsigned", sign: func(*testing.T, name.Digest) {},
				verifier: keysVerifier(t, 1, "", keyA), wantErr: verify.ErrUntrusted, wantInErr: "no cosign signature found"},
			{name: "wrong key", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyB, img, img, harness.SignPredicateType, nil)
				attachKeyLegacy(t, keyB, img, img)
			}, verifier: keysVerifier(t, 1, "", keyA), wantErr: verify.ErrUntrusted, wantInErr: "0 of the 1 required key(s)"},
			{name: "one of two keys, threshold 2", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyA, img, img, harness.SignPredicateType, nil)
			}, verifier: keysVerifier(t, 2, "", keyA, keyB), wantErr: verify.ErrUntrusted, wantInErr: "1 of the 2 required key(s)"},
			{name: "same key twice does not make 2", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyA, img, img, harness.SignPredicateType, nil)
				attachKeyLegacy(t, keyA, img, img)
			}, verifier: keysVerifier(t, 2, "", keyA, keyB), wantErr: verify.ErrUntrusted, wantInErr: "1 of the 2 required key(s)"},
			{name: "two keys, threshold 2, both formats", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyA, img, img, harness.SignPredicateType, nil)
				attachKeyLegacy(t, keyB, img, img)
			}, verifier: keysVerifier(t, 2, "", keyA, keyB), signers: 2},
			{name: "legacy by the second of two keys", sign: func(t *testing.T, img name.Digest) {
				attachKeyLegacy(t, keyB, img, img)
			}, verifier: keysVerifier(t, 1, "", keyA, keyB), signers: 1},
			{name: "attestation only", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyA, img, img, "https://slsa.dev/provenance/v1", nil)
			}, verifier: keysVerifier(t, 1, "", keyA), wantErr: verify.ErrUntrusted},
			{name: "bundle for another digest", sign: func(t *testing.T, img name.Digest) {
				attachKeyBundle(t, keyA, img, other, harness.SignPredicateType, nil)
			}, verifier: keysVerifier(t, 1, "", keyA), wantErr: verify.ErrUntrusted},
			{name: "legacy for another digest", sign: func(t *testing.T, img name.Digest) {
				attachKeyLegacy(t, keyA, img, other)
			}, verifier: keysVerifier(t, 1, "", keyA), wantErr: verify.ErrUntrusted, wantInErr: "signs digest " + other.DigestStr()},
		}
		for i, tc := range cases {
			t.Run(regName+"/"+tc.name, func(t *testing.T) {
				img := pushImage(t, fmt.Sprintf("%s/app%d", host, i))
				tc.sign(t, img)
				res, err := tc.verifier.Verify(context.Background(), subject(img))
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("Verify = %v, %v; want error %v", res, err, tc.wantErr)
					}
					if !strings.Contains(err.Error(), tc.wantInErr) {
						t.Fatalf("Verify error %q does not say %q", err, tc.wantInErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if res.Digest != img.DigestStr() || len(res.Signers) != tc.signers {
					t.Fatalf("Verify = digest %s signers %v; want %s and %d signer(s)", res.Digest, res.Signers, img.DigestStr(), tc.signers)
				}
			})
		}
	}
}

func TestSignatureRepository(t *testing.T) {
	host := harness.NewReferrersRegistry(t)
	key := newKey(t, elliptic.P256())
	img := pushImage(t, host+"/app")
	sigs, err := name.NewRepository(host + "/signatures")
	if err != nil {
		t.Fatal(err)
	}
	// cosign copies nothing of the image there; the subject descriptor is
	// the image's, so push it too (a registry requires the subject to exist
	// in the repository only for its referrers index, not for the tag).
	b, err := harness.KeyBundle(key, img, harness.SignPredicateType)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.AttachBundle(context.Background(), img, &sigs, b, harness.SignPredicateType); err != nil {
		t.Fatal(err)
	}
	if _, err := keysVerifier(t, 1, sigs.Name(), key).Verify(context.Background(), subject(img)); err != nil {
		t.Fatalf("with signatureRepository: %v", err)
	}
	if _, err := keysVerifier(t, 1, "", key).Verify(context.Background(), subject(img)); !errors.Is(err, verify.ErrUntrusted) {
		t.Fatalf("without signatureRepository: %v, want untrusted", err)
	}
}

func writeRoot(t testing.TB, ss *harness.Sigstore) string {
	t.Helper()
	tr, err := ss.TrustedRootJSON()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(p, tr, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyless(t *testing.T) {
	ss, err := harness.NewSigstore()
	if err != nil {
		t.Fatal(err)
	}
	trPath := writeRoot(t, ss)
	host := harness.NewReferrersRegistry(t)
	const iss, sub = "https://issuer.example.com", "dev@example.com"
	ids := []Identity{{Issuer: iss, Subject: sub}}
	expired := time.Now().Add(-50 * time.Minute)
	cases := []struct {
		name    string
		opts    harness.KeylessOptions
		legacy  bool
		cfg     func(*Config)
		wantErr bool
	}{
		{name: "bundle, right identity", opts: harness.KeylessOptions{}},
		{name: "legacy, right identity", opts: harness.KeylessOptions{}, legacy: true},
		{name: "wrong subject", opts: harness.KeylessOptions{Subject: "eve@example.com"}, wantErr: true},
		{name: "wrong issuer", opts: harness.KeylessOptions{Issuer: "https://evil.example.com"}, wantErr: true},
		{name: "regexp subject", opts: harness.KeylessOptions{}, cfg: func(c *Config) {
			c.Keyless.Identities = []Identity{{Issuer: iss, SubjectRegExp: `.*@example\.com`}}
		}},
		{name: "regexp is anchored", opts: harness.KeylessOptions{Subject: "dev@example.com.evil.test"}, cfg: func(c *Config) {
			c.Keyless.Identities = []Identity{{Issuer: iss, SubjectRegExp: `.*@example\.com`}}
		}, wantErr: true},
		{name: "no tlog entry, required by default", opts: harness.KeylessOptions{NoTlog: true}, wantErr: true},
		{name: "no tlog entry, legacy", opts: harness.KeylessOptions{NoTlog: true}, legacy: true, wantErr: true},
		{name: "no tlog entry, tlog ignored", opts: harness.KeylessOptions{NoTlog: true}, cfg: func(c *Config) { c.TransparencyLog = Ignore }},
		{name: "no timestamp, required by default", opts: harness.KeylessOptions{NoTimestamp: true}, wantErr: true},
		{name: "expired cert with log timestamp", opts: harness.KeylessOptions{NotBefore: expired}, cfg: func(c *Config) { c.SignedTimestamp = Ignore }},
		{name: "expired cert with log timestamp, legacy", opts: harness.KeylessOptions{NotBefore: expired}, legacy: true, cfg: func(c *Config) { c.SignedTimestamp = Ignore }},
		{name: "expired cert without log timestamp", opts: harness.KeylessOptions{NotBefore: expired, NoTlog: true}, cfg: func(c *Config) {
			c.SignedTimestamp, c.TransparencyLog = Ignore, Ignore
		}, wantErr: true},
		{name: "expired cert, RFC 3161 time is now", opts: harness.KeylessOptions{NotBefore: expired}, wantErr: true},
		{name: "attestation only", opts: harness.KeylessOptions{PredicateType: "https://slsa.dev/provenance/v1"}, wantErr: true},
		{name: "github claim matches", opts: harness.KeylessOptions{GitHubWorkflowRepository: "myorg/app"}, cfg: func(c *Config) {
			c.Keyless.Identities = []Identity{{Issuer: iss, Subject: sub, GitHub: &GitHubClaims{WorkflowRepository: "myorg/app"}}}
		}},
		{name: "github claim of another repository", opts: harness.KeylessOptions{GitHubWorkflowRepository: "evil/app"}, cfg: func(c *Config) {
			c.Keyless.Identities = []Identity{{Issuer: iss, Subject: sub, GitHub: &GitHubClaims{WorkflowRepository: "myorg/app"}}}
		}, wantErr: true},
		{name: "github claim missing", opts: harness.KeylessOptions{}, cfg: func(c *Config) {
			c.Keyless.Identities = []Identity{{Issuer: iss, Subject: sub, GitHub: &GitHubClaims{WorkflowRepository: "myorg/app"}}}
		}, wantErr: true},
		{name: "second identity matches", opts: harness.KeylessOptions{Subject: "ci@example.com"}, cfg: func(c *Config) {
			c.Keyless.Identities = []Identity{{Issuer: iss, Subject: sub}, {Issuer: iss, Subject: "ci@example.com"}}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := pushImage(t, fmt.Sprintf("%s/keyless%d", host, i))
			o := tc.opts
			if o.Subject == "" {
				o.Subject = sub
			}
			if o.Issuer == "" {
				o.Issuer = iss
			}
			if tc.legacy {
				p, ann, err := ss.Legacy(img, o)
				if err != nil {
					t.Fatal(err)
				}
				if err := harness.AttachLegacy(context.Background(), img, nil, p, ann); err != nil {
					t.Fatal(err)
				}
			} else {
				b, err := ss.Bundle(img, o)
				if err != nil {
					t.Fatal(err)
				}
				pt := o.PredicateType
				if pt == "" {
					pt = harness.SignPredicateType
				}
				if err := harness.AttachBundle(context.Background(), img, nil, b, pt); err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{TrustedRoot: trPath, Keyless: &KeylessConfig{Identities: ids}, CertificateTransparency: Ignore}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			v, err := New("keyless", cfg, verify.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), subject(img))
			if tc.wantErr {
				if !errors.Is(err, verify.ErrUntrusted) {
					t.Fatalf("Verify = %v, %v; want untrusted", res, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if want := o.Subject + " (" + o.Issuer + ")"; len(res.Signers) != 1 || res.Signers[0] != want {
				t.Fatalf("Signers = %v, want [%s]", res.Signers, want)
			}
		})
	}
}

// TestColdRequests counts what one cold verification asks of a registry
// without a referrers API: ping, then in parallel referrers (404), tag
// index and legacy .sig manifest (404), then bundle manifest and blob; each
// once.
func TestColdRequests(t *testing.T) {
	host := plainRegistry(t)
	c := harness.NewCounter(t, "http://"+host)
	key := newKey(t, elliptic.P256())
	img := pushImage(t, c.Host()+"/app")
	attachKeyBundle(t, key, img, img, harness.SignPredicateType, nil)
	v := keysVerifier(t, 1, "", key)
	c.Reset()
	if _, err := v.Verify(context.Background(), subject(img)); err != nil {
		t.Fatal(err)
	}
	if got := c.Count(); got != 6 {
		t.Fatalf("cold verification sent %d requests, want 6: %v", got, c.Paths())
	}
	for p, n := range c.Paths() {
		if n != 1 {
			t.Errorf("%s requested %d times, want once", p, n)
		}
	}
}

// TestHostileRegistry: garbage, oversized and never-ending answers end in a
// precise error within the request timeout, never a panic or a hang.
func TestHostileRegistry(t *testing.T) {
	key := newKey(t, elliptic.P256())
	digest := "sha256:" + strings.Repeat("ab", 32)
	var hits atomic.Int64
	cases := []struct {
		name    string
		handler http.HandlerFunc
		wantErr error
	}{
		{"garbage index", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			_, _ = w.Write([]byte("\x00\xffnot json"))
		}, verify.ErrUnavailable},
		{"huge index", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/" {
				return
			}
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			chunk := []byte(strings.Repeat("x", 64<<10))
			for range 64 { // 4 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, verify.ErrUnavailable},
		{"oversized bundle descriptor", func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			switch {
			case r.URL.Path == "/v2/":
			case strings.Contains(r.URL.Path, "/referrers/"):
				w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
				_ = json.NewEncoder(w).Encode(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
					"mediaType": ociManifest, "artifactType": bundleArtifactType, "digest": digest, "size": 10,
				}}})
			default:
				m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "layers": []any{map[string]any{
					"mediaType": bundleArtifactType, "digest": digest, "size": 1 << 30,
				}}})
				_, _ = w.Write(m)
			}
		}, verify.ErrUntrusted},
		{"500 everywhere", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusInternalServerError)
		}, verify.ErrUnavailable},
		{"never answers", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, verify.ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			u, _ := url.Parse(srv.URL)
			cfg := Config{Keys: []string{harness.PublicKeyPEM(key)}}
			v, err := New("hostile", cfg, verify.Deps{RequestTimeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			s := verify.Subject{Ref: imageref.MustParse(u.Host + "/app@" + digest), Digest: digest}
			res, err := v.Verify(context.Background(), s)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify = %v, %v; want %v", res, err, tc.wantErr)
			}
		})
	}
}

func TestNoDigestIsUnavailable(t *testing.T) {
	v := keysVerifier(t, 1, "", newKey(t, elliptic.P256()))
	_, err := v.Verify(context.Background(), verify.Subject{Ref: imageref.MustParse("127.0.0.1:1/app:v1")})
	if !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("Verify without digest = %v, want unavailable", err)
	}
}

// TestPingRemembered: a registry that served an anonymous ping is not
// pinged again for the next image; once it asks for credentials (401), the
// verification is "unavailable" and the next one pings again.
func TestPingRemembered(t *testing.T) {
	var locked atomic.Bool
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var pingCount atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			pingCount.Add(1)
		}
		if locked.Load() {
			w.Header().Set("WWW-Authenticate", `Basic realm="trustgate-test"`)
			http.Error(w, "credentials required", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	key := newKey(t, elliptic.P256())
	v := keysVerifier(t, 1, "", key)
	var imgs []name.Digest
	for i := range 3 {
		img := pushImage(t, fmt.Sprintf("%s/app%d", u.Host, i))
		attachKeyBundle(t, key, img, img, harness.SignPredicateType, nil)
		imgs = append(imgs, img)
	}
	pingCount.Store(0)
	for _, img := range imgs[:2] {
		if _, err := v.Verify(context.Background(), subject(img)); err != nil {
			t.Fatal(err)
		}
	}
	if got := pingCount.Load(); got != 1 {
		t.Fatalf("two verifications pinged %d times, want 1", got)
	}
	locked.Store(true)
	if _, err := v.Verify(context.Background(), subject(imgs[2])); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("after the registry asked for credentials: %v, want unavailable", err)
	}
	if _, err := v.Verify(context.Background(), subject(imgs[2])); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("second try: %v, want unavailable", err)
	}
	if got := pingCount.Load(); got < 2 {
		t.Fatalf("after a 401 the registry was not pinged again (%d pings)", got)
	}
	locked.Store(false)
	if _, err := v.Verify(context.Background(), subject(imgs[2])); err != nil {
		t.Fatalf("registry open again: %v", err)
	}
}

// TestReferrersMemory: a registry without a referrers API is not asked
// again for the next image, except before a deny: a registry that gained
// the API (and so holds new signatures only there) is still read.
func TestReferrersMemory(t *testing.T) {
	var gained atomic.Bool
	var apiCalls atomic.Int64
	inner := harness.ReferrersHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isAPI := strings.Contains(r.URL.Path, "/referrers/")
		if isAPI {
			apiCalls.Add(1)
		}
		switch {
		case isAPI && !gained.Load():
			http.NotFound(w, r) // distribution 2.x
			return
		case gained.Load() && strings.Contains(r.URL.Path, "/manifests/sha256-"):
			http.NotFound(w, r) // signed after the upgrade: no tag index
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	key := newKey(t, elliptic.P256())
	v := keysVerifier(t, 1, "", key)
	var imgs []name.Digest
	for i := range 3 {
		img := pushImage(t, fmt.Sprintf("%s/app%d", u.Host, i))
		imgs = append(imgs, img)
	}
	attachKeyBundle(t, key, imgs[0], imgs[0], harness.SignPredicateType, nil)
	attachKeyBundle(t, key, imgs[1], imgs[1], harness.SignPredicateType, nil)
	attachKeyBundle(t, key, imgs[2], imgs[2], harness.SignPredicateType, nil)
	apiCalls.Store(0)
	for _, img := range imgs[:2] {
		if _, err := v.Verify(context.Background(), subject(img)); err != nil {
			t.Fatal(err)
		}
	}
	if got := apiCalls.Load(); got != 1 {
		t.Fatalf("two verifications asked the missing referrers API %d times, want 1", got)
	}
	gained.Store(true)
	if _, err := v.Verify(context.Background(), subject(imgs[2])); err != nil {
		t.Fatalf("after the registry gained a referrers API: %v", err)
	}
	if got := apiCalls.Load(); got != 2 {
		t.Fatalf("referrers API asked %d times in all, want 2", got)
	}
}

// TestKeychain: signatures are read with the subject's credentials (the
// pod's pull secrets in serve); without them a private registry is
// "unavailable", never "unsigned".
func TestKeychain(t *testing.T) {
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "puller" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="private"`)
			http.Error(w, "credentials required", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	creds := staticKeychain{authn.FromConfig(authn.AuthConfig{Username: "puller", Password: "s3cret"})}
	key := newKey(t, elliptic.P256())
	img := pushImageAuth(t, u.Host+"/private/app", creds)
	b, err := harness.KeyBundle(key, img, harness.SignPredicateType)
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.AttachBundle(context.Background(), img, nil, b, harness.SignPredicateType, remote.WithAuthFromKeychain(creds)); err != nil {
		t.Fatal(err)
	}
	v := keysVerifier(t, 1, "", key)
	s := subject(img)
	if _, err := v.Verify(context.Background(), s); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("without credentials: %v, want unavailable", err)
	}
	s.Keychain = creds
	if _, err := v.Verify(context.Background(), s); err != nil {
		t.Fatalf("with the subject's credentials: %v", err)
	}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

func pushImageAuth(t testing.TB, repo string, kc authn.Keychain) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img, remote.WithAuthFromKeychain(kc)); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	return tag.Context().Digest(h.String())
}

// TestKeysRequiringTlog: with transparencyLog required, a key signature
// without a Rekor entry does not count; a keyless signature never counts
// for a keys verifier, whatever its certificate chains to.
func TestKeysRequiringTlog(t *testing.T) {
	ss, err := harness.NewSigstore()
	if err != nil {
		t.Fatal(err)
	}
	trPath := writeRoot(t, ss)
	host := harness.NewReferrersRegistry(t)
	key := newKey(t, elliptic.P256())
	img := pushImage(t, host+"/app")
	attachKeyBundle(t, key, img, img, harness.SignPredicateType, nil)
	strict, err := New("strict", Config{Keys: []string{harness.PublicKeyPEM(key)}, TrustedRoot: trPath, TransparencyLog: Required}, verify.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Verify(context.Background(), subject(img)); !errors.Is(err, verify.ErrUntrusted) {
		t.Fatalf("key signature without log entry, tlog required: %v, want untrusted", err)
	}
	if _, err := keysVerifier(t, 1, "", key).Verify(context.Background(), subject(img)); err != nil {
		t.Fatalf("same signature, tlog not required: %v", err)
	}
	keyless := pushImage(t, host+"/keyless")
	b, err := ss.Bundle(keyless, harness.KeylessOptions{Subject: "dev@example.com", Issuer: "https://issuer.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.AttachBundle(context.Background(), keyless, nil, b, harness.SignPredicateType); err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Verify(context.Background(), subject(keyless)); !errors.Is(err, verify.ErrUntrusted) {
		t.Fatalf("keyless signature for a keys verifier: %v, want untrusted", err)
	}
}

// TestRedirects: a registry may send a blob download to its storage host,
// but a redirect of the ping, a manifest or a tag to another host is
// refused before that host gets a request.
func TestRedirects(t *testing.T) {
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	var strangerHits atomic.Int64
	storage := httptest.NewServer(inner) // serves the blob it is sent to
	defer storage.Close()
	stranger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		strangerHits.Add(1)
		inner.ServeHTTP(w, r)
	}))
	defer stranger.Close()
	var mode atomic.Value
	mode.Store("blobs")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch m := mode.Load().(string); {
		case m == "blobs" && strings.Contains(r.URL.Path, "/blobs/sha256:") && r.Method == http.MethodGet:
			http.Redirect(w, r, storage.URL+r.URL.Path, http.StatusTemporaryRedirect)
		case m == "ping" && r.URL.Path == "/v2/":
			http.Redirect(w, r, stranger.URL+r.URL.Path, http.StatusFound)
		case m == "manifests" && strings.Contains(r.URL.Path, "/manifests/sha256-"):
			http.Redirect(w, r, stranger.URL+r.URL.Path, http.StatusFound)
		default:
			inner.ServeHTTP(w, r)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	key := newKey(t, elliptic.P256())
	mode.Store("none")
	img := pushImage(t, u.Host+"/app")
	attachKeyBundle(t, key, img, img, harness.SignPredicateType, nil)

	mode.Store("blobs")
	if _, err := keysVerifier(t, 1, "", key).Verify(context.Background(), subject(img)); err != nil {
		t.Fatalf("blob redirected to storage: %v", err)
	}
	for _, m := range []string{"ping", "manifests"} {
		mode.Store(m)
		_, err := keysVerifier(t, 1, "", key).Verify(context.Background(), subject(img))
		if !errors.Is(err, verify.ErrUnavailable) || !errors.Is(err, verify.ErrRedirect) {
			t.Errorf("%s redirected to another host: %v, want unavailable, redirect refused", m, err)
		}
	}
	if n := strangerHits.Load(); n != 0 {
		t.Fatalf("the other host got %d requests, want none", n)
	}
}

// TestConcurrent: one verifier serves concurrent admissions (run with
// -race): every signed image passes, every unsigned one is refused.
func TestConcurrent(t *testing.T) {
	host := plainRegistry(t)
	key := newKey(t, elliptic.P256())
	v := keysVerifier(t, 1, "", key)
	var signed, unsigned []name.Digest
	for i := range 4 {
		s := pushImage(t, fmt.Sprintf("%s/signed%d", host, i))
		attachKeyBundle(t, key, s, s, harness.SignPredicateType, nil)
		signed = append(signed, s)
		unsigned = append(unsigned, pushImage(t, fmt.Sprintf("%s/unsigned%d", host, i)))
	}
	errs := make(chan error, 32)
	for i := range 32 {
		go func() {
			img, wantOK := signed[i%4], i%2 == 0
			if !wantOK {
				img = unsigned[i%4]
			}
			_, err := v.Verify(context.Background(), subject(img))
			switch {
			case wantOK && err != nil:
				errs <- fmt.Errorf("%s: %v", img, err)
			case !wantOK && !errors.Is(err, verify.ErrUntrusted):
				errs <- fmt.Errorf("%s: %v, want untrusted", img, err)
			default:
				errs <- nil
			}
		}()
	}
	for range 32 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
