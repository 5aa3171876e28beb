package notation_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notation"
	harness "github.com/trustgate-dev/trustgate/test/harness/notation"
)

// The scheme plugs into the policy loader: the `notation:` block is decoded
// strictly and its errors name the field.
func TestSchemeInPolicy(t *testing.T) {
	p := testPKI(t)
	schemes, err := verify.NewRegistry(notation.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, []byte(p.ca.PEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := func(block string) []byte {
		return []byte(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
verifiers:
- name: nv
  type: notation
  notation: ` + block + `
rules:
- {name: r, images: ["r.example/**"], verify: [nv]}
`)
	}
	good := `{trustStores: {ca: [ca.pem]}, trustedIdentities: ["` + harness.Identity("acme", "release") + `"]}`
	l := policy.NewLoader(schemes, verify.Deps{BaseDir: dir})
	pol, err := l.Parse(doc(good), filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatalf("good policy: %v", err)
	}
	if pol == nil {
		t.Fatal("no policy")
	}
	for _, tc := range []struct{ block, want string }{
		{`{trustStores: {ca: [ca.pem]}, trustedIdentities: ["*"], level: strict}`, `unknown field "level"`},
		{`{trustStores: {ca: [missing.pem]}, trustedIdentities: ["*"]}`, "trustStores.ca[0]: read missing.pem"},
		{`{trustStores: {ca: [ca.pem]}, trustedIdentities: ["*"], signatureVerification: {level: lax}}`, "signatureVerification.level"},
	} {
		_, err := l.Parse(doc(tc.block), filepath.Join(dir, "policy.yaml"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "notation") {
			t.Errorf("%s: got %v, want an error containing %q", tc.block, err, tc.want)
		}
	}
}
