package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// allowedInterpreter is an image admitted by the e2e policy's allow rule
// (registry.allowed.example/**, pinDigest false): the "python:3" of a pod
// whose code comes from an image volume.
const allowedInterpreter = "registry.allowed.example/library/python:3"

// imageVolumePod is a Pod whose container runs allowedInterpreter on the
// content of an image volume that names volumeImage.
func imageVolumePod(name, volumeImage string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: %s
    command: [python3, /code/main.py]
    volumeMounts:
    - {name: code, mountPath: /code}
  volumes:
  - name: scratch
    emptyDir: {}
  - name: code
    image:
      reference: %s
      pullPolicy: IfNotPresent
`, name, allowedInterpreter, volumeImage)
}

// TestImageVolumes: the kubelet pulls and mounts an image volume's image, so
// trustgate judges it like a container image: an unverified one is refused
// with the field's path in kubectl's error, a signed one is stored pinned.
func TestImageVolumes(t *testing.T) {
	s := requireMain(t)

	t.Run("the API server stores image volumes without trustgate", func(t *testing.T) {
		// A namespace claimed by an instance that does not exist: no
		// trustgate judges it. This is the control for the tests below:
		// ImageVolume is GA (locked on) since 1.36, so the field must be
		// kept, not dropped as a disabled feature's field would be.
		ns := newNamespace(t, s.C, "e2e-imagevolume-unjudged", "nobody")
		waitJudged(t, s.C, ns, s.D.NoTrustData.Ref, func(_, _ string, err error) bool { return err == nil })
		if _, stderr, err := applyStdin(s, ns, imageVolumePod("plain", s.D.NoTrustData.Ref)); err != nil {
			t.Fatalf("pod with an image volume refused without trustgate: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/plain", "{.spec.volumes[1].image.reference}"); got != s.D.NoTrustData.Ref {
			t.Fatalf("stored image volume reference = %q, want %q (is the ImageVolume feature off?)", got, s.D.NoTrustData.Ref)
		}
	})

	ns := s.judgedNamespace(t, "e2e-imagevolume")
	t.Run("unsigned volume image refused", func(t *testing.T) {
		for _, img := range []string{s.D.NoTrustData.Ref, s.D.UnsignedTag.Ref} {
			_, stderr, err := applyStdin(s, ns, imageVolumePod("unsigned", img))
			if err == nil {
				t.Fatalf("pod with unverified image volume %s admitted", img)
			}
			for _, want := range []string{"denied the request", `"` + img + `" at /spec/volumes/1/image/reference`} {
				if !strings.Contains(stderr, want) {
					t.Errorf("kubectl's error lacks %q:\n%s", want, stderr)
				}
			}
		}
		if out, _, _ := s.C.Kubectl("-n", ns, "get", "pod/unsigned", "--ignore-not-found", "-o", "name"); out != "" {
			t.Errorf("refused pod was stored: %q", out)
		}
	})
	t.Run("signed volume image stored pinned", func(t *testing.T) {
		signed := s.D.Signed
		if _, stderr, err := applyStdin(s, ns, imageVolumePod("signed", signed.Ref)); err != nil {
			t.Fatalf("pod with a signed image volume refused: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "pod/signed", "{.spec.volumes[1].image.reference}"); got != signed.Pinned() {
			t.Errorf("stored image volume reference = %q, want %q", got, signed.Pinned())
		}
		if got := s.get(t, ns, "pod/signed", "{.spec.containers[0].image}"); got != allowedInterpreter {
			t.Errorf("container image = %q, want %q untouched (allow rule without pinning)", got, allowedInterpreter)
		}
		want := mustJSON(map[string]string{"/spec/volumes/1/image/reference": signed.Ref})
		if got := s.get(t, ns, "pod/signed", originalImagesPath); got != want {
			t.Errorf("original-images annotation = %s, want %s", got, want)
		}
	})
	t.Run("deployment template: unsigned volume image refused, signed pinned", func(t *testing.T) {
		deployment := func(name, img string) string {
			pod := imageVolumePod(name, img)
			spec := pod[strings.Index(pod, "spec:\n")+len("spec:\n"):]
			spec = strings.Replace(spec, "restartPolicy: Never", "restartPolicy: Always", 1)
			return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %[1]s\nspec:\n  selector: {matchLabels: {app: %[1]s}}\n  template:\n    metadata:\n      labels: {app: %[1]s}\n    spec:\n%[2]s",
				name, indent(spec, 4))
		}
		_, stderr, err := applyStdin(s, ns, deployment("unsigned", s.D.NoTrustData.Ref))
		if err == nil || !strings.Contains(stderr, "/spec/template/spec/volumes/1/image/reference") {
			t.Errorf("deployment with unverified image volume: err %v, stderr %q; want a denial naming the path", err, stderr)
		}
		if _, stderr, err := applyStdin(s, ns, deployment("signed", s.D.SignedOther.Ref)); err != nil {
			t.Fatalf("deployment with a signed image volume refused: %v\n%s", err, stderr)
		}
		if got := s.get(t, ns, "deployment/signed", "{.spec.template.spec.volumes[1].image.reference}"); got != s.D.SignedOther.Pinned() {
			t.Errorf("stored template volume reference = %q, want %q", got, s.D.SignedOther.Pinned())
		}
	})
}
