package cosign_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/cosign"
	harness "github.com/trustgate-dev/trustgate/test/harness/cosign"
)

// TestSchemeThroughPolicy: a policy names the cosign type like any other;
// its block is decoded strictly, relative key files resolve against the
// policy's folder, and the files it reads are reported for watching.
func TestSchemeThroughPolicy(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), []byte(harness.PublicKeyPEM(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := verify.NewRegistry(cosign.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	write := func(block string) string {
		p := filepath.Join(dir, "policy.yaml")
		doc := `apiVersion: trustgate.dev/v1alpha1
kind: Policy
unmatched: deny
verifiers:
- name: release
  type: cosign
  cosign:
` + block + `
rules:
- {name: ours, images: ["registry.example.com/team/**"], verify: [release]}
`
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l := policy.NewLoader(reg, verify.Deps{})
	p := write("    keys: [cosign.pub]\n    threshold: 1")
	if _, err := l.Load(p); err != nil {
		t.Fatalf("valid policy: %v", err)
	}
	if got := l.Attempted(); !slices.Contains(got, filepath.Join(dir, "cosign.pub")) {
		t.Fatalf("Attempted() = %v, want the key file listed", got)
	}
	for block, want := range map[string]string{
		"    keys: [cosign.pub]\n    tresholds: 2":                     "tresholds",
		"    keys: [missing.pub]":                                      "keys[0]",
		"    keys: [cosign.pub]\n    transparencyLog: required":        "trustedRoot: required",
		"    keyless: {identities: [{issuer: i, subject: s}]}":         "trustedRoot: required for keyless",
		"    keys: [cosign.pub]\n    signatureRepository: 'UPPER/Bad'": "signatureRepository",
	} {
		_, err := l.Load(write(block))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("policy block %q: %v, want an error naming %q", block, err, want)
		}
	}
}
