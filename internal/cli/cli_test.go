package cli

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
)

const (
	signedDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	otherDigest  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// fixture is a policy whose notaryv1 verifier points at an in-memory notary
// server with one signed tag (reg.test/team/app:v1).
type fixture struct {
	dir, policy string
	srv         *notaryfake.Server
}

func newFixture(t *testing.T, mode string) *fixture {
	t.Helper()
	srv := notaryfake.New(t)
	repo := srv.NewRepo("reg.test/team/app")
	repo.AddTarget("targets", "v1", signedDigest, 500)
	repo.Publish()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), []byte(repo.RootKey().PublicPEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: %s
exemptNamespaces: [kube-system]
verifiers:
  - name: dct
    type: notaryv1
    notaryv1: {server: %s, caFile: %s, rootKeys: [root.pem]}
rules:
  - {name: team, images: ["reg.test/team/*"], verify: [dct]}
  - {name: banned, images: ["reg.test/banned/*"], action: deny}
`, mode, srv.URL(), srv.CAFile(t))
	f := &fixture{dir: dir, policy: filepath.Join(dir, "policy.yaml"), srv: srv}
	if err := os.WriteFile(f.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRoot()
	root.SetIn(strings.NewReader(stdin))
	code := executeWith(root, args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVerify(t *testing.T) {
	f := newFixture(t, "enforce")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
	}{
		{"signed tag", []string{"reg.test/team/app:v1"}, 0, []string{"ALLOW reg.test/team/app:v1 " + signedDigest + " (rule team)"}},
		{"signed tag with its digest", []string{"reg.test/team/app:v1@" + signedDigest}, 0, []string{"ALLOW"}},
		{"tag with another digest", []string{"reg.test/team/app:v1@" + otherDigest}, 1, []string{"DENY reg.test/team/app:v1@" + otherDigest + " (rule team)", "signed for " + signedDigest}},
		{"unsigned tag", []string{"reg.test/team/app:v2"}, 1, []string{"DENY reg.test/team/app:v2 (rule team)", "not signed"}},
		{"unmatched", []string{"nginx"}, 1, []string{"DENY nginx no rule matches docker.io/library/nginx"}},
		{"deny rule", []string{"reg.test/banned/x:1"}, 1, []string{"DENY reg.test/banned/x:1 (rule banned)"}},
		{"bad reference", []string{"Reg.test/UPPER"}, 1, []string{"DENY Reg.test/UPPER", "lower case"}},
		{"one bad among good", []string{"reg.test/team/app:v1", "reg.test/team/app:v2"}, 1, []string{"ALLOW reg.test/team/app:v1", "DENY reg.test/team/app:v2"}},
		{"exempt namespace", []string{"-n", "kube-system", "nginx"}, 0, []string{"EXEMPT"}},
		{"json", []string{"-o", "json", "reg.test/team/app:v1"}, 0, []string{`"allowed":true`, `"digest":"` + signedDigest}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, "", append([]string{"verify", "--policy", f.policy}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout %q does not contain %q", out, want)
				}
			}
		})
	}
}

func TestVerifyWarnModeExitsZero(t *testing.T) {
	f := newFixture(t, "warn")
	code, out, errOut := run(t, "", "verify", "--policy", f.policy, "reg.test/team/app:v2")
	if code != 0 || !strings.Contains(out, "DENY") || !strings.Contains(errOut, "mode is warn") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	f := newFixture(t, "enforce")
	noPin := filepath.Join(f.dir, "nopin.yaml")
	os.WriteFile(noPin, []byte("apiVersion: trustgate.dev/v1alpha1\nkind: Policy\nverifiers: [{name: d, type: notaryv1, notaryv1: {server: "+f.srv.URL()+"}}]\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no policy flag", []string{"verify", "x"}, "--policy is required"},
		{"missing policy", []string{"verify", "--policy", "/nonexistent.yaml", "x"}, "no such file"},
		{"notaryv1 without trust decision", []string{"verify", "--policy", noPin, "x"}, "rootKeys"},
		{"no images", []string{"verify", "--policy", f.policy}, "requires at least 1 arg"},
		{"bad output", []string{"verify", "--policy", f.policy, "-o", "yaml", "x"}, "--output"},
		{"unknown flag", []string{"verify", "--polcy", f.policy}, "unknown flag"},
		{"check without -f", []string{"check", "--policy", f.policy}, "-f is required"},
		{"check bad yaml", []string{"check", "--policy", f.policy, "-f", "-"}, "document 1"},
		{"certs without flags", []string{"certs"}, "required"},
		{"root-key without server", []string{"dct", "root-key", "reg.test/team/app"}, "--server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, "kind: [", tc.args...)
			if code != ExitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d stderr %q; want exit 2 mentioning %q", code, errOut, tc.want)
			}
		})
	}
}

const manifests = `# keep me
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: "reg.test/team/app:v1"}]
      containers:
        - name: app
          image: reg.test/team/app:v1  # pinned by check --pin
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
---
apiVersion: v1
kind: List
items:
  - apiVersion: batch/v1
    kind: CronJob
    metadata: {name: nightly, namespace: kube-system}
    spec:
      schedule: "@daily"
      jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: nginx}]}}}}
`

func TestCheck(t *testing.T) {
	f := newFixture(t, "enforce")
	path := filepath.Join(f.dir, "m.yaml")
	os.WriteFile(path, []byte(manifests), 0o600)
	code, out, errOut := run(t, "", "check", "--policy", f.policy, "-f", path)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"Deployment/web (document 1) ALLOW reg.test/team/app:v1 " + signedDigest, "CronJob/nightly (document 3, item 0) EXEMPT"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	bad := strings.Replace(manifests, "image: reg.test/team/app:v1", "image: reg.test/team/app:v9", 1)
	code, out, _ = run(t, bad, "check", "--policy", f.policy, "-f", "-")
	if code != 1 || !strings.Contains(out, "DENY reg.test/team/app:v9") {
		t.Fatalf("unsigned image in manifests: exit %d\n%s", code, out)
	}
}

func TestCheckPin(t *testing.T) {
	f := newFixture(t, "enforce")
	code, out, errOut := run(t, manifests, "check", "--policy", f.policy, "-f", "-", "--pin")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	pinned := "reg.test/team/app:v1@" + signedDigest
	if strings.Count(out, pinned) != 2 {
		t.Fatalf("want both containers pinned to %s:\n%s", pinned, out)
	}
	for _, keep := range []string{"# keep me", "# pinned by check --pin", "data: {a: b}", "image: nginx"} {
		if !strings.Contains(out, keep) {
			t.Errorf("--pin output lost %q:\n%s", keep, out)
		}
	}
	// Pinning is idempotent: the pinned manifests check clean and stay as they are.
	code, again, _ := run(t, out, "check", "--policy", f.policy, "-f", "-", "--pin")
	if code != 0 || again != out {
		t.Fatalf("second --pin changed the output (exit %d):\n%s", code, again)
	}
}

func TestCertsAndVersion(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := run(t, "", "certs", "--service", "trustgate", "--namespace", "trustgate", "--out", dir, "--ip", "127.0.0.1")
	if code != 0 {
		t.Fatalf("certs: exit %d %s", code, errOut)
	}
	data, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !strings.Contains(strings.Join(cert.DNSNames, ","), "trustgate.trustgate.svc") || len(cert.IPAddresses) != 1 {
		t.Fatalf("serving certificate: %v %v %v", err, cert.DNSNames, cert.IPAddresses)
	}
	code, out, _ := run(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "trustgate ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestRootKey(t *testing.T) {
	srv := notaryfake.New(t)
	repo := srv.NewRepo("reg.test/team/app")
	repo.AddTarget("targets", "v1", signedDigest, 500)
	repo.Publish()
	code, out, errOut := run(t, "", "dct", "root-key", "reg.test/team/app:v1", "--server", srv.URL(), "--ca", srv.CAFile(t))
	if code != 0 || !strings.Contains(out, "-----BEGIN") {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
	}
	// What it prints pins the repository.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.pem"), []byte(out), 0o600)
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
verifiers: [{name: d, type: notaryv1, notaryv1: {server: %s, caFile: %s, rootKeys: [root.pem]}}]
rules: [{name: r, images: ["reg.test/**"], verify: [d]}]
`, srv.URL(), srv.CAFile(t))), 0o600)
	if code, out, _ := run(t, "", "verify", "--policy", filepath.Join(dir, "p.yaml"), "reg.test/team/app:v1"); code != 0 {
		t.Fatalf("pinning the printed key: exit %d %s", code, out)
	}
	if code, _, errOut := run(t, "", "dct", "root-key", "reg.test/none/app", "--server", srv.URL(), "--ca", srv.CAFile(t)); code != 1 {
		t.Fatalf("unknown repository: exit %d %s", code, errOut)
	}
}
