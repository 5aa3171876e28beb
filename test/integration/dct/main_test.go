// Package dct holds integration tests of the notaryv1 verifier against the
// real Docker Content Trust backend: Debian's notary-server (with
// notary-signer, so the server's keys are ECDSA as on Docker Hub), a real
// docker-registry, and metadata written by the real notary CLI the way
// `docker trust` writes it.
package dct

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	harness "github.com/trustgate-dev/trustgate/test/harness/dct"
)

// backend is the notary server, registry and signer shared by the package;
// each test works in repositories of its own.
type backend struct {
	srv *harness.NotaryServer
	reg *harness.Registry
	sg  *harness.Signer
}

var (
	shared     *backend
	sharedErr  error
	sharedOnce sync.Once
	sharedDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchRepo.rc != nil {
		benchRepo.rc.Close()
	}
	if shared != nil {
		shared.srv.Close()
		shared.reg.Close()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// env returns the shared backend, starting it on first use. A missing
// binary skips the test, or fails it when CI is set.
func env(t testing.TB) *backend {
	t.Helper()
	harness.RequireBinaries(t, "notary-server", "notary-signer", "notary", "docker-registry")
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "dct-integration-")
		if sharedErr != nil {
			return
		}
		b := &backend{}
		mk := func(name string) string {
			d := sharedDir + "/" + name
			if err := os.MkdirAll(d, 0o755); err != nil && sharedErr == nil {
				sharedErr = err
			}
			return d
		}
		b.srv, sharedErr = harness.StartNotaryServer(harness.NotaryOptions{Dir: mk("notary"), ECDSAServerKeys: true})
		if sharedErr != nil {
			return
		}
		b.reg, sharedErr = harness.StartRegistry(harness.RegistryOptions{Dir: mk("registry")})
		if sharedErr != nil {
			b.srv.Close()
			return
		}
		b.sg, sharedErr = harness.NewSignerAt(b.srv.URL(), b.srv.CAFile(), mk("signer"))
		if sharedErr != nil {
			b.srv.Close()
			b.reg.Close()
			return
		}
		shared = b
	})
	if sharedErr != nil {
		t.Fatalf("start DCT backend: %v", sharedErr)
	}
	return shared
}

// seq makes repository names unique within the process, so tests can run
// repeatedly (-count) against the one shared server.
var seq atomic.Int64

// unique returns path with a process-unique suffix.
func unique(path string) string { return fmt.Sprintf("%s-%d", path, seq.Add(1)) }

// image is one pushed manifest.
type image struct {
	ref    string // REGISTRY/PATH:TAG
	digest string
	size   int64
}

// push pushes a random image to reg as path:tag.
func push(t testing.TB, reg *harness.Registry, path, tag string) image {
	t.Helper()
	d, size, err := reg.PushRandomImage(path, tag)
	if err != nil {
		t.Fatal(err)
	}
	return image{ref: reg.Repo(path) + ":" + tag, digest: d, size: size}
}

// pushSigned pushes path:tag and signs it into roles (targets when none).
func pushSigned(t testing.TB, b *backend, path, tag string, roles ...string) image {
	t.Helper()
	img := push(t, b.reg, path, tag)
	if err := b.sg.Sign(b.reg.Repo(path), tag, img.digest, img.size, roles...); err != nil {
		t.Fatal(err)
	}
	return img
}

// initRepo initialises the trust data of path and returns its GUN and the
// file holding its root certificate.
func initRepo(t testing.TB, b *backend, path string) (gun, rootKeyFile string) {
	t.Helper()
	gun = b.reg.Repo(path)
	if err := b.sg.Init(gun); err != nil {
		t.Fatal(err)
	}
	return gun, writeRootKey(t, b.sg, gun)
}

// initAndSign initialises gun's trust data with sg and signs img as tag
// into targets.
func initAndSign(t testing.TB, sg *harness.Signer, gun, tag string, img image) {
	t.Helper()
	if err := sg.Init(gun); err != nil {
		t.Fatal(err)
	}
	if err := sg.Sign(gun, tag, img.digest, img.size); err != nil {
		t.Fatal(err)
	}
}

// writeRootKey writes gun's root certificate to a file and returns its path.
func writeRootKey(t testing.TB, sg *harness.Signer, gun string) string {
	t.Helper()
	f, err := sg.WriteRootKeyPEM(gun)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// verifyCase is one reference verified by a verifier built from cfg.
type verifyCase struct {
	name string
	cfg  config
	ref  string
	want outcome
}

// runVerifyCases runs each case as a parallel subtest.
func runVerifyCases(t *testing.T, cases []verifyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := newVerifier(t, tc.cfg)
			res, err := verifyRef(t, v, tc.ref)
			check(t, tc.ref, res, err, tc.want)
		})
	}
}

// config is the notaryv1 policy block, spelled as a policy file would be.
type config struct {
	Server          string   `json:"server"`
	CAFile          string   `json:"caFile,omitempty"`
	RootKeys        []string `json:"rootKeys,omitempty"`
	TrustOnFirstUse bool     `json:"trustOnFirstUse,omitempty"`
	Signers         []string `json:"signers,omitempty"`
	Threshold       int      `json:"threshold,omitempty"`
}

// deps are the verifier dependencies the tests use: per-request timeout
// well under the test deadlines.
func deps() verify.Deps { return verify.Deps{RequestTimeout: 3 * time.Second} }

// newVerifier builds a verifier from its configuration block through the
// notaryv1 scheme, as the policy loader does.
func newVerifier(t testing.TB, c config) verify.Verifier {
	t.Helper()
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	v, err := policytest.Build(notaryv1.Scheme, "dct-test", raw, deps())
	if err != nil {
		t.Fatalf("build notaryv1 from %s: %v", raw, err)
	}
	return v
}

// newFromBlock builds a verifier from a raw configuration block through the
// notaryv1 scheme.
func newFromBlock(raw []byte) (verify.Verifier, error) {
	return policytest.Build(notaryv1.Scheme, "dct-test", raw, deps())
}

// newTuned builds a verifier with explicit deps and options, for tests that
// need a short request timeout or no freshness window.
func newTuned(t testing.TB, c config, d verify.Deps, opts ...notaryv1.Option) verify.Verifier {
	t.Helper()
	v, err := notaryv1.New("dct-test", notaryv1.Config{
		Server:          c.Server,
		CAFile:          c.CAFile,
		RootKeys:        c.RootKeys,
		TrustOnFirstUse: c.TrustOnFirstUse,
		Signers:         c.Signers,
		Threshold:       c.Threshold,
	}, d, opts...)
	if err != nil {
		t.Fatalf("notaryv1.New: %v", err)
	}
	return v
}

// newFreshVerifier builds a verifier that asks the server on every Verify
// (no freshness window), for fault tests that must see the server's state.
func newFreshVerifier(t testing.TB, c config) verify.Verifier {
	t.Helper()
	return newTuned(t, c, deps(), notaryv1.WithFreshness(0))
}

// verifyRef parses ref and verifies it with a 10-second budget.
func verifyRef(t testing.TB, v verify.Verifier, ref string) (*verify.Result, error) {
	t.Helper()
	return verifyWithin(t, v, ref, 10*time.Second)
}

// verifyWithin verifies ref under a context deadline of d.
func verifyWithin(t testing.TB, v verify.Verifier, ref string, d time.Duration) (*verify.Result, error) {
	t.Helper()
	r, err := imageref.Parse(ref)
	if err != nil {
		t.Fatalf("imageref.Parse(%q): %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return v.Verify(ctx, verify.Subject{Ref: r})
}

// outcome is what a case expects: a digest and signer roles when admitted,
// or a sentinel and a message fragment when denied.
type outcome struct {
	digest  string
	signers []string
	err     error
	msg     string
}

// check compares a Verify result with want.
func check(t testing.TB, ref string, res *verify.Result, err error, want outcome) {
	t.Helper()
	if want.err != nil {
		if err == nil {
			t.Fatalf("Verify(%s) = admitted %+v, want error %v containing %q", ref, res, want.err, want.msg)
		}
		if !errors.Is(err, want.err) {
			t.Errorf("Verify(%s) error = %v, want errors.Is %v", ref, err, want.err)
		}
		if !strings.Contains(err.Error(), want.msg) {
			t.Errorf("Verify(%s) error = %q, want it to contain %q", ref, err, want.msg)
		}
		if res != nil {
			t.Errorf("Verify(%s) returned a result %+v with its error", ref, res)
		}
		return
	}
	if err != nil {
		t.Fatalf("Verify(%s) error = %v, want admitted with %s", ref, err, want.digest)
	}
	if res.Digest != want.digest {
		t.Errorf("Verify(%s).Digest = %s, want %s", ref, res.Digest, want.digest)
	}
	if want.signers != nil && strings.Join(res.Signers, ",") != strings.Join(want.signers, ",") {
		t.Errorf("Verify(%s).Signers = %v, want %v", ref, res.Signers, want.signers)
	}
	if res.Expires.IsZero() || !res.Expires.After(time.Now()) {
		t.Errorf("Verify(%s).Expires = %v, want a future time", ref, res.Expires)
	}
}
