package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// recordingVerifier records the configuration its factory saw.
type recordingVerifier struct {
	name, baseDir string
	cfg           struct {
		Key string `json:"key"`
	}
}

func (v *recordingVerifier) Name() string { return v.name }
func (v *recordingVerifier) Type() string { return "fake" }
func (v *recordingVerifier) Verify(context.Context, verify.Subject) (*verify.Result, error) {
	return nil, verify.ErrUntrusted
}

// recordingConfig is the block of the test scheme "notaryv1".
type recordingConfig struct {
	Key string `json:"key"`
}

// recordingSchemes registers the recording verifier as type "notaryv1"
// (the policies below use that name).
var recordingSchemes = func() *verify.Registry {
	r, err := verify.NewRegistry(verify.Scheme{
		Type:   "notaryv1",
		Config: func() any { return new(recordingConfig) },
		New: func(name string, c any, deps verify.Deps) (verify.Verifier, error) {
			v := &recordingVerifier{name: name, baseDir: deps.BaseDir}
			v.cfg.Key = c.(*recordingConfig).Key
			if v.cfg.Key == "bad" {
				return nil, errors.New("rootKeys: bad key")
			}
			return v, nil
		},
	})
	if err != nil {
		panic(err)
	}
	return r
}()

// parseWith builds a policy with the recording scheme.
func parseWith(data []byte, source string, deps verify.Deps) (*Policy, error) {
	return NewLoader(recordingSchemes, deps).Parse(data, source)
}

const good = `
apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: warn
unmatched: allow
exemptNamespaces: [kube-system]
settings: {deadline: 5s, cacheTTL: 1m}
verifiers:
  - name: dct
    type: notaryv1
    notaryv1: {key: k}
rules:
  - name: ours
    images: ["myregistry.azurecr.io/team/**", "127.0.0.1:5000/demo/*"]
    verify: [dct]
  - name: staging-only
    namespaces: [staging]
    images: ["reg.io/**"]
    action: allow
    pinDigest: false
  - name: pinned-tags
    images: ["reg.io/app:v*"]
    verify: [dct]
  - name: base
    images: ["nginx", "docker.io/library/*"]
    action: allow
`

func TestParseGood(t *testing.T) {
	p, err := parseWith([]byte(good), "policy.yaml", verify.Deps{BaseDir: "/etc/tg"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != Warn || p.Unmatched != ActionAllow || !p.Exempt("kube-system") || p.Exempt("default") {
		t.Fatalf("top-level fields: %+v", p)
	}
	if p.Settings.Deadline.String() != "5s" || p.Settings.CacheTTL.String() != "1m0s" || p.Settings.RequestTimeout != DefaultRequestTimeout {
		t.Fatalf("settings: %+v", p.Settings)
	}
	if v := p.Verifiers["dct"].(*recordingVerifier); v.cfg.Key != "k" || v.baseDir != "/etc/tg" {
		t.Fatalf("verifier built with %+v", v)
	}
	tests := []struct {
		image, ns, rule string
	}{
		{"myregistry.azurecr.io/team/a/b/c:v1", "default", "ours"},
		{"MYREGISTRY.azurecr.io/team/app@sha256:" + strings.Repeat("a", 64), "default", "ours"},
		{"myregistry.azurecr.io/other/app", "default", ""},
		{"myregistry.azurecr.io/team", "default", ""},
		{"127.0.0.1:5000/demo/app:v1", "default", "ours"},
		{"127.0.0.1:5000/demo/x/app:v1", "default", ""},
		{"127.0.0.1:5001/demo/app:v1", "default", ""},
		{"reg.io/app:v1", "staging", "staging-only"},
		{"reg.io/app:v1", "default", "pinned-tags"},
		{"reg.io/app:latest", "default", ""},
		{"reg.io/app@sha256:" + strings.Repeat("a", 64), "default", ""},
		{"nginx", "default", "base"},
		{"docker.io/library/redis:7", "default", "base"},
		{"index.docker.io/library/redis:7", "default", "base"},
		{"docker.io/bitnami/redis:7", "default", ""},
		{"evil.io/docker.io/library/redis", "default", ""},
	}
	for _, tc := range tests {
		t.Run(tc.image+"@"+tc.ns, func(t *testing.T) {
			r := p.Match(imageref.MustParse(tc.image), tc.ns)
			got := ""
			if r != nil {
				got = r.Name
			}
			if got != tc.rule {
				t.Fatalf("Match(%s, %s) = %q, want %q", tc.image, tc.ns, got, tc.rule)
			}
		})
	}
	if r := p.Match(imageref.MustParse("reg.io/app:v1"), "staging"); r.PinDigest {
		t.Error("pinDigest: false not applied")
	}
	if r := p.Match(imageref.MustParse("nginx"), ""); !r.PinDigest || r.Action != ActionAllow {
		t.Error("defaults not applied")
	}
}

func TestParseErrors(t *testing.T) {
	head := "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\n"
	dct := "verifiers: [{name: dct, type: notaryv1, notaryv1: {key: k}}]\n"
	tests := []struct{ name, doc, want string }{
		{"not yaml", "{", "error converting YAML"},
		{"wrong apiVersion", "apiVersion: v1\nkind: Policy\n", "apiVersion"},
		{"wrong kind", "apiVersion: trustgate.dev/v1alpha1\nkind: Pod\n", "kind"},
		{"unknown field", head + "modes: enforce\n", `unknown field "modes"`},
		{"bad mode", head + "mode: strict\n", "mode"},
		{"bad unmatched", head + "unmatched: maybe\n", "unmatched"},
		{"bad duration", head + "settings: {deadline: soon}\n", "settings.deadline"},
		{"deadline too long", head + "settings: {deadline: 60s}\n", "settings.deadline"},
		{"unknown verifier type", head + "verifiers: [{name: x, type: magic}]\n", "verifiers[0] (x).type"},
		{"verifier without name", head + "verifiers: [{type: notaryv1}]\n", "verifiers[0].name"},
		{"duplicate verifier", head + "verifiers: [{name: x, type: notaryv1}, {name: x, type: notaryv1}]\n", "verifiers[1].name"},
		{"block of other type", head + "verifiers: [{name: x, type: notaryv1, cosign: {a: 1}}]\n", "verifiers[0] (x).cosign"},
		{"verifier config unknown field", head + "verifiers: [{name: x, type: notaryv1, notaryv1: {kee: 1}}]\n", `unknown field "kee"`},
		{"verifier config refused", head + "verifiers: [{name: x, type: notaryv1, notaryv1: {key: bad}}]\n", "verifiers[0] (x).notaryv1: rootKeys: bad key"},
		{"rule without images", head + dct + "rules: [{name: r, verify: [dct]}]\n", "rules[0]: (r).images"},
		{"rule bad pattern", head + dct + "rules: [{name: r, images: ['a b'], verify: [dct]}]\n", "rules[0]: (r).images[0]"},
		{"rule triple star", head + dct + "rules: [{name: r, images: ['reg.io/***'], verify: [dct]}]\n", "rules[0]: (r).images[0]"},
		{"rule registry only", head + dct + "rules: [{name: r, images: ['reg.io'], verify: [dct]}]\n", "names a registry"},
		{"rule unknown verifier", head + dct + "rules: [{name: r, images: [reg.io/x], verify: [nope]}]\n", `(r).verify[0]: no verifier named "nope"`},
		{"rule verify without verifiers", head + dct + "rules: [{name: r, images: [reg.io/x]}]\n", "(r).verify"},
		{"allow with verifiers", head + dct + "rules: [{name: r, images: [reg.io/x], action: allow, verify: [dct]}]\n", "(r).verify: only allowed"},
		{"bad action", head + "rules: [{name: r, images: [reg.io/x], action: skip}]\n", "(r).action"},
		{"bad require", head + dct + "rules: [{name: r, images: [reg.io/x], verify: [dct], require: most}]\n", "(r).require"},
		{"require more than listed", head + dct + "rules: [{name: r, images: [reg.io/x], verify: [dct], require: 2}]\n", "(r).require: 2 is not between 1 and the 1 verifiers listed"},
		{"require zero", head + dct + "rules: [{name: r, images: [reg.io/x], verify: [dct], require: 0}]\n", "(r).require: 0 is not between"},
		{"require a list", head + dct + "rules: [{name: r, images: [reg.io/x], verify: [dct], require: [1]}]\n", "require: want all, any or a number"},
		{"verifier listed twice", head + dct + "rules: [{name: r, images: [reg.io/x], verify: [dct, dct], require: 2}]\n", `(r).verify[1]: "dct" is listed twice`},
		{"require on allow", head + "rules: [{name: r, images: [reg.io/x], action: allow, require: any}]\n", "(r).require: only allowed with action verify"},
		{"allow with open registry pins", head + "rules: [{name: r, images: ['**'], action: allow}]\n", "leaves the registry open"},
		{"duplicate rule", head + "rules: [{name: r, images: [reg.io/x], action: allow}, {name: r, images: [reg.io/y], action: allow}]\n", "rules[1].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWith([]byte(tc.doc), "p.yaml", verify.Deps{})
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tc.want)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "p.yaml") {
				t.Fatalf("error %q: want ErrInvalid naming p.yaml and containing %q", err, tc.want)
			}
		})
	}
}

func TestRequireSpellings(t *testing.T) {
	head := "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\n"
	vs := "verifiers: [{name: a, type: notaryv1, notaryv1: {key: k}}, {name: b, type: notaryv1, notaryv1: {key: k}}, {name: c, type: notaryv1, notaryv1: {key: k}}]\n"
	for _, tc := range []struct {
		require string
		need    int
	}{{"", 3}, {"all", 3}, {"any", 1}, {"1", 1}, {"2", 2}, {"3", 3}, {`"2"`, 2}} {
		doc := head + vs + "rules: [{name: r, images: [reg.io/x], verify: [a, b, c]"
		if tc.require != "" {
			doc += ", require: " + tc.require
		}
		p, err := parseWith([]byte(doc+"}]\n"), "p.yaml", verify.Deps{})
		if err != nil {
			t.Fatalf("require %s: %v", tc.require, err)
		}
		if got := p.Rules[0].Need; got != tc.need {
			t.Errorf("require %s: need %d, want %d", tc.require, got, tc.need)
		}
	}
}

func TestLoadResolvesBaseDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := NewLoader(recordingSchemes, verify.Deps{}).Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Verifiers["dct"].(*recordingVerifier).baseDir; got != dir {
		t.Fatalf("BaseDir = %q, want %q", got, dir)
	}
	if _, err := NewLoader(recordingSchemes, verify.Deps{}).Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, make([]byte, MaxPolicyBytes+10), 0o600)
	if _, err := NewLoader(recordingSchemes, verify.Deps{}).Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized policy: %v", err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("apiVersion: trustgate.dev/v1alpha1\nkind: Policy\nrules: [{name: r, images: ['**'], action: allow, pinDigest: false}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseWith(data, "fuzz.yaml", verify.Deps{})
		if err != nil {
			return
		}
		// A policy that loads must be usable without panics.
		p.Match(imageref.MustParse("reg.io/a/b:c"), "ns")
	})
}
