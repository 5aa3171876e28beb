package e2e

import (
	"fmt"
	"strings"
	"testing"

	ch "github.com/trustgate-dev/trustgate/test/harness/cosign"
)

// TestCosign: the cosign verifier through the real API server and kubectl,
// against the shared Debian docker-registry (no referrers API: cosign
// writes the sha256-<hex> tag index, or the .sig tag for legacy
// signatures), with signatures made by the real cosign CLI. Tags are
// resolved once by the engine; the pod runs pinned to the digest judged.
func TestCosign(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	cli := ch.NewCLI(t)

	key, pub, err := cli.GenerateKeyPair("release")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _, err := cli.GenerateKeyPair("other")
	if err != nil {
		t.Fatal(err)
	}
	const path = "e2e-cosign/app"
	repo := d.Registry.Repo(path)
	digests := map[string]string{}
	for _, tag := range []string{"bundle", "legacy", "unsigned", "otherkey", "attested"} {
		dg, _, err := d.Registry.PushRandomImage(path, tag)
		if err != nil {
			t.Fatal(err)
		}
		digests[tag] = dg
	}
	byDigest := func(tag string) string { return repo + "@" + digests[tag] }
	for _, step := range []struct {
		what string
		err  error
	}{
		{"sign bundle", cli.Sign(key, byDigest("bundle"), false)},
		{"sign legacy", cli.Sign(key, byDigest("legacy"), true)},
		{"sign with another key", cli.Sign(otherKey, byDigest("otherkey"), false)},
		{"attest only", cli.Attest(key, byDigest("attested"), "https://example.com/x")},
	} {
		if step.err != nil {
			t.Fatalf("%s: %v", step.what, step.err)
		}
	}

	policy := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: deny
verifiers:
- name: release-key
  type: cosign
  cosign:
    keys: [%s]
rules:
- {name: cosign, images: ["%s/e2e-cosign/**"], verify: [release-key]}
`, pub, d.Registry.Host())
	s, err := startStack(t, c, d, bin, stackSpec{name: "cosign", policy: policy, selector: ownNamespaces("cosign")})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-cosign")
	waitJudged(t, c, ns, "registry.unmatched.example/app:v1", deniedResult)

	for _, tc := range []struct {
		tag    string
		admit  bool
		stderr []string
	}{
		{"bundle", true, nil},
		{"legacy", true, nil},
		{"unsigned", false, []string{"no cosign signature found for " + digests["unsigned"]}},
		{"otherkey", false, []string{"0 of the 1 required key(s) signed " + digests["otherkey"]}},
		{"attested", false, []string{"an attestation (predicateType https://example.com/x), not a signature"}},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			img := repo + ":" + tc.tag
			_, stderr, err := runPod(s, ns, "p-"+tc.tag, img)
			if tc.admit {
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, stderr)
				}
				got, _, err := c.Kubectl("-n", ns, "get", "pod", "p-"+tc.tag, "-o", "jsonpath={.spec.containers[0].image}")
				if err != nil {
					t.Fatal(err)
				}
				if want := img + "@" + digests[tc.tag]; got != want {
					t.Errorf("stored image %q, want it pinned to %q", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(stderr, "Error from server (Forbidden)") {
				t.Fatalf("err %v, stderr %q; want a Forbidden denial", err, stderr)
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("kubectl output does not contain %q:\n%s", w, stderr)
				}
			}
		})
	}
}
