package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/test/harness/dct"
	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

// TestSmallAudit is the benchmark at a size `make test` affords (500 pods in
// 10 namespaces, 30 images signed with the notary CLI, pages of 100): the
// real binary against the real kube-apiserver and notary-server, with every
// check of the full run: each repository verified once, verifier calls
// equal to the distinct (image, verifier) pairs, the binary and the
// in-process audit in agreement, peak RSS under 150 MiB.
func TestSmallAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd, kube-apiserver and notary-server")
	}
	dct.RequireBinaries(t, "notary", "notary-server", "etcd")
	root, err := kube.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "trustgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/trustgate")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/trustgate: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kube.DefaultBuildTimeout+5*time.Minute)
	defer cancel()
	o := options{
		trustgate: bin, pods: 500, namespaces: 10, repos: 30, tags: 1, pageSize: 100,
		createWorkers: 8, signWorkers: 2, work: filepath.Join(dir, "work"), out: filepath.Join(dir, "BENCHMARKS.md"),
		command: "go test ./bench/auditbench", maxRSSMiB: 150,
	}
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := run(ctx, o)
	if errors.Is(err, kube.ErrUnavailable) {
		kube.SkipOrFail(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		t.Error(p)
	}
	// Pods in pages of 100, then one page for each of the 7 other kinds
	// (none stored).
	if b := res.Binary; b.Pages != 500/100+7 || b.Objects != 500 {
		t.Errorf("binary read %d objects in %d pages, want 500 in %d", b.Objects, b.Pages, 500/100+7)
	}
	if n := res.InProcess.VerifierCalls; n != 30 {
		t.Errorf("%d verifier calls, want 30", n)
	}
	report, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{beginMarker, "## Cluster audit (issue 13)", "| verifier calls (same audit in process, calls counted) | **30** for 30 distinct", "Checks passed", endMarker} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	section := func(s string) string { return beginMarker + "\n" + s + "\n" + endMarker + "\n" }
	steps := []struct {
		name, before, section, want string
	}{
		{"new file", "", section("one"), section("one")},
		{"appended", "# title\n", section("one"), "# title\n\n" + section("one")},
		{"replaced in place", "# t\n\n" + section("one") + "\n## after\n", section("two"), "# t\n\n" + section("two") + "\n## after\n"},
	}
	for _, tc := range steps {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before == "" {
				os.Remove(path)
			} else if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := replaceSection(path, tc.section); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
