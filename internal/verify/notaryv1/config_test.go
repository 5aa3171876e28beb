package notaryv1

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

func TestSchemeConfig(t *testing.T) {
	key := notaryfake.GenerateKey("ecdsa-x509", testGUN).PublicPEM()
	keyJSON, _ := json.Marshal(key)
	tests := []struct {
		name    string
		config  string
		wantErr string // empty: valid
	}{
		{"valid pinned", `{"server":"https://notary.example.com","rootKeys":[` + string(keyJSON) + `]}`, ""},
		{"valid tofu with signers", `{"server":"https://notary.example.com/","trustOnFirstUse":true,"signers":["targets/a","targets/b"],"threshold":2}`, ""},
		{"unknown field", `{"server":"https://n","trustOnFirstUse":true,"rootkey":"x"}`, `unknown field "rootkey"`},
		{"no server", `{"trustOnFirstUse":true}`, "server: required"},
		{"http server", `{"server":"http://notary.example.com","trustOnFirstUse":true}`, "insecureHTTP"},
		{"ftp server", `{"server":"ftp://notary.example.com","trustOnFirstUse":true}`, "server: scheme"},
		{"no trust decision", `{"server":"https://n"}`, "rootKeys: required unless trustOnFirstUse"},
		{"both trust decisions", `{"server":"https://n","trustOnFirstUse":true,"rootKeys":[` + string(keyJSON) + `]}`, "rootKeys: set either"},
		{"missing key file", `{"server":"https://n","rootKeys":["nope.pem"]}`, "rootKeys[0]: read nope.pem"},
		{"inline garbage key", `{"server":"https://n","rootKeys":["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]}`, "rootKeys[0]:"},
		{"threshold above signers", `{"server":"https://n","trustOnFirstUse":true,"signers":["targets/a"],"threshold":2}`, "threshold: 2 is more than the 1 listed signers"},
		{"threshold without signers", `{"server":"https://n","trustOnFirstUse":true,"threshold":2}`, "threshold: 2 needs"},
		{"bad signer role", `{"server":"https://n","trustOnFirstUse":true,"signers":["releases"]}`, "signers[0]"},
		{"duplicate signer", `{"server":"https://n","trustOnFirstUse":true,"signers":["targets","targets"]}`, "signers[1]"},
		{"missing CA file", `{"server":"https://n","trustOnFirstUse":true,"caFile":"nope.crt"}`, "caFile: read"},
		{"half credentials", `{"server":"https://n","trustOnFirstUse":true,"credentials":{"usernameEnv":"U"}}`, "credentials"},
		{"unknown credentials field", `{"server":"https://n","trustOnFirstUse":true,"credentials":{"user":"U"}}`, `unknown field "user"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := policytest.Build(Scheme, "dct", json.RawMessage(tc.config), verify.Deps{BaseDir: t.TempDir()})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				if v.Name() != "dct" || v.Type() != "notaryv1" {
					t.Errorf("Name, Type = %q, %q; want dct, notaryv1", v.Name(), v.Type())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("build error = %v, want it to contain %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "notaryv1 dct: ") {
				t.Errorf("build error %q does not name the verifier", err)
			}
		})
	}
}
