// Package notation holds integration tests of the notation verifier against
// real registries: Debian's docker-registry (2.8, no referrers API: Notation
// signatures live in the sha256-<hex> tag index) and go-containerregistry's
// registry with the referrers API (wrapped as test/harness/notation
// explains), signed by notation-go's own signer; and the comparison with
// the anchor, notation-go's notation.Verify as the notation CLI runs it.
package notation

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notation"
	"github.com/trustgate-dev/trustgate/test/harness/dct"
	harness "github.com/trustgate-dev/trustgate/test/harness/notation"
)

// trust is a CA, its signing leaf and the strict configuration trusting it.
type trust struct {
	ca    *harness.CA
	leaf  *harness.Leaf
	other *harness.Leaf // same subject, another (untrusted) CA
	cfg   notation.Config
}

func newTrust(t testing.TB) trust {
	t.Helper()
	ca, err := harness.NewCA(harness.Subject("acme", "acme root"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	if err != nil {
		t.Fatal(err)
	}
	evil, err := harness.NewCA(harness.Subject("acme", "acme root"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := evil.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	if err != nil {
		t.Fatal(err)
	}
	return trust{ca: ca, leaf: leaf, other: other, cfg: notation.Config{
		TrustStores:       notation.TrustStores{CA: []string{ca.PEM()}},
		TrustedIdentities: []string{harness.Identity("acme", "release")},
	}}
}

// counting counts the requests a verifier sends.
type counting struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func subject(t testing.TB, repo, digest string) verify.Subject {
	t.Helper()
	ref, err := imageref.Parse(repo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	return verify.Subject{Ref: ref, Digest: digest, Keychain: authn.DefaultKeychain}
}

// The real docker-registry has no referrers API: notation-go's signer
// writes the sha256-<hex> tag index, and trustgate finds the signatures
// there, in both envelope formats, with one referrers probe the first time.
func TestDockerRegistryTagIndex(t *testing.T) {
	reg := dct.NewRegistry(t, dct.RegistryOptions{})
	tr := newTrust(t)
	ctx := context.Background()
	repo := reg.Repo("notation/app")
	push := func(tag string) string {
		d, err := harness.PushRandomImage(ctx, repo, tag)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	jwsD, coseD, unsignedD, otherD := push("jws"), push("cose"), push("unsigned"), push("other")
	for d, o := range map[string]harness.SignOptions{jwsD: {MediaType: harness.JWS}, coseD: {MediaType: harness.COSE}} {
		if _, err := harness.Sign(ctx, tr.leaf, repo, d, o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := harness.Sign(ctx, tr.other, repo, otherD, harness.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	repo2 := reg.Repo("notation/other-app")
	d2, err := harness.PushRandomImage(ctx, repo2, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := harness.Sign(ctx, tr.leaf, repo2, d2, harness.SignOptions{}); err != nil {
		t.Fatal(err)
	}
	ct := &counting{base: http.DefaultTransport.(*http.Transport).Clone()}
	v, err := notation.New("nv", &tr.cfg, verify.Deps{Transport: ct, RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name, repo, digest string
		want               error
		requests           int64
	}{
		// referrers probe (404), tag index, signature manifest, envelope
		{"JWS", repo, jwsD, nil, 4},
		// the verifier now knows the registry: tag index, manifest, envelope
		{"COSE", repo, coseD, nil, 3},
		// tag index (404)
		{"unsigned", repo, unsignedD, verify.ErrUntrusted, 1},
		{"untrusted root", repo, otherD, verify.ErrUntrusted, 3},
		// another repository of the same registry: no new probe
		{"other repository", repo2, d2, nil, 3},
	} {
		before := ct.n.Load()
		res, err := v.Verify(ctx, subject(t, tc.repo, tc.digest))
		n := ct.n.Load() - before
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%d %s: %v", i, tc.name, err)
		case tc.want == nil && res.Digest != tc.digest:
			t.Errorf("%s: Digest = %s, want %s", tc.name, res.Digest, tc.digest)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if n != tc.requests {
			t.Errorf("%s: %d requests, want %d", tc.name, n, tc.requests)
		}
	}
}

// Credentials come from the subject's keychain, adapted to oras: a
// registry that demands basic auth is read with the keychain's password,
// and refused (could not complete, not "unsigned") without it.
func TestKeychainCredentials(t *testing.T) {
	reg := harness.NewReferrersRegistry(t)
	reg.RequireBasicAuth("puller", "s3cret")
	tr := newTrust(t)
	ctx := context.Background()
	repo := reg.Host() + "/private/app"
	d, err := harness.PushRandomImage(ctx, repo, "v1", harness.Basic("puller", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := harness.Sign(ctx, tr.leaf, repo, d, harness.SignOptions{Username: "puller", Password: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	v, err := notation.New("nv", &tr.cfg, verify.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	s := subject(t, repo, d)
	s.Keychain = staticKeychain{host: reg.Host(), auth: authn.AuthConfig{Username: "puller", Password: "s3cret"}}
	if _, err := v.Verify(ctx, s); err != nil {
		t.Fatalf("with the pull secret: %v", err)
	}
	s.Keychain = staticKeychain{host: reg.Host(), auth: authn.AuthConfig{Username: "puller", Password: "wrong"}}
	if _, err := v.Verify(ctx, s); !errors.Is(err, verify.ErrUnavailable) {
		t.Fatalf("with a wrong password: %v, want ErrUnavailable", err)
	}
	s.Keychain = nil
	if _, err := v.Verify(ctx, s); !errors.Is(err, verify.ErrUnavailable) || !strings.Contains(err.Error(), "credential") {
		t.Fatalf("anonymous: %v, want ErrUnavailable naming the refusal", err)
	}
}

// staticKeychain answers one registry with one credential.
type staticKeychain struct {
	host string
	auth authn.AuthConfig
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() != k.host {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(k.auth), nil
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// The registry token flow, as ACR and Docker Hub speak it: the first
// verification in a repository earns a pull token (challenge, token,
// retry); later ones reuse it, but only for the same credential.
func TestTokenFlow(t *testing.T) {
	reg := harness.NewReferrersRegistry(t)
	reg.RequireBearerToken()
	tr := newTrust(t)
	ctx := context.Background()
	repo := reg.Host() + "/team/app"
	var ds []string
	for i := range 3 {
		d, err := harness.PushRandomImage(ctx, repo, fmt.Sprint("v", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := harness.Sign(ctx, tr.leaf, repo, d, harness.SignOptions{}); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	v, err := notation.New("nv", &tr.cfg, verify.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	alice := staticKeychain{host: reg.Host(), auth: authn.AuthConfig{Username: "alice", Password: "a"}}
	bob := staticKeychain{host: reg.Host(), auth: authn.AuthConfig{Username: "bob", Password: "b"}}
	for _, tc := range []struct {
		name     string
		kc       authn.Keychain
		digest   string
		requests int64
	}{
		// referrers (401), token, referrers, signature manifest, envelope
		{"first in the repository", alice, ds[0], 5},
		{"token reused", alice, ds[1], 3},
		{"another credential earns its own token", bob, ds[2], 5},
	} {
		s := subject(t, repo, tc.digest)
		s.Keychain = tc.kc
		before := reg.Requests()
		if _, err := v.Verify(ctx, s); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := reg.Requests() - before; n != tc.requests {
			t.Errorf("%s: %d requests, want %d", tc.name, n, tc.requests)
		}
	}
}
