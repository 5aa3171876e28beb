package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	harness "github.com/trustgate-dev/trustgate/test/harness/notation"
)

// TestNotation: the notation verifier through the real API server and
// kubectl, against the shared Debian docker-registry (no referrers API, so
// notation-go's signer writes the sha256-<hex> tag index and trustgate reads
// it). Tags are resolved once by the engine; the pod runs pinned to the
// digest the signature names.
func TestNotation(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	ctx := context.Background()

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
	evilLeaf, err := evil.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release")})
	if err != nil {
		t.Fatal(err)
	}
	// A leaf whose CRL is served locally; the server goes down for one case.
	crl := harness.StartCRLServer(ca)
	t.Cleanup(crl.Close)
	crlLeaf, err := ca.Leaf(harness.LeafOptions{Subject: harness.Subject("acme", "release"), CRLURL: crl.URL()})
	if err != nil {
		t.Fatal(err)
	}
	repo := d.Registry.Repo("e2e-notation/app")
	digests := map[string]string{}
	for _, tag := range []string{"jws", "cose", "unsigned", "evil", "crl"} {
		dg, err := harness.PushRandomImage(ctx, repo, tag)
		if err != nil {
			t.Fatal(err)
		}
		digests[tag] = dg
	}
	for tag, o := range map[string]struct {
		leaf *harness.Leaf
		mt   string
	}{"jws": {leaf, harness.JWS}, "cose": {leaf, harness.COSE}, "evil": {evilLeaf, harness.JWS}, "crl": {crlLeaf, harness.COSE}} {
		if _, err := harness.Sign(ctx, o.leaf, repo, digests[tag], harness.SignOptions{MediaType: o.mt}); err != nil {
			t.Fatal(err)
		}
	}

	dir, err := shared.tempDir()
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "notation-ca.pem")
	if err := os.WriteFile(caFile, []byte(ca.PEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: deny
verifiers:
- name: acme-notation
  type: notation
  notation:
    trustStores: {ca: [%s]}
    trustedIdentities: [%q]
rules:
- {name: notation, images: ["%s/e2e-notation/**"], verify: [acme-notation]}
`, caFile, harness.Identity("acme", "release"), d.Registry.Host())
	s, err := startStack(t, c, d, bin, stackSpec{name: "notation", policy: policy, selector: ownNamespaces("notation")})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-notation")
	waitJudged(t, c, ns, "registry.unmatched.example/app:v1", deniedResult)

	for _, tc := range []struct {
		name, tag   string
		crlDown     bool
		admit       bool
		unavailable bool
		stderr      []string
	}{
		{"jws", "jws", false, true, false, nil},
		{"cose", "cose", false, true, false, nil},
		{"unsigned", "unsigned", false, false, false, []string{"no Notation signature refers to " + repo + "@" + digests["unsigned"]}},
		{"evil", "evil", false, false, false, []string{"authenticity"}},
		// The revocation status cannot be checked: could not complete,
		// not "not trusted", and not cached: with the CRL back it passes.
		{"crl-down", "crl", true, false, true, []string{"revocation could not be checked"}},
		{"crl-up", "crl", false, true, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crl.SetDown(tc.crlDown)
			defer crl.SetDown(false)
			img := repo + ":" + tc.tag
			_, stderr, err := runPod(s, ns, "p-"+tc.name, img)
			if tc.admit {
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, stderr)
				}
				got, _, err := c.Kubectl("-n", ns, "get", "pod", "p-"+tc.name, "-o", "jsonpath={.spec.containers[0].image}")
				if err != nil {
					t.Fatal(err)
				}
				if want := img + "@" + digests[tc.tag]; got != want {
					t.Errorf("stored image %q, want it pinned to %q", got, want)
				}
				return
			}
			want := "Error from server (Forbidden)"
			if tc.unavailable {
				want = "Error from server (ServiceUnavailable)"
			}
			if err == nil || !strings.Contains(stderr, want) {
				t.Fatalf("err %v, stderr %q; want %s", err, stderr, want)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("kubectl output does not contain %q:\n%s", w, stderr)
				}
			}
		})
	}
}
