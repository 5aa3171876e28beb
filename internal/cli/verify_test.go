package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/engine"
)

// `trustgate verify -o json` shows every verifier's outcome and says
// whether a deny is definite or could not complete.
func TestVerifyJSONOutcomes(t *testing.T) {
	f := newFixture(t, "enforce")
	// A second verifier whose server refuses connections: unavailable.
	doc, err := os.ReadFile(f.policy)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(doc), "rules:\n", `  - name: gone
    type: notaryv1
    notaryv1: {server: "https://127.0.0.1:1", caFile: `+f.srv.CAFile(t)+`, rootKeys: [root.pem]}
rules:
  - {name: either, images: ["reg.test/team/*"], namespaces: [either], verify: [gone, dct], require: any}
  - {name: both, images: ["reg.test/team/*"], namespaces: [both], verify: [dct, gone]}
`, 1)
	if err := os.WriteFile(filepath.Join(f.dir, "two.yaml"), []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	type out struct {
		Decision  string           `json:"decision"`
		Allowed   bool             `json:"allowed"`
		Reason    string           `json:"reason"`
		Verifiers []engine.Outcome `json:"verifiers"`
	}
	for _, tc := range []struct {
		ns, image, decision string
		code                int
		status              map[string]engine.Status
	}{
		{"default", "reg.test/team/app:v1", "allow", 0, map[string]engine.Status{"dct": engine.Passed}},
		{"default", "reg.test/team/app:v2", "deny", 1, map[string]engine.Status{"dct": engine.NotTrusted}},
		{"either", "reg.test/team/app:v1", "allow", 0, map[string]engine.Status{"dct": engine.Passed}},
		{"either", "reg.test/team/app:v2", "unavailable", 1, map[string]engine.Status{"dct": engine.NotTrusted, "gone": engine.Unavailable}},
		{"both", "reg.test/team/app:v1", "unavailable", 1, map[string]engine.Status{"dct": engine.Passed, "gone": engine.Unavailable}},
		{"both", "reg.test/team/app:v2", "deny", 1, map[string]engine.Status{"dct": engine.NotTrusted}},
	} {
		t.Run(tc.ns+"/"+tc.image, func(t *testing.T) {
			code, stdout, stderr := run(t, "", "verify", "--policy", filepath.Join(f.dir, "two.yaml"), "-n", tc.ns, "-o", "json", tc.image)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s %s", code, tc.code, stdout, stderr)
			}
			var got out
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if got.Decision != tc.decision || got.Allowed != (tc.decision == "allow") {
				t.Fatalf("decision %q allowed %v (%s), want %s", got.Decision, got.Allowed, got.Reason, tc.decision)
			}
			seen := map[string]engine.Status{}
			for _, o := range got.Verifiers {
				seen[o.Verifier] = o.Status
				if o.Type != "notaryv1" || (o.Status != engine.Passed && o.Status != engine.Skipped && o.Reason == "") {
					t.Errorf("outcome %+v lacks its type or reason", o)
				}
			}
			for v, want := range tc.status {
				if seen[v] != want {
					t.Errorf("%s: %q, want %q (all: %+v)", v, seen[v], want, got.Verifiers)
				}
			}
		})
	}
}
