package admission

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyAdmissionImportsAdmissionAPI keeps the admission API types in this
// package: the rest of the product (engine, CLI, workload) works on
// trustgate's own types, so `trustgate check` and `verify` cannot drift from
// the webhook. Test tools and benchmarks (test/, bench/) may build reviews.
func TestOnlyAdmissionImportsAdmissionAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/trustgate-dev/trustgate/internal/...", "github.com/trustgate-dev/trustgate/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	self := "github.com/trustgate-dev/trustgate/internal/admission"
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		seen++
		if fields[0] == self {
			continue
		}
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, "k8s.io/api/admission/") {
				t.Errorf("%s imports %s; only %s may", fields[0], imp, self)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("go list saw only %d packages:\n%s", seen, out)
	}
}
