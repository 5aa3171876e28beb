package notaryv1

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestSchemeFiles: every file a configuration reads is listed (so a change
// to it rebuilds the verifier and is watched), inline PEM is not.
func TestSchemeFiles(t *testing.T) {
	for _, tc := range []struct {
		name, block string
		want        []string
	}{
		{"none", `{"server":"https://n.example","trustOnFirstUse":true}`, nil},
		{"all kinds", `{"server":"https://n.example","caFile":"ca.crt","rootKeys":["a.pem","-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----","/etc/b.pem"],"credentials":{"dockerConfig":"config.json"}}`,
			[]string{"ca.crt", "a.pem", "/etc/b.pem", "config.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Scheme.Config()
			if err := verify.DecodeStrict(json.RawMessage(tc.block), cfg); err != nil {
				t.Fatal(err)
			}
			if got := Scheme.Files(cfg); !slices.Equal(got, tc.want) {
				t.Fatalf("Files = %q, want %q", got, tc.want)
			}
		})
	}
	// A constructor error is an error, not a typed nil verifier.
	v, err := Scheme.New("x", &Config{}, verify.Deps{})
	if err == nil || v != nil {
		t.Fatalf("New with an empty config: %v, %v", v, err)
	}
}
