package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
)

// TestRetiredNotaryServerWarns: a notaryv1 verifier pointed at Docker Hub's
// notary service is named at load by verify, check and audit (without any
// request to it: the image judged here is not sent to that verifier).
func TestRetiredNotaryServerWarns(t *testing.T) {
	dir := t.TempDir()
	key := notaryfake.GenerateKey("ecdsa", "root")
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), []byte(key.PublicPEM()), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
unmatched: allow
verifiers:
- name: hub-dct
  type: notaryv1
  notaryv1:
    server: https://notary.docker.io
    rootKeys: [root.pem]
rules:
- name: hub
  images: ["docker.io/myorg/**"]
  verify: [hub-dct]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: quay.io/other/x:1}\n"
	for _, args := range [][]string{
		{"verify", "--policy", pol, "quay.io/other/x:1"},
		{"check", "--policy", pol, "-f", "-"},
	} {
		code, _, stderr := run(t, manifest, args...)
		if code != 0 {
			t.Errorf("%s: exit %d, want 0\n%s", args[0], code, stderr)
		}
		if !strings.Contains(stderr, "verifier hub-dct: the notary server notary.docker.io") || !strings.Contains(stderr, "retired on 2026-12-08") {
			t.Errorf("%s: stderr does not name the retired server:\n%s", args[0], stderr)
		}
	}
}
