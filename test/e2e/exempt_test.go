package e2e

import (
	"strings"
	"testing"
)

// exemptLabel is the namespace label with which deploy/base's webhook
// configurations leave a namespace alone (the emergency exit).
const exemptLabel = "trustgate.dev/exempt"

func admittedResult(_, _ string, err error) bool { return err == nil }

// TestExemptLabel: labelling a namespace trustgate.dev/exempt takes it out of
// trustgate's hands at once (the API server stops calling the webhooks there);
// removing the label puts it back. It also shows what happens to a workload
// created meanwhile: updates that keep its images are admitted (only new or
// changed images are judged), a changed image is judged again.
func TestExemptLabel(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-exempt-label")
	unsigned := s.D.NoTrustData.Ref

	if _, stderr, err := runPod(s, ns, "before", unsigned); err == nil || !strings.Contains(stderr, "denied the request") {
		t.Fatalf("unsigned pod before labelling: err %v, stderr %q; want trustgate's denial", err, stderr)
	}

	if _, _, err := s.C.Kubectl("label", "namespace", ns, exemptLabel+"=true"); err != nil {
		t.Fatal(err)
	}
	// The API server's namespace cache follows the label asynchronously.
	waitJudged(t, s.C, ns, unsigned, admittedResult)
	if _, _, err := runPod(s, ns, "during", unsigned); err != nil {
		t.Fatalf("unsigned pod refused in a namespace labelled %s: %v", exemptLabel, err)
	}
	if got := s.get(t, ns, "pod/during", "{.spec.containers[0].image}"+originalImagesPath); got != unsigned {
		t.Errorf("stored image and original-images annotation = %q, want %q untouched (trustgate was not called)", got, unsigned)
	}
	if _, _, err := applyStdin(s, ns, deploymentYAML("legacy", unsigned)); err != nil {
		t.Fatalf("unsigned deployment refused in an exempt namespace: %v", err)
	}

	if _, _, err := s.C.Kubectl("label", "namespace", ns, exemptLabel+"-"); err != nil {
		t.Fatal(err)
	}
	waitJudged(t, s.C, ns, unsigned, deniedResult)
	if _, stderr, err := runPod(s, ns, "after", unsigned); err == nil || !strings.Contains(stderr, "denied the request") {
		t.Fatalf("unsigned pod after removing the label: err %v, stderr %q; want trustgate's denial", err, stderr)
	}

	t.Run("update keeping the images is not judged", func(t *testing.T) {
		if _, _, err := s.C.Kubectl("-n", ns, "label", "deployment", "legacy", "tier=front"); err != nil {
			t.Fatalf("label change of a deployment with unchanged (unsigned) images refused: %v", err)
		}
	})
	t.Run("changed image is judged", func(t *testing.T) {
		_, stderr, err := s.C.Kubectl("-n", ns, "set", "image", "deployment/legacy", "app="+s.D.UnsignedTag.Ref)
		if err == nil || !strings.Contains(stderr, "denied the request") || !strings.Contains(stderr, "not signed") {
			t.Errorf("changing to an unsigned image: err %v, stderr %q; want trustgate's denial", err, stderr)
		}
		if _, _, err := s.C.Kubectl("-n", ns, "set", "image", "deployment/legacy", "app="+s.D.Signed.Ref); err != nil {
			t.Fatalf("changing to a signed image refused: %v", err)
		}
		got := s.get(t, ns, "deployment/legacy", "{.spec.template.spec.containers[0].image} {.spec.template.spec.initContainers[0].image}")
		if want := s.D.Signed.Pinned() + " " + unsigned; got != want {
			t.Errorf("images = %q, want %q (the changed one pinned, the unchanged one as it was)", got, want)
		}
	})
}
