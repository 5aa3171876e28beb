package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	ch "github.com/trustgate-dev/trustgate/test/harness/cosign"
	"github.com/trustgate-dev/trustgate/test/harness/kube"
	nh "github.com/trustgate-dev/trustgate/test/harness/notation"
	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

// TestOwnImageAdmitted is the dogfood: trustgate's own image, built by
// hack/imagebuild (what `make image` runs) and pushed to the Debian registry,
// is signed with DCT as `docker trust sign` does, with the cosign CLI and with
// Notation (all three required by the policy); deploy/base, with the image
// set by digest, is applied through the real kube-apiserver into a namespace
// judged by a trustgate whose policy demands that signature, and trustgate
// admits its own Deployment. The same Deployment with an unsigned digest of
// the same repository is refused. The SBOM is checked to be a referrer of the
// pushed index in the registry (through the OCI 1.1 fallback tag, since the
// Debian registry has no referrers API).
func TestOwnImageAdmitted(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	root, err := kube.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}

	// Build and push (both platforms, as `make image IMAGE_REPO=…` does).
	const path, tag = "trustgate/trustgate", "e2e"
	repo := d.Registry.Repo(path)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	src, rev := proc.CommittedTree(t, root)
	cmd := exec.CommandContext(ctx, "go", "run", "./hack/imagebuild", "-src", src,
		"-repo", repo+":"+tag, "-version", "v0.0.0-e2e", "-revision", rev, "-epoch", "1700000000",
		"-platforms", "linux/amd64,linux/arm64")
	cmd.Dir = root
	var buildOut, buildErr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buildOut, &buildErr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/imagebuild: %v\n%s", err, buildErr.String())
	}
	lines := strings.Split(strings.TrimSpace(buildOut.String()), "\n")
	pushed := lines[len(lines)-1]
	digest, size, err := d.Registry.Resolve(path, tag)
	if err != nil {
		t.Fatal(err)
	}
	if pushed != repo+"@"+digest {
		t.Fatalf("imagebuild printed %q; the registry serves %s:%s as %s", pushed, repo, tag, digest)
	}

	// Sign the tag with DCT (addhash + publish, as `docker trust sign`).
	if err := d.Signer.Init(repo); err != nil {
		t.Fatal(err)
	}
	if err := d.Signer.Sign(repo, tag, digest, size); err != nil {
		t.Fatal(err)
	}
	rootKey, err := d.Signer.WriteRootKeyPEM(repo)
	if err != nil {
		t.Fatal(err)
	}
	// A digest of the same repository that nobody signed.
	unsignedDigest, _, err := d.Registry.PushRandomImage(path, "unsigned")
	if err != nil {
		t.Fatal(err)
	}

	// And with cosign (a Sigstore bundle by the real CLI, key pair, offline),
	// when its CLI is there; CI must have it.
	cosignVerifier, verifiers := "", "[trustgate-release]"
	if cosignBin, err := ch.Binary(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Logf("cosign CLI unavailable, DCT only: %v", err)
	} else {
		cli := &ch.CLI{Path: cosignBin, Dir: t.TempDir()}
		key, pub, err := cli.GenerateKeyPair("trustgate-release")
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.Sign(key, pushed, false); err != nil {
			t.Fatal(err)
		}
		cosignVerifier = fmt.Sprintf("- name: trustgate-cosign\n  type: cosign\n  cosign:\n    keys: [%s]\n", pub)
		verifiers = "[trustgate-release, trustgate-cosign]\n  require: all"
	}
	// And with Notation (notation-go's signer, JWS, a test CA).
	notaryCA, err := nh.NewCA(nh.Subject("trustgate", "trustgate release root"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := notaryCA.Leaf(nh.LeafOptions{Subject: nh.Subject("trustgate", "release")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nh.Sign(ctx, leaf, repo, digest, nh.SignOptions{MediaType: nh.JWS}); err != nil {
		t.Fatal(err)
	}
	notationCAFile := filepath.Join(t.TempDir(), "notation-ca.pem")
	if err := os.WriteFile(notationCAFile, []byte(notaryCA.PEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	notationVerifier := fmt.Sprintf("- name: trustgate-notation\n  type: notation\n  notation:\n    trustStores: {ca: [%s]}\n    trustedIdentities: [%q]\n",
		notationCAFile, nh.Identity("trustgate", "release"))
	verifiers = strings.Replace(verifiers, "]", ", trustgate-notation]", 1)
	if !strings.Contains(verifiers, "require: all") {
		verifiers += "\n  require: all"
	}

	t.Run("SBOM is a referrer", func(t *testing.T) {
		ref, err := name.NewDigest(pushed, name.StrictValidation)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Referrers(ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		// cosign's signature shares the fallback tag index with the SBOM.
		var types []string
		sboms := 0
		for _, m := range im.Manifests {
			types = append(types, m.ArtifactType)
			if m.ArtifactType == "application/spdx+json" {
				sboms++
			}
		}
		if sboms != 1 {
			t.Errorf("referrers of %s have artifact types %q, want one application/spdx+json", pushed, types)
		}
	})

	// trustgate's own policy for its own image: enforce, pinned keys, every
	// signature required.
	policy := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: deny
verifiers:
- name: trustgate-release
  type: notaryv1
  notaryv1:
    server: %s
    caFile: %s
    rootKeys: [%s]
%srules:
- name: trustgate-itself
  images: ["%s"]
  verify: %s
`, d.Notary.URL(), d.Notary.CAFile(), rootKey, cosignVerifier+notationVerifier, repo, verifiers)
	t.Logf("policy:\n%s", policy)
	s, err := startStack(t, c, d, bin, stackSpec{name: "self", policy: policy, selector: ownNamespaces("self")})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, c, "e2e-self-image", "self")
	waitJudged(t, c, ns, repo+"@"+unsignedDigest, deniedResult)

	// deploy/base with the image by digest, into the judged namespace. Only
	// the namespaced objects are applied: the base's webhook configurations
	// would send every namespace to a Service that has no pods here.
	docs := baseWithImage(t, repo, digest, ns)
	if _, stderr, err := c.KubectlInput(context.Background(), bytes.NewReader(docs), "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatalf("trustgate refused its own signed image: %v\n%s\ntrustgate log:\n%s", err, stderr, s.In.LogTail())
	}
	got, _, err := c.Kubectl("-n", ns, "get", "deployment", "trustgate", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
	if err != nil {
		t.Fatal(err)
	}
	if want := repo + "@" + digest; got != want {
		t.Errorf("stored image = %q, want %q", got, want)
	}
	want := []string{digest, "trustgate-release=passed", "trustgate-notation=passed"}
	if cosignVerifier != "" {
		want = append(want, "trustgate-cosign=passed")
	}
	log := s.In.LogTail()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("trustgate's log does not show %s:\n%s", w, log)
		}
	}

	// The same Deployment with a digest nobody signed.
	_, stderr, err := c.Kubectl("-n", ns, "set", "image", "deployment/trustgate", "trustgate="+repo+"@"+unsignedDigest)
	if err == nil || !strings.Contains(stderr, "denied the request") {
		t.Errorf("unsigned digest of trustgate's repository: err %v, stderr %q; want trustgate's denial", err, stderr)
	}
}

// baseWithImage builds deploy/base with an overlay that sets the image by
// digest and the namespace, and returns its namespaced workload objects.
func baseWithImage(t *testing.T, repo, digest, ns string) []byte {
	t.Helper()
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, filepath.Join(deployDir(t), "base"))
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s
resources:
- %s
images:
- name: ghcr.io/trustgate-dev/trustgate
  newName: %s
  digest: %s
`, ns, rel, repo, digest)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := kustomizeBuild(t, overlay)
	keep := map[string]bool{"Deployment": true, "ConfigMap": true, "ServiceAccount": true, "Service": true, "PodDisruptionBudget": true}
	var out bytes.Buffer
	n := 0
	for key, doc := range objs {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		if !keep[meta.Kind] {
			continue
		}
		if meta.Kind == "Deployment" && !bytes.Contains(doc, []byte(repo+"@"+digest)) {
			t.Fatalf("%s does not name %s@%s:\n%s", key, repo, digest, doc)
		}
		n++
		out.WriteString("---\n")
		out.Write(doc)
		out.WriteString("\n")
	}
	if n != len(keep) {
		t.Fatalf("deploy/base gave %d of the %d namespaced kinds %v", n, len(keep), keep)
	}
	return out.Bytes()
}
