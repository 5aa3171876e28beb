package policy

import (
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestPatternRegistryAliases checks that a pattern and a reference that
// spell one registry differently still meet, whichever side uses the alias:
// both go through imageref.NormalizeRegistry.
func TestPatternRegistryAliases(t *testing.T) {
	tests := []struct {
		pattern, image string
		want           bool
	}{
		{"myreg.example.com/team/*", "myreg.example.com:443/team/app:1", true},
		{"myreg.example.com:443/team/*", "myreg.example.com/team/app:1", true},
		{"myreg.example.com:443/team/*", "myreg.example.com:443/team/app:1", true},
		{"MyReg.Example.com/team/*", "myreg.example.com/team/app:1", true},
		{"myreg.example.com/team/*", "MYREG.example.com:0443/team/app:1", true},
		{"myreg.example.com/team/*", "myreg.example.com:80/team/app:1", false},
		{"myreg.example.com/team/*", "myreg.example.com:5000/team/app:1", false},
		{"myreg.example.com:5000/team/*", "myreg.example.com:05000/team/app:1", true},
		{"docker.io/myorg/*", "registry-1.docker.io/myorg/app:1", true},
		{"docker.io/myorg/*", "index.docker.io/myorg/app:1", true},
		{"docker.io/myorg/*", "myorg/app:1", true},
		{"docker.io/myorg/*", "Registry-1.Docker.io:443/myorg/app:1", true},
		{"registry-1.docker.io/myorg/*", "registry-1.docker.io/myorg/app:1", true},
		{"registry-1.docker.io/myorg/*", "docker.io/myorg/app:1", true},
		{"index.docker.io/myorg/*", "registry-1.docker.io/myorg/app:1", true},
		{"registry-1.docker.io/nginx", "nginx:1", true},
		{"docker.io/myorg/*", "docker.io.evil.com/myorg/app:1", false},
		{"docker.io/myorg/*", "registry-1.docker.io:5000/myorg/app:1", false},
		{"localhost:5000/app", "LOCALHOST:5000/app:1", true},
		{"localhost:5000/app", "127.0.0.1:5000/app:1", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+"~"+tc.image, func(t *testing.T) {
			p, err := CompilePattern(tc.pattern)
			if err != nil {
				t.Fatalf("CompilePattern(%q): %v", tc.pattern, err)
			}
			if got := p.Match(imageref.MustParse(tc.image)); got != tc.want {
				t.Errorf("%q.Match(%q) = %v, want %v", tc.pattern, tc.image, got, tc.want)
			}
		})
	}
}

func TestPatternHostErrors(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"myreg.example.com./team/*", "ends in a dot"},
		{"myreg.example.com:/team/*", "empty port"},
		{"myreg.example.com:70000/team/*", "not between 1 and 65535"},
	} {
		if _, err := CompilePattern(tc.pattern); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CompilePattern(%q) = %v, want an error containing %q", tc.pattern, err, tc.want)
		}
	}
}

// TestAliasesDoNotSkipVerify is issue 9's bypass, at the policy level: with
// a verify rule followed by `unmatched: allow`, every spelling of the
// verified registries must land on the verify rule, never fall through to
// "allow" unverified.
func TestAliasesDoNotSkipVerify(t *testing.T) {
	const doc = `
apiVersion: trustgate.dev/v1alpha1
kind: Policy
unmatched: allow
verifiers:
  - name: dct
    type: notaryv1
    notaryv1: {key: k}
rules:
  - name: team
    images: ["myreg.example.com/team/*", "docker.io/myorg/*"]
    verify: [dct]
  - name: hub-literal
    images: ["registry-1.docker.io/otherorg/*"]
    verify: [dct]
`
	p, err := parseWith([]byte(doc), "p.yaml", verify.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ image, rule string }{
		{"myreg.example.com/team/app:1", "team"},
		{"myreg.example.com:443/team/app:1", "team"},
		{"MyReg.Example.Com:443/team/app:1", "team"},
		{"myreg.example.com:0443/team/app:1", "team"},
		{"myreg.example.com:443/team/app@sha256:" + strings.Repeat("a", 64), "team"},
		{"myorg/app:1", "team"},
		{"docker.io/myorg/app:1", "team"},
		{"registry-1.docker.io/myorg/app:1", "team"},
		{"index.docker.io/myorg/app:1", "team"},
		{"registry-1.docker.io:443/myorg/app:1", "team"},
		{"REGISTRY-1.DOCKER.IO/myorg/app:1", "team"},
		{"otherorg/app:1", "hub-literal"},
		{"registry-1.docker.io/otherorg/app:1", "hub-literal"},
		{"index.docker.io/otherorg/app:1", "hub-literal"},
	} {
		r := p.Match(imageref.MustParse(tc.image), "default")
		if r == nil {
			t.Errorf("%s matched no rule: admitted unverified under unmatched: allow, want rule %q", tc.image, tc.rule)
			continue
		}
		if r.Name != tc.rule || r.Action != ActionVerify {
			t.Errorf("%s matched rule %q (action %v), want verify rule %q", tc.image, r.Name, r.Action, tc.rule)
		}
	}
	// A trailing dot never reaches matching: the reference is refused.
	if _, err := imageref.Parse("myreg.example.com./team/app:1"); err == nil {
		t.Error("myreg.example.com./team/app:1 parsed; it must be denied as invalid")
	}
}
