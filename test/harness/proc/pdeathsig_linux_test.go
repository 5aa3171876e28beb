package proc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary play the parent of TestChildDiesWithParent
// when PROC_HELPER_PARENT names a folder.
func TestMain(m *testing.M) {
	if dir := os.Getenv("PROC_HELPER_PARENT"); dir != "" {
		helperParent(dir)
		return
	}
	os.Exit(m.Run())
}

// helperParent starts a child, prints its PID and waits to be killed.
func helperParent(dir string) {
	p, err := Start(Spec{Path: "/bin/sleep", Args: []string{"300"}, LogFile: filepath.Join(dir, "sleep.log")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("child=" + strconv.Itoa(p.Pid()))
	time.Sleep(time.Minute)
	os.Exit(3) // the test kills us long before this
}

// TestChildDiesWithParent checks Pdeathsig: a child outlives a SIGKILLed
// `go test` otherwise, since nobody runs its Stop.
func TestChildDiesWithParent(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PROC_HELPER_PARENT="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	child := 0
	sc := bufio.NewScanner(out)
	for child == 0 && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "child="); ok {
			child, _ = strconv.Atoi(v)
		}
	}
	if child == 0 {
		t.Fatalf("helper printed no child pid: %v", sc.Err())
	}
	if gone(child) {
		t.Fatalf("child %d not running before the parent died", child)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, child)
}
