package acr

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestSchemeFiles: the CA bundle and the docker config are listed.
func TestSchemeFiles(t *testing.T) {
	cfg := Scheme.Config()
	if err := verify.DecodeStrict(json.RawMessage(`{"registry":"r.azurecr.io","caFile":"ca.crt","credentials":{"dockerConfig":"config.json"}}`), cfg); err != nil {
		t.Fatal(err)
	}
	if got := Scheme.Files(cfg); !slices.Equal(got, []string{"ca.crt", "config.json"}) {
		t.Fatalf("Files = %q", got)
	}
	v, err := Scheme.New("x", &Config{}, verify.Deps{})
	if err == nil || v != nil {
		t.Fatalf("New with an empty config: %v, %v", v, err)
	}
}
