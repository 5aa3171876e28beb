package cli

import (
	"strings"
	"testing"
)

// imageVolumeManifest is a Pod whose container image is signed and whose
// image volume names image (the kubelet pulls and mounts it too).
func imageVolumeManifest(image string) string {
	return `apiVersion: v1
kind: Pod
metadata: {name: runner}
spec:
  containers:
    - name: app
      image: reg.test/team/app:v1
      volumeMounts: [{name: code, mountPath: /code}]
  volumes:
    - name: scratch
      emptyDir: {}
    - name: code
      image:
        reference: ` + image + `  # the content the interpreter runs
        pullPolicy: IfNotPresent
`
}

func TestCheckJudgesImageVolumes(t *testing.T) {
	f := newFixture(t, "enforce")
	code, out, errOut := run(t, imageVolumeManifest("reg.test/team/app:v9"), "check", "--policy", f.policy, "-f", "-")
	if code != 1 || !strings.Contains(out, "Pod/runner (document 1) DENY reg.test/team/app:v9") {
		t.Fatalf("unsigned image volume: exit %d, want 1 with a DENY line\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, imageVolumeManifest("reg.test/team/app:v1"), "check", "--policy", f.policy, "-f", "-")
	if code != 0 || !strings.Contains(out, "ALLOW reg.test/team/app:v1 "+signedDigest) {
		t.Fatalf("signed image volume: exit %d, want 0\n%s\n%s", code, out, errOut)
	}
}

func TestCheckPinImageVolumes(t *testing.T) {
	f := newFixture(t, "enforce")
	code, out, errOut := run(t, imageVolumeManifest("reg.test/team/app:v1"), "check", "--policy", f.policy, "-f", "-", "--pin")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	pinned := "reg.test/team/app:v1@" + signedDigest
	for _, want := range []string{
		"image: " + pinned,
		"reference: " + pinned + " # the content the interpreter runs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--pin output lacks %q:\n%s", want, out)
		}
	}
	// An unsigned volume image is reported and left as written.
	code, out, errOut = run(t, imageVolumeManifest("reg.test/team/app:v9"), "check", "--policy", f.policy, "-f", "-", "--pin")
	if code != 1 || !strings.Contains(out, "reference: reg.test/team/app:v9") || !strings.Contains(errOut, "DENY reg.test/team/app:v9") {
		t.Fatalf("unsigned volume with --pin: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}
