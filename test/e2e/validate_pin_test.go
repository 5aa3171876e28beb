package e2e

import (
	"strings"
	"testing"
)

// notPinnedMessage is what /validate says about a tag a pinning rule left
// unpinned.
const notPinnedMessage = "the mutating webhook (/mutate) did not pin it, or a later mutating webhook removed the pin"

// withSettings adds a settings block to an e2e policy.
func withSettings(policy, settings string) string {
	return strings.Replace(policy, "exemptNamespaces:", "settings: "+settings+"\nexemptNamespaces:", 1)
}

// TestValidateRequiresPinnedTag (issue 9, item 3): a rule that pins expects
// /mutate to have rewritten the image to its signed digest. When the mutating
// webhook is absent (or a later one undoes the pin), /validate alone refuses
// the signed tag, saying why, instead of letting the kubelet pull whatever the
// tag points to later; settings.validateRequiresDigest: false relaxes that for
// clusters that run only /validate; with both webhooks the pod is stored
// pinned.
func TestValidateRequiresPinnedTag(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)

	t.Run("validating webhook alone refuses a signed tag", func(t *testing.T) {
		s, err := startStack(t, c, d, bin, stackSpec{
			name: "validate-pin", policy: policyText(d, "enforce", "deny"),
			selector: ownNamespaces("validate-pin"), hooks: validatingOnly,
		})
		if err != nil {
			t.Fatal(err)
		}
		ns := s.judgedNamespace(t, "e2e-validate-pin")
		waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)

		_, stderr, err := runPod(s, ns, "tag", d.Signed.Ref)
		if err == nil {
			t.Fatalf("signed tag %s admitted unpinned by /validate alone", d.Signed.Ref)
		}
		for _, want := range []string{`admission webhook "verify.images.trustgate.dev" denied the request`, `"` + d.Signed.Ref + `"`, notPinnedMessage} {
			if !strings.Contains(stderr, want) {
				t.Errorf("kubectl's error lacks %q:\n%s", want, stderr)
			}
		}
		if out, _, _ := c.Kubectl("-n", ns, "get", "pod/tag", "--ignore-not-found", "-o", "name"); out != "" {
			t.Errorf("refused pod was stored: %q", out)
		}
		// What /mutate would have written is admitted as it is.
		if _, stderr, err := runPod(s, ns, "pinned", d.Signed.Pinned()); err != nil {
			t.Fatalf("pinned signed image refused: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/pinned", "{.spec.containers[0].image}"); got != d.Signed.Pinned() {
			t.Errorf("stored image = %q, want %q", got, d.Signed.Pinned())
		}
		// A tag pinned to a digest that is not the signed one stays refused.
		other := d.Signed.Ref + "@" + d.SignedOther.Digest
		if _, _, err := runPod(s, ns, "otherdigest", other); err == nil {
			t.Errorf("%s admitted", other)
		}
	})

	t.Run("relaxed for clusters that run only /validate", func(t *testing.T) {
		s, err := startStack(t, c, d, bin, stackSpec{
			name:     "validate-tags",
			policy:   withSettings(policyText(d, "enforce", "deny"), "{validateRequiresDigest: false}"),
			selector: ownNamespaces("validate-tags"), hooks: validatingOnly,
		})
		if err != nil {
			t.Fatal(err)
		}
		ns := s.judgedNamespace(t, "e2e-validate-tags")
		waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)
		if _, stderr, err := runPod(s, ns, "tag", d.Signed.Ref); err != nil {
			t.Fatalf("signed tag refused with validateRequiresDigest: false: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/tag", "{.spec.containers[0].image}"); got != d.Signed.Ref {
			t.Errorf("stored image = %q, want %q: only the mutating webhook may pin", got, d.Signed.Ref)
		}
		if _, _, err := runPod(s, ns, "unsigned", d.UnsignedTag.Ref); err == nil {
			t.Errorf("unsigned tag %s admitted", d.UnsignedTag.Ref)
		}
	})

	t.Run("both webhooks store it pinned", func(t *testing.T) {
		s := requireMain(t)
		ns := s.judgedNamespace(t, "e2e-validate-both")
		if _, stderr, err := runPod(s, ns, "tag", d.Signed.Ref); err != nil {
			t.Fatalf("signed tag refused with both webhooks: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/tag", "{.spec.containers[0].image}"); got != d.Signed.Pinned() {
			t.Errorf("stored image = %q, want %q", got, d.Signed.Pinned())
		}
	})
}
