package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// fakeConfig is the block of the test scheme "fake".
type fakeConfig struct {
	Key  string `json:"key"`
	File string `json:"file,omitempty"`
}

// fakeVerifier is one built instance; id tells instances apart.
type fakeVerifier struct {
	name string
	id   int64
	cfg  fakeConfig
	deps verify.Deps
}

func (v *fakeVerifier) Name() string { return v.name }
func (v *fakeVerifier) Type() string { return "fake" }
func (v *fakeVerifier) Verify(context.Context, verify.Subject) (*verify.Result, error) {
	return nil, verify.ErrUntrusted
}

// fakeSchemes returns a registry with schemes "fake" and "other" and a
// counter of instances built.
func fakeSchemes(t *testing.T) (*verify.Registry, *atomic.Int64) {
	t.Helper()
	var built atomic.Int64
	mk := func(typ string) verify.Scheme {
		return verify.Scheme{
			Type:   typ,
			Config: func() any { return new(fakeConfig) },
			Files: func(c any) []string {
				if f := c.(*fakeConfig).File; f != "" {
					return []string{f}
				}
				return nil
			},
			New: func(name string, c any, deps verify.Deps) (verify.Verifier, error) {
				cfg := *c.(*fakeConfig)
				if cfg.Key == "bad" {
					return nil, errors.New("key: bad")
				}
				if cfg.File != "" {
					if _, err := os.ReadFile(verify.ResolvePath(deps.BaseDir, cfg.File)); err != nil {
						return nil, err
					}
				}
				return &fakeVerifier{name: name, id: built.Add(1), cfg: cfg, deps: deps}, nil
			},
		}
	}
	r, err := verify.NewRegistry(mk("fake"), mk("other"))
	if err != nil {
		t.Fatal(err)
	}
	return r, &built
}

const reloadBase = `apiVersion: trustgate.dev/v1alpha1
kind: Policy
verifiers:
  - name: a
    type: fake
    fake: {key: one, file: key.pem}
  - name: b
    type: other
    other: {key: two}
rules:
  - {name: r, images: ["reg.io/**"], verify: [a, b]}
`

func writePolicy(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func instance(t *testing.T, p *Policy, name string) *fakeVerifier {
	t.Helper()
	v, ok := p.Verifiers[name].(*fakeVerifier)
	if !ok {
		t.Fatalf("verifier %s: %T", name, p.Verifiers[name])
	}
	return v
}

// TestLoaderKeepsVerifiers: instances survive a reload unless their type,
// name, block, referenced files or per-policy deps changed; Generation
// changes with every input.
func TestLoaderKeepsVerifiers(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, []byte("key one"), 0o600); err != nil {
		t.Fatal(err)
	}
	schemes, built := fakeSchemes(t)
	l := NewLoader(schemes, verify.Deps{})
	path := writePolicy(t, dir, reloadBase)
	p0, err := l.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a0, b0 := instance(t, p0, "a"), instance(t, p0, "b")
	if built.Load() != 2 {
		t.Fatalf("built %d instances, want 2", built.Load())
	}
	if a0.deps.BaseDir != dir || a0.deps.RequestTimeout != DefaultRequestTimeout {
		t.Fatalf("deps: %+v", a0.deps)
	}
	if len(p0.Inputs) != 2 || p0.Inputs[0].Path != path || p0.Inputs[1].Path != keyFile || p0.Inputs[1].SHA256 != sumHex([]byte("key one")) {
		t.Fatalf("inputs: %+v", p0.Inputs)
	}

	r1 := strings.Replace(reloadBase, `verify: [a, b]`, `verify: [a, b], pinDigest: false`, 1)
	r3 := strings.Replace(r1, "{key: two}", "{key: three}", 1)
	r5 := strings.Replace(r3, "kind: Policy\n", "kind: Policy\nsettings: {requestTimeout: 1s}\n", 1)
	steps := []struct {
		name string
		// text is the policy after the step (each builds on the previous one).
		text   string
		before func() // changes a file before the reload
		sameA  bool   // verifier a (c after the rename) is the previous instance
		sameB  bool
		builds int64 // instances built by this reload
	}{
		{"rule change only", r1, nil, true, true, 0},
		{"layout and deprecation only", strings.Replace(r1, "    fake: {key: one, file: key.pem}", "    deprecated: going away\n    fake:\n      file: key.pem\n      key: one", 1), nil, true, true, 0},
		{"one block changed", r3, nil, true, false, 1},
		{"referenced file changed, policy text not", r3, func() {
			if err := os.WriteFile(keyFile, []byte("key two"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false, true, 1},
		{"request timeout changed", r5, nil, false, false, 2},
		{"renamed", strings.NewReplacer("name: a\n", "name: c\n", "[a, b]", "[c, b]").Replace(r5), nil, false, true, 1},
	}
	prev, prevA := p0, "a"
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before()
			}
			before := built.Load()
			p, err := l.Load(writePolicy(t, dir, st.text))
			if err != nil {
				t.Fatal(err)
			}
			if got := built.Load() - before; got != st.builds {
				t.Errorf("built %d instances, want %d", got, st.builds)
			}
			aName := "a"
			if _, ok := p.Verifiers["c"]; ok {
				aName = "c"
			}
			if same := instance(t, p, aName) == instance(t, prev, prevA); same != st.sameA {
				t.Errorf("verifier a reused = %v, want %v", same, st.sameA)
			}
			if same := instance(t, p, "b") == instance(t, prev, "b"); same != st.sameB {
				t.Errorf("verifier b reused = %v, want %v", same, st.sameB)
			}
			if p.Generation == prev.Generation {
				t.Errorf("generation %s did not change", p.Generation)
			}
			prev, prevA = p, aName
		})
	}

	// The first text again, with another key file content: another
	// generation, and a verifier built with the new content.
	p, err := l.Load(writePolicy(t, dir, reloadBase))
	if err != nil {
		t.Fatal(err)
	}
	if p.Generation == p0.Generation {
		t.Fatal("same policy text with another key file kept the generation")
	}
	if instance(t, p, "a") == a0 || instance(t, p, "b") == b0 {
		t.Fatal("instances dropped earlier came back")
	}
}

// TestLoaderRefusedPolicyChangesNothing: a policy that fails to load keeps
// the set of the policy in force; what it built is not kept; a dropped
// verifier is not resurrected.
func TestLoaderRefusedPolicyChangesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	schemes, built := fakeSchemes(t)
	l := NewLoader(schemes, verify.Deps{})
	p0, err := l.Load(writePolicy(t, dir, reloadBase))
	if err != nil {
		t.Fatal(err)
	}
	// b changes (built) but a rule is broken: refused.
	broken := strings.Replace(strings.Replace(reloadBase, "{key: two}", "{key: three}", 1), "verify: [a, b]", "verify: [a, nobody]", 1)
	if _, err := l.Load(writePolicy(t, dir, broken)); err == nil || !strings.Contains(err.Error(), `no verifier named "nobody"`) {
		t.Fatalf("broken policy: %v", err)
	}
	// A missing referenced file: refused, and Attempted names it.
	missing := strings.Replace(reloadBase, "file: key.pem", "file: later.pem", 1)
	if _, err := l.Load(writePolicy(t, dir, missing)); err == nil || !strings.Contains(err.Error(), "later.pem") {
		t.Fatalf("missing file: %v", err)
	}
	if att := l.Attempted(); len(att) != 2 || att[1] != filepath.Join(dir, "later.pem") {
		t.Fatalf("attempted: %v", att)
	}
	before := built.Load()
	p1, err := l.Load(writePolicy(t, dir, reloadBase))
	if err != nil {
		t.Fatal(err)
	}
	if built.Load() != before || instance(t, p1, "a") != instance(t, p0, "a") || instance(t, p1, "b") != instance(t, p0, "b") {
		t.Fatalf("after refused policies the instances of the policy in force were not reused (built %d more)", built.Load()-before)
	}
	if p1.Generation != p0.Generation {
		t.Fatalf("same inputs, generation %s != %s", p1.Generation, p0.Generation)
	}

	// Dropping b, then bringing it back, builds it anew.
	onlyA := strings.NewReplacer("  - name: b\n    type: other\n    other: {key: two}\n", "", "[a, b]", "[a]").Replace(reloadBase)
	if _, err := l.Load(writePolicy(t, dir, onlyA)); err != nil {
		t.Fatal(err)
	}
	p3, err := l.Load(writePolicy(t, dir, reloadBase))
	if err != nil {
		t.Fatal(err)
	}
	if instance(t, p3, "b") == instance(t, p0, "b") || instance(t, p3, "a") != instance(t, p0, "a") {
		t.Fatal("a dropped verifier came back, or a kept one was rebuilt")
	}
}

func TestVerifierEntries(t *testing.T) {
	schemes, _ := fakeSchemes(t)
	head := "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\nverifiers:\n"
	tests := []struct {
		name, entry, want string
	}{
		{"block of another registered type", "  - {name: x, type: fake, fake: {key: k}, other: {key: k}}\n", "verifiers[0] (x).other: unknown field"},
		{"misspelt field", "  - {name: x, type: fake, fake: {key: k}, deprecatd: soon}\n", "verifiers[0] (x).deprecatd: unknown field"},
		{"block without type", "  - {name: x, fake: {key: k}}\n", "verifiers[0] (x).type: required"},
		{"unknown type lists the registered ones", "  - {name: x, type: cosign, cosign: {}}\n", `verifiers[0] (x).type: "cosign" is not one of fake, other`},
		{"unknown field inside the block", "  - {name: x, type: fake, fake: {key: k, kye: k}}\n", `verifiers[0] (x).fake: json: unknown field "kye"`},
		{"constructor error names the verifier", "  - {name: x, type: fake, fake: {key: bad}}\n", "verifiers[0] (x).fake: key: bad"},
		{"second entry", "  - {name: x, type: fake, fake: {key: k}}\n  - {name: z, type: other, fake: {key: k}}\n", "verifiers[1] (z).fake: unknown field"},
		{"name not a string", "  - {name: [x], type: fake}\n", "verifiers[0] ().name: want a string"},
		{"duplicate name", "  - {name: x, type: fake, fake: {key: k}}\n  - {name: x, type: other, other: {key: k}}\n", `verifiers[1].name: "x" is defined twice`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewLoader(schemes, verify.Deps{}).Parse([]byte(head+tc.entry), "p.yaml")
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}

	// A null block decodes as an empty configuration; deprecated is kept.
	p, err := NewLoader(schemes, verify.Deps{}).Parse([]byte(head+"  - {name: x, type: fake, deprecated: DCT ends, fake: null}\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Deprecated["x"] != "DCT ends" || instance(t, p, "x").cfg != (fakeConfig{}) {
		t.Fatalf("deprecated %v, cfg %+v", p.Deprecated, instance(t, p, "x").cfg)
	}
}

func TestVerifierFileRoundTrip(t *testing.T) {
	in := VerifierFile{Name: "x", Type: "fake", Deprecated: "soon", Block: json.RawMessage(`{"key":"k"}`)}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"deprecated":"soon","fake":{"key":"k"},"name":"x","type":"fake"}` {
		t.Fatalf("marshal: %s", data)
	}
	var out VerifierFile
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if out.Name != in.Name || out.Type != in.Type || out.Deprecated != in.Deprecated || string(out.Block) != string(in.Block) {
		t.Fatalf("round trip: %+v", out)
	}
}

// TestLoaderNilVerifier: a scheme whose constructor returns neither a
// verifier nor an error is a load error, not a nil verifier in a rule.
func TestLoaderNilVerifier(t *testing.T) {
	r, err := verify.NewRegistry(verify.Scheme{
		Type:   "nothing",
		Config: func() any { return new(struct{}) },
		New:    func(string, any, verify.Deps) (verify.Verifier, error) { return nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewLoader(r, verify.Deps{}).Parse([]byte("apiVersion: trustgate.dev/v1alpha1\nkind: Policy\nverifiers: [{name: x, type: nothing}]\n"), "p.yaml")
	if err == nil || !strings.Contains(err.Error(), "built no verifier") {
		t.Fatalf("error %v", err)
	}
}
