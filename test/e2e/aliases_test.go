package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// aliasPolicy sends myreg.example.com/team, Docker Hub's myorg and the test
// registry's e2e/ tree to the local notary server, and admits everything
// else unverified (unmatched: allow): the setting under which a registry
// alias that escaped its rule ran unverified (issue 9, item 2).
func aliasPolicy(d *dctEnv) string {
	return fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: allow
verifiers:
- name: e2e-dct
  type: notaryv1
  notaryv1:
    server: %s
    caFile: %s
    rootKeys: [%s]
rules:
- name: team
  images: ["myreg.example.com/team/*"]
  verify: [e2e-dct]
- name: hub-org
  images: ["docker.io/myorg/*"]
  verify: [e2e-dct]
- name: e2e-signed
  images: ["%s/e2e/**"]
  verify: [e2e-dct]
`, d.Notary.URL(), d.Notary.CAFile(), d.RootPEMFile, d.Registry.Host())
}

// TestRegistryAliases: through the real API server, every spelling of a
// registry that a verify rule names is judged by that rule, never admitted
// unverified by unmatched: allow. The Docker Hub forms are decided by the
// local notary server (no trust data for docker.io/myorg/app), so nothing
// on the internet is contacted. A signed image written with an alias is
// stored pinned under the canonical name, which the kubelet pulls from the
// same server.
func TestRegistryAliases(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)
	s, err := startStack(t, c, d, bin, stackSpec{name: "aliases", policy: aliasPolicy(d), selector: ownNamespaces("aliases")})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.judgedNamespace(t, "e2e-aliases")
	waitJudged(t, c, ns, d.NoTrustData.Ref, deniedResult)

	// The control: unmatched images are admitted, so each refusal below
	// comes from a verify rule matching the alias.
	if _, stderr, err := runPod(s, ns, "unmatched", "registry.unmatched.example/team/app:1"); err != nil {
		t.Fatalf("unmatched image refused under unmatched: allow: %v\n%s", err, stderr)
	}

	// The test registry's host with its port spelt with a leading zero:
	// the same socket, so the same rule.
	host, port, _ := strings.Cut(d.Registry.Host(), ":")
	zeroPort := host + ":0" + port
	tests := []struct {
		name, image, canonical string
	}{
		{"default https port", "myreg.example.com:443/team/app:1", "myreg.example.com/team/app"},
		{"upper case and default port", "MyReg.Example.COM:443/team/app:1", "myreg.example.com/team/app"},
		{"registry-1.docker.io", "registry-1.docker.io/myorg/app:1", "docker.io/myorg/app"},
		{"index.docker.io", "index.docker.io/myorg/app:1", "docker.io/myorg/app"},
		{"registry-1.docker.io:443", "registry-1.docker.io:443/myorg/app:1", "docker.io/myorg/app"},
		{"docker.io implied", "myorg/app:1", "docker.io/myorg/app"},
		{"port with a leading zero", zeroPort + "/e2e/nosig:v1", d.Registry.Host() + "/e2e/nosig"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runPod(s, ns, fmt.Sprintf("alias-%d", i), tc.image)
			if err == nil {
				t.Fatalf("%s admitted: a verify rule's registry alias ran unverified", tc.image)
			}
			if !strings.Contains(stderr, "denied the request") || !strings.Contains(stderr, tc.canonical) {
				t.Errorf("%s: kubectl's error is not trustgate's denial naming %s:\n%s", tc.image, tc.canonical, stderr)
			}
		})
	}
	t.Run("trailing dot refused", func(t *testing.T) {
		// kubectl run checks the reference format itself (and refuses it
		// too); apply sends it to the API server, which does not.
		pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: trailing-dot}\nspec:\n  containers: [{name: app, image: myreg.example.com./team/app:1}]\n"
		_, stderr, err := applyStdin(s, ns, pod)
		if err == nil || !strings.Contains(stderr, "ends in a dot") {
			t.Errorf("trailing-dot host: err %v, stderr %q; want a denial saying the host ends in a dot", err, stderr)
		}
	})
	t.Run("signed image under an alias stored pinned, canonical", func(t *testing.T) {
		alias := zeroPort + strings.TrimPrefix(d.Signed.Ref, d.Registry.Host())
		if _, stderr, err := runPod(s, ns, "signed-alias", alias); err != nil {
			t.Fatalf("signed image %s refused: %v\n%s", alias, err, stderr)
		}
		if got := s.get(t, ns, "pod/signed-alias", "{.spec.containers[0].image}"); got != d.Signed.Pinned() {
			t.Errorf("stored image = %q, want %q (canonical host, verified digest)", got, d.Signed.Pinned())
		}
	})
	if out, _, _ := c.Kubectl("-n", ns, "get", "pods", "-o", "name"); strings.Count(out, "pod/") != 2 {
		t.Errorf("pods stored: %q, want only pod/unmatched and pod/signed-alias", out)
	}
}
