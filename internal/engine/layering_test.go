package engine

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps dependencies pointing one way:
// cli → server/admission → engine → policy → verify/* → credentials/transport,
// with the Kubernetes API client confined to pullsecrets (and cli, which
// wires it) and inventory (which lists what runs, for audit), and no
// Kubernetes types below the webhook's own packages.
func TestLayering(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the module")
	}
	const mod = "github.com/trustgate-dev/trustgate/internal/"
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/trustgate-dev/trustgate/internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	// forbidden[pkg] lists import prefixes pkg must not use.
	above := func(pkgs ...string) []string {
		var out []string
		for _, p := range pkgs {
			out = append(out, mod+p)
		}
		return out
	}
	forbidden := map[string][]string{
		"imageref":  append(above("policy", "engine", "admission", "cli", "verify", "server"), "k8s.io/"),
		"verify":    append(above("policy", "engine", "admission", "cli", "server", "workload"), "k8s.io/"),
		"policy":    append(above("engine", "admission", "cli", "server", "workload"), "k8s.io/"),
		"cache":     append(above("policy", "engine", "admission", "cli", "verify"), "k8s.io/"),
		"engine":    append(above("admission", "cli", "server", "workload", "pullsecrets"), "k8s.io/"),
		"resolve":   append(above("engine", "admission", "cli", "policy", "pullsecrets"), "k8s.io/"),
		"workload":  above("engine", "admission", "cli", "policy", "verify"),
		"admission": above("cli", "server", "verify", "pullsecrets"),
		"server":    above("cli", "engine", "policy", "verify"),
		"inventory": above("engine", "admission", "cli", "policy", "verify", "server", "audit"),
		"audit":     append(above("admission", "cli", "server", "inventory"), "k8s.io/client-go"),
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], mod) {
			continue
		}
		seen++
		pkg := strings.TrimPrefix(fields[0], mod)
		rules, ok := forbidden[pkg]
		if !ok {
			// verify/notaryv1, verify/acr, ... follow verify's rules.
			if top, _, _ := strings.Cut(pkg, "/"); top == "verify" {
				rules = forbidden["verify"]
			}
		}
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, "k8s.io/client-go") && pkg != "pullsecrets" && pkg != "inventory" && pkg != "cli" {
				t.Errorf("%s imports %s: only pullsecrets and inventory talk to the API server", pkg, imp)
			}
			for _, bad := range rules {
				if imp == bad || strings.HasPrefix(imp, bad+"/") || (strings.HasSuffix(bad, "/") && strings.HasPrefix(imp, bad)) {
					t.Errorf("%s imports %s, against the layering", pkg, imp)
				}
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list saw only %d packages:\n%s", seen, out)
	}
}
