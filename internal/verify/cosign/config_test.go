package cosign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

func pemKey(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestConfigErrorsNameTheField(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.pub"), []byte(pemKey(t, &p384.PublicKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad-root.json"), []byte(`{"mediaType": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	k1, k2 := pemKey(t, &p256.PublicKey), pemKey(t, edPub)
	js := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	tests := []struct {
		name    string
		config  json.RawMessage
		wantErr string // "" = valid
	}{
		{"one inline key", js(map[string]any{"keys": []string{k1}}), ""},
		{"key file relative to the policy", js(map[string]any{"keys": []string{"k.pub"}}), ""},
		{"ed25519 and rsa, 2 of 3", js(map[string]any{"keys": []string{k1, k2, pemKey(t, &rsa2048.PublicKey)}, "threshold": 2}), ""},
		{"unknown field", json.RawMessage(`{"keys":["x"],"treshold":1}`), `unknown field "treshold"`},
		{"neither keys nor keyless", json.RawMessage(`{}`), "keys or keyless"},
		{"both", js(map[string]any{"keys": []string{k1}, "keyless": map[string]any{}}), "keys and keyless"},
		{"threshold above keys", js(map[string]any{"keys": []string{k1}, "threshold": 2}), "threshold: 2"},
		{"negative threshold", js(map[string]any{"keys": []string{k1}, "threshold": -1}), "threshold: -1"},
		{"same key twice", js(map[string]any{"keys": []string{k1, k1}, "threshold": 2}), "keys[1]: the same key"},
		{"missing key file", js(map[string]any{"keys": []string{"nope.pub"}}), "keys[0]: open"},
		{"garbage key", js(map[string]any{"keys": []string{"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}}), "keys[0]: parse public key"},
		{"weak rsa", js(map[string]any{"keys": []string{pemKey(t, &rsa1024.PublicKey)}}), "keys[0]: RSA key of 1024 bits"},
		{"tlog required without a root", js(map[string]any{"keys": []string{k1}, "transparencyLog": "required"}), "trustedRoot: required"},
		{"bad requirement value", js(map[string]any{"keys": []string{k1}, "signedTimestamp": "maybe"}), `signedTimestamp: "maybe"`},
		{"keyless without root", js(map[string]any{"keyless": map[string]any{"identities": []any{map[string]string{"issuer": "i", "subject": "s"}}}}), "trustedRoot: required for keyless"},
		{"bad trusted root", js(map[string]any{"trustedRoot": "bad-root.json", "keyless": map[string]any{"identities": []any{map[string]string{"issuer": "i", "subject": "s"}}}}), "trustedRoot: bad-root.json"},
		{"signature repository without host", js(map[string]any{"keys": []string{k1}, "signatureRepository": "team/sigs"}), "signatureRepository"},
		{"signature repository", js(map[string]any{"keys": []string{k1}, "signatureRepository": "127.0.0.1:5000/sigs"}), ""},
		{"ct on keys", js(map[string]any{"keys": []string{k1}, "certificateTransparency": "ignore"}), "certificateTransparency: only meaningful with keyless"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policytest.Build(Scheme, "v", tc.config, verify.Deps{BaseDir: dir})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("build: %v, want success", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("build: success, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("build: %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIdentityRules(t *testing.T) {
	tests := []struct {
		name    string
		id      Identity
		wantErr string
	}{
		{"exact", Identity{Issuer: "https://i", Subject: "dev@example.com"}, ""},
		{"regexps", Identity{IssuerRegExp: `https://i.*`, SubjectRegExp: `.*@example\.com`}, ""},
		{"github claims", Identity{Issuer: "https://i", Subject: "s", GitHub: &GitHubClaims{WorkflowRepository: "org/repo"}}, ""},
		{"empty github", Identity{Issuer: "https://i", Subject: "s", GitHub: &GitHubClaims{}}, "github"},
		{"no subject", Identity{Issuer: "https://i"}, "subject or subjectRegExp"},
		{"both subjects", Identity{Issuer: "https://i", Subject: "a", SubjectRegExp: "a"}, "subject or subjectRegExp"},
		{"no issuer", Identity{Subject: "s"}, "issuer or issuerRegExp"},
		{"bad regexp", Identity{Issuer: "https://i", SubjectRegExp: "("}, "subjectRegExp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.id.compile()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("compile: %v, want error %q", err, tc.wantErr)
			}
		})
	}
	// Anchoring: the unanchored form would accept a look-alike domain.
	re, err := anchored("subjectRegExp", `.*@example\.com`)
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"dev@example.com": true, "dev@example.com.evil.test": false, "x\ndev@example.com": false} {
		if got := re.MatchString(s); got != want {
			t.Errorf("anchored match %q = %v, want %v", s, got, want)
		}
	}
}

func TestFilesListsOnlyFiles(t *testing.T) {
	c := Config{Keys: []string{"a.pub", "-----BEGIN PUBLIC KEY-----\n…"}, TrustedRoot: "tr.json"}
	got := c.Files()
	if strings.Join(got, ",") != "a.pub,tr.json" {
		t.Fatalf("Files() = %v, want [a.pub tr.json]", got)
	}
}
