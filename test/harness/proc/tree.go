package proc

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CommittedTree returns a copy of the tree committed in the git checkout at
// root (`git archive` of HEAD, or of the commit in IMAGEBUILD_TEST_COMMIT)
// and its revision, so what a test builds is one commit whatever is being
// edited meanwhile; outside a git checkout, root itself and "unknown".
func CommittedTree(t testing.TB, root string) (dir, revision string) {
	t.Helper()
	commit := os.Getenv("IMAGEBUILD_TEST_COMMIT")
	if commit == "" {
		commit = "HEAD"
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", commit+"^{commit}").Output()
	if err != nil {
		t.Logf("not a git checkout (%v): building the working tree", err)
		return root, "unknown"
	}
	dir = t.TempDir()
	revision = strings.TrimSpace(string(out))
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", revision)
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v", revision, err)
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("untar git archive: %v", err)
	}
	return dir, revision
}
