package notation_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notation"
	harness "github.com/trustgate-dev/trustgate/test/harness/notation"
)

func TestConfigErrorsNameTheField(t *testing.T) {
	p := testPKI(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte(p.ca.PEM()), 0o600)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o600)
	os.WriteFile(filepath.Join(dir, "leaf.pem"), []byte(harness.CertPEM(p.leaf.Cert)), 0o600)
	id := harness.Identity("acme", "release")
	for _, tc := range []struct {
		name, json, want string
	}{
		{"unknown field", `{"trustStore": {}}`, `unknown field "trustStore"`},
		{"no trust store", `{"trustedIdentities": ["*"]}`, "trustStores: at least one"},
		{"no identities", `{"trustStores": {"ca": ["ca.pem"]}}`, "trustedIdentities: required"},
		{"missing file", `{"trustStores": {"ca": ["nope.pem"]}, "trustedIdentities": ["*"]}`, "trustStores.ca[0]: read nope.pem"},
		{"not PEM", `{"trustStores": {"ca": ["junk.pem"]}, "trustedIdentities": ["*"]}`, "trustStores.ca[0]: no PEM certificate"},
		{"leaf as CA", `{"trustStores": {"ca": ["leaf.pem"]}, "trustedIdentities": ["*"]}`, "trustStores.ca[0]: certificate"},
		{"bad level", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "signatureVerification": {"level": "lax"}}`, `signatureVerification.level: "lax"`},
		{"bad override check", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "signatureVerification": {"override": {"freshness": "log"}}}`, "signatureVerification.override.freshness: unknown check"},
		{"bad override action", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "signatureVerification": {"override": {"expiry": "ignore"}}}`, "signatureVerification.override.expiry"},
		{"integrity cannot be relaxed", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "signatureVerification": {"override": {"integrity": "log"}}}`, "can not be overridden"},
		{"authenticity cannot be skipped", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "signatureVerification": {"override": {"authenticity": "skip"}}}`, "can not be skipped"},
		{"bad verifyTimestamp", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "signatureVerification": {"verifyTimestamp": "never"}}`, "signatureVerification.verifyTimestamp"},
		{"bad identity", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["CN=x"]}`, "trustedIdentities[0]"},
		{"identity without C, ST, O", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["x509.subject: CN=x"]}`, "trust policy"},
		{"pattern scope", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "registryScopes": ["r.io/team/*"]}`, "registryScopes[0]"},
		{"maxSignatures", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "maxSignatures": 500}`, "maxSignatures: 500"},
		{"skip with stores", `{"trustStores": {"ca": ["ca.pem"]}, "trustedIdentities": ["*"], "signatureVerification": {"level": "skip"}}`, "signatureVerification.level: skip takes no"},
		{"tsa store must be a root", `{"trustStores": {"ca": ["ca.pem"], "tsa": ["leaf.pem"]}, "trustedIdentities": ["*"]}`, "trustStores.tsa[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg notation.Config
			err := verify.DecodeStrict(json.RawMessage(tc.json), &cfg)
			if err == nil {
				_, err = notation.New("nv", &cfg, verify.Deps{BaseDir: dir})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}

	// A good configuration: files and inline PEM, every field.
	good := `{"trustStores": {"ca": ["ca.pem", ` + jsonString(p.ca.PEM()) + `], "signingAuthority": ["ca.pem"]},
		"trustedIdentities": ["` + id + `"], "registryScopes": ["r.io/team/app"], "maxSignatures": 3,
		"signatureVerification": {"level": "permissive", "override": {"revocation": "skip", "expiry": "enforce"}, "verifyTimestamp": "afterCertExpiry"}}`
	var cfg notation.Config
	if err := verify.DecodeStrict(json.RawMessage(good), &cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := notation.New("nv", &cfg, verify.Deps{BaseDir: dir}); err != nil {
		t.Fatalf("good configuration refused: %v", err)
	}
	if got, want := cfg.Files(), []string{"ca.pem", "ca.pem"}; !slices.Equal(got, want) {
		t.Errorf("Files() = %q, want %q (inline PEM is not a file)", got, want)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
