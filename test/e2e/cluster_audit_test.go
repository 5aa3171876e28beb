package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ch "github.com/trustgate-dev/trustgate/test/harness/cosign"
)

// auditPolicyText is the e2e policy in the middle of a migration: its DCT
// verifier marked deprecated, a cosign verifier beside it, either enough
// (require: any), and an exempt namespace of its own. auditCandidateText is
// the same policy without DCT: what would break on the day the notary
// server goes away.
func auditPolicyText(d *dctEnv, cosignPub string) string {
	p := policyText(d, "enforce", "deny")
	p = strings.Replace(p, "exemptNamespaces: [e2e-exempt]", "exemptNamespaces: [e2e-audit-exempt]", 1)
	p = strings.Replace(p, "  type: notaryv1\n", "  type: notaryv1\n  deprecated: \"DCT is being retired; re-sign with cosign\"\n", 1)
	p = strings.Replace(p, "rules:\n", "- name: e2e-cosign\n  type: cosign\n  cosign: {keys: ["+cosignPub+"]}\nrules:\n", 1)
	return strings.Replace(p, "  verify: [e2e-dct]\n", "  verify: [e2e-dct, e2e-cosign]\n  require: any\n", 1)
}

func auditCandidateText(d *dctEnv, cosignPub string) string {
	p := auditPolicyText(d, cosignPub)
	p = strings.Replace(p, "  verify: [e2e-dct, e2e-cosign]\n  require: any\n", "  verify: [e2e-cosign]\n", 1)
	i, j := strings.Index(p, "- name: e2e-dct\n"), strings.Index(p, "- name: e2e-cosign\n")
	return p[:i] + p[j:]
}

type auditJSON struct {
	Rows []struct {
		Namespace, Kind, Name, Image string
		Paths                        []string
		Verdicts                     []struct {
			Policy, Verdict, Rule, Digest, Reason string
			Verifiers, Deprecated                 []string
		}
	}
	Summary []struct {
		Policy                                                               string
		Objects, Images, DeniedObjects, DeprecatedOnlyObjects, ExemptObjects int
		UnavailableObjects                                                   int
	}
}

// TestClusterAudit stores pods and workloads with signed, unsigned and
// allowed images in namespaces trustgate does not judge at admission (so
// they exist whatever their signatures), then audits them with the real
// binary against the real API server: verdicts per image, the candidate
// policy side by side, exempt namespaces, summary counts, pagination, the
// three output formats and the exit code.
func TestClusterAudit(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	dir := t.TempDir()

	// Signed with cosign only, and with both DCT and cosign.
	cli := ch.NewCLI(t)
	cosignKey, pub, err := cli.GenerateKeyPair("audit")
	if err != nil {
		t.Fatal(err)
	}
	cosignOnly, _, err := d.Registry.PushRandomImage("e2e/cosignonly", "v1")
	if err != nil {
		t.Fatal(err)
	}
	both, size, err := d.Registry.PushRandomImage("e2e/app", "both")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Signer.Sign(d.GUN, "both", both, size); err != nil {
		t.Fatal(err)
	}
	for _, dg := range []string{d.Registry.Repo("e2e/cosignonly") + "@" + cosignOnly, d.GUN + "@" + both} {
		if err := cli.Sign(cosignKey, dg, false); err != nil {
			t.Fatal(err)
		}
	}
	cosignOnlyRef, bothRef := d.Registry.Repo("e2e/cosignonly")+":v1", d.GUN+":both"

	// Namespaces labelled trustgate.dev/exempt are skipped by every webhook
	// registration, so objects are stored as written.
	nss := []string{"e2e-audit-a", "e2e-audit-b", "e2e-audit-exempt"}
	for _, ns := range nss {
		newNamespace(t, c, ns, "")
		if _, stderr, err := c.Kubectl("label", "namespace", ns, "trustgate.dev/exempt=true"); err != nil {
			t.Fatalf("label %s: %v\n%s", ns, err, stderr)
		}
	}
	create := func(ns, name, img string) {
		t.Helper()
		if _, stderr, err := c.Kubectl("-n", ns, "run", name, "--image="+img, "--restart=Never"); err != nil {
			t.Fatalf("create pod %s/%s: %v\n%s", ns, name, err, stderr)
		}
	}
	create("e2e-audit-a", "signed-1", d.Signed.Ref)
	create("e2e-audit-a", "signed-2", d.Signed.Ref)
	create("e2e-audit-a", "allowed", "registry.allowed.example/tools/x:1")
	create("e2e-audit-a", "both", bothRef)
	create("e2e-audit-b", "cosign-only", cosignOnlyRef)
	create("e2e-audit-b", "unsigned", d.UnsignedTag.Ref)
	create("e2e-audit-b", "elsewhere", "evil.example/x:1")
	create("e2e-audit-exempt", "unsigned", d.UnsignedTag.Ref)
	if _, stderr, err := c.KubectlInput(context.Background(), strings.NewReader(deploymentYAML("web", d.SignedOther.Ref)), "-n", "e2e-audit-b", "apply", "-f", "-"); err != nil {
		t.Fatalf("create deployment: %v\n%s", err, stderr)
	}

	pol := filepath.Join(dir, "policy.yaml")
	cand := filepath.Join(dir, "no-dct.yaml")
	if err := os.WriteFile(pol, []byte(auditPolicyText(d, pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cand, []byte(auditCandidateText(d, pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		full := append([]string{"audit", "--kubeconfig", c.Kubeconfig, "--policy", pol}, args...)
		for _, ns := range nss {
			full = append(full, "-n", ns)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, full...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("trustgate audit: %v", err)
		}
		return stdout.String(), stderr.String(), code
	}

	out, stderr, code := run("--policy", cand, "-o", "json", "--page-size", "1")
	if code != 1 {
		t.Fatalf("exit code %d, want 1 (something would be denied)\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	var got auditJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("audit -o json: %v\n%s", err, out)
	}
	// Pagination: one object per page means at least one page per object.
	if !strings.Contains(stderr, "audit: 9 objects in") {
		t.Errorf("stderr does not report 9 objects:\n%s", stderr)
	}
	type key struct{ ns, kind, name, image string }
	verdicts := map[key][2]string{}
	for _, r := range got.Rows {
		if len(r.Verdicts) != 2 {
			t.Fatalf("row %+v: want verdicts of both policies", r)
		}
		verdicts[key{r.Namespace, r.Kind, r.Name, r.Image}] = [2]string{r.Verdicts[0].Verdict, r.Verdicts[1].Verdict}
		if v := r.Verdicts[0]; v.Verdict == "admit" && v.Rule == "e2e-signed" {
			// Only what DCT alone admits is "deprecated only"; a digest
			// is always proven.
			dctOnly := strings.Join(v.Verifiers, ",") == "e2e-dct"
			if v.Digest == "" || dctOnly != (strings.Join(v.Deprecated, ",") == "e2e-dct") {
				t.Errorf("row %s/%s %s: verifiers %v, deprecated %v, digest %q", r.Namespace, r.Name, r.Image, v.Verifiers, v.Deprecated, v.Digest)
			}
		}
	}
	want := map[key][2]string{
		{"e2e-audit-a", "Pod", "signed-1", d.Signed.Ref}:                        {"admit", "deny"},
		{"e2e-audit-a", "Pod", "signed-2", d.Signed.Ref}:                        {"admit", "deny"},
		{"e2e-audit-a", "Pod", "allowed", "registry.allowed.example/tools/x:1"}: {"admit", "admit"},
		{"e2e-audit-a", "Pod", "both", bothRef}:                                 {"admit", "admit"},
		{"e2e-audit-b", "Pod", "cosign-only", cosignOnlyRef}:                    {"admit", "admit"},
		{"e2e-audit-b", "Pod", "unsigned", d.UnsignedTag.Ref}:                   {"deny", "deny"},
		{"e2e-audit-b", "Pod", "elsewhere", "evil.example/x:1"}:                 {"deny", "deny"},
		{"e2e-audit-b", "Deployment", "web", d.SignedOther.Ref}:                 {"admit", "deny"},
		{"e2e-audit-exempt", "Pod", "unsigned", d.UnsignedTag.Ref}:              {"exempt", "exempt"},
	}
	for k, w := range want {
		if g, ok := verdicts[k]; !ok || g != w {
			t.Errorf("%v: verdicts %v, want %v", k, g, w)
		}
	}
	if len(got.Summary) != 2 {
		t.Fatalf("summary: %+v", got.Summary)
	}
	cur, next := got.Summary[0], got.Summary[1]
	if cur.Objects != 9 || cur.DeniedObjects != 2 || cur.ExemptObjects != 1 || cur.DeprecatedOnlyObjects != 3 {
		t.Errorf("current policy summary %+v: want 9 objects, 2 denied, 1 exempt, 3 admitted through deprecated verifiers only", cur)
	}
	// What breaks without DCT is exactly what only DCT admits today.
	var onlyDCT, breaks []string
	for _, r := range got.Rows {
		if len(r.Verdicts[0].Deprecated) > 0 {
			onlyDCT = append(onlyDCT, r.Namespace+"/"+r.Name)
		}
		if r.Verdicts[0].Verdict == "admit" && r.Verdicts[1].Verdict != "admit" {
			breaks = append(breaks, r.Namespace+"/"+r.Name)
		}
	}
	if strings.Join(onlyDCT, ",") != strings.Join(breaks, ",") || len(breaks) != 3 {
		t.Errorf("admitted only through DCT: %v; denied by the candidate policy: %v; want the same three", onlyDCT, breaks)
	}
	if next.DeniedObjects != 5 {
		t.Errorf("candidate summary %+v: want 5 denied once DCT is gone", next)
	}

	out, _, code = run("-o", "csv")
	if code != 1 {
		t.Errorf("csv: exit code %d, want 1", code)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(recs) != 1+len(want) {
		t.Errorf("csv: %d records (%v), want header + %d:\n%s", len(recs), err, len(want), out)
	}

	out, _, _ = run()
	for _, s := range []string{"NAMESPACE", "VERDICT", d.UnsignedTag.Ref, "admit (deprecated only)", "would be denied", "in exempt namespaces"} {
		if !strings.Contains(out, s) {
			t.Errorf("table output lacks %q:\n%s", s, out)
		}
	}
}
