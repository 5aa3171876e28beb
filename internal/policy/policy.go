// Package policy loads trustgate's policy file: which images need which
// signatures. Everything that can be wrong with a policy is found at load
// time (unknown fields, bad patterns, unknown verifiers, bad verifier
// configuration), so a running server never meets a half-valid policy.
package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// APIVersion and Kind identify a policy document.
const (
	APIVersion = "trustgate.dev/v1alpha1"
	Kind       = "Policy"
)

// Mode says what a deny does.
type Mode string

const (
	Enforce Mode = "enforce" // deny
	Warn    Mode = "warn"    // admit, with warnings shown by kubectl
	Audit   Mode = "audit"   // admit, log and audit-annotate only
)

// Action is what a rule (or the unmatched fallback) does.
type Action string

const (
	ActionVerify Action = "verify"
	ActionAllow  Action = "allow"
	ActionDeny   Action = "deny"
)

// Require says how a rule's verifiers combine: "all", "any", or a number k
// (at least k of the listed verifiers), as written.
type Require string

const (
	RequireAll Require = "all" // every listed verifier must pass
	RequireAny Require = "any" // one is enough (migrations between schemes)
)

// UnmarshalJSON accepts `require: all`, `require: any` and `require: 2`
// (a YAML number); the number is checked against the rule's verifiers when
// the rule is compiled.
func (r *Require) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*r = Require(strconv.Itoa(n))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("require: want all, any or a number of verifiers, got %s", b)
	}
	*r = Require(s)
	return nil
}

// ErrInvalid is matched by every policy error.
var ErrInvalid = errors.New("invalid policy")

// Default tunables; the policy's `settings` may change them.
const (
	DefaultDeadline       = 8 * time.Second
	DefaultCacheTTL       = 5 * time.Minute
	DefaultDenyCacheTTL   = 10 * time.Second
	DefaultRequestTimeout = 3 * time.Second
	MaxPolicyBytes        = 1 << 20
)

// File is the policy document as written.
type File struct {
	APIVersion       string        `json:"apiVersion"`
	Kind             string        `json:"kind"`
	Mode             Mode          `json:"mode,omitempty"`
	Unmatched        Action        `json:"unmatched,omitempty"`
	ExemptNamespaces []string      `json:"exemptNamespaces,omitempty"`
	Settings         SettingsFile  `json:"settings,omitempty"`
	Verifiers        VerifierFiles `json:"verifiers,omitempty"`
	Rules            []RuleFile    `json:"rules,omitempty"`
}

// SettingsFile holds runtime tunables.
type SettingsFile struct {
	Deadline       string `json:"deadline,omitempty"`       // whole admission decision, default 8s
	RequestTimeout string `json:"requestTimeout,omitempty"` // one outbound HTTP request, default 3s
	CacheTTL       string `json:"cacheTTL,omitempty"`       // verified decisions, default 5m
	DenyCacheTTL   string `json:"denyCacheTTL,omitempty"`   // definite denies, default 10s
	// ValidateRequiresDigest (default true): /validate refuses a tag-only
	// reference under a rule that pins, since /mutate should have pinned it.
	// false is for clusters that run only /validate.
	ValidateRequiresDigest *bool `json:"validateRequiresDigest,omitempty"`
}

// VerifierFile is one named trust configuration: `{name, type, <type>:
// {...}}` with exactly one block, named like its type, which that type's
// registered scheme decodes (UnmarshalJSON in verifiers.go).
type VerifierFile struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Deprecated, when set, says why this verifier is on its way out (e.g.
	// "DCT ends on Docker Hub on 2026-12-08"); images admitted only through
	// deprecated verifiers are admitted with a warning naming it.
	Deprecated string `json:"deprecated,omitempty"`
	// Block is the configuration block (the key named by Type) as written.
	Block json.RawMessage `json:"-"`
}

// RuleFile is one rule as written.
type RuleFile struct {
	Name       string   `json:"name"`
	Images     []string `json:"images"`
	Namespaces []string `json:"namespaces,omitempty"` // empty: every namespace
	Action     Action   `json:"action,omitempty"`     // default verify
	Verify     []string `json:"verify,omitempty"`
	Require    Require  `json:"require,omitempty"`   // default all
	PinDigest  *bool    `json:"pinDigest,omitempty"` // default true
}

// Policy is a loaded, validated policy with its verifiers built.
type Policy struct {
	Mode             Mode
	Unmatched        Action
	ExemptNamespaces []string
	Rules            []*Rule
	Verifiers        map[string]verify.Verifier
	// Deprecated maps a verifier's name to the reason it is deprecated.
	Deprecated map[string]string
	Settings   Settings
	// Generation identifies this policy's content, the files its verifiers
	// read included; caches key on it so a changed policy (or key file)
	// never reuses an old decision.
	Generation string
	Source     string
	// Inputs are the files the policy was built from with their content
	// hashes: the policy file (when loaded from one) and the files its
	// verifiers read. A server watches them for changes.
	Inputs []Input
}

// Settings are the parsed tunables.
type Settings struct {
	Deadline, RequestTimeout, CacheTTL, DenyCacheTTL time.Duration
	// ValidateAcceptsTags is settings.validateRequiresDigest: false. The
	// zero value is the strict one.
	ValidateAcceptsTags bool
}

// Rule is a compiled rule.
type Rule struct {
	Name       string
	Patterns   []Pattern
	Namespaces []string
	Action     Action
	Verifiers  []verify.Verifier
	Require    Require
	// Need is how many of Verifiers must pass: len(Verifiers) for all, 1
	// for any, k for `require: k`.
	Need      int
	PinDigest bool
}

// Match returns the first rule (in file order) that covers ref in namespace
// ns, or nil.
func (p *Policy) Match(ref imageref.Ref, ns string) *Rule {
	for _, r := range p.Rules {
		if len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, ns) {
			continue
		}
		for _, pt := range r.Patterns {
			if pt.Match(ref) {
				return r
			}
		}
	}
	return nil
}

// Exempt reports whether objects in ns are not judged at all.
func (p *Policy) Exempt(ns string) bool { return slices.Contains(p.ExemptNamespaces, ns) }

func parse(data []byte, b *verifierBuild) (*Policy, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, err
	}
	if f.APIVersion != APIVersion {
		return nil, fmt.Errorf("apiVersion: want %q, got %q", APIVersion, f.APIVersion)
	}
	if f.Kind != Kind {
		return nil, fmt.Errorf("kind: want %q, got %q", Kind, f.Kind)
	}
	p := &Policy{
		Mode:             f.Mode,
		Unmatched:        f.Unmatched,
		ExemptNamespaces: f.ExemptNamespaces,
		Verifiers:        map[string]verify.Verifier{},
	}
	switch p.Mode {
	case "":
		p.Mode = Enforce
	case Enforce, Warn, Audit:
	default:
		return nil, fmt.Errorf("mode: %q is not one of enforce, warn, audit", f.Mode)
	}
	switch p.Unmatched {
	case "":
		p.Unmatched = ActionDeny
	case ActionDeny, ActionAllow:
	default:
		return nil, fmt.Errorf("unmatched: %q is not one of deny, allow", f.Unmatched)
	}
	var err error
	if p.Settings, err = parseSettings(f.Settings); err != nil {
		return nil, err
	}
	if b.deps.RequestTimeout == 0 {
		b.deps.RequestTimeout = p.Settings.RequestTimeout
	}
	for i, vf := range f.Verifiers {
		field := fmt.Sprintf("verifiers[%d]", i)
		if vf.Name == "" {
			return nil, fmt.Errorf("%s.name: required", field)
		}
		if _, dup := p.Verifiers[vf.Name]; dup {
			return nil, fmt.Errorf("%s.name: %q is defined twice", field, vf.Name)
		}
		v, err := b.verifier(field, vf)
		if err != nil {
			return nil, err
		}
		p.Verifiers[vf.Name] = v
		if vf.Deprecated != "" {
			if p.Deprecated == nil {
				p.Deprecated = map[string]string{}
			}
			p.Deprecated[vf.Name] = vf.Deprecated
		}
	}
	seen := map[string]bool{}
	for i, rf := range f.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		r, err := compileRule(rf, p.Verifiers)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("%s.name: %q is defined twice", field, r.Name)
		}
		seen[r.Name] = true
		p.Rules = append(p.Rules, r)
	}
	p.Generation = b.generation(data)
	p.Inputs = b.inputs
	return p, nil
}

func compileRule(rf RuleFile, verifiers map[string]verify.Verifier) (*Rule, error) {
	if rf.Name == "" {
		return nil, fmt.Errorf("name: required")
	}
	r := &Rule{Name: rf.Name, Namespaces: rf.Namespaces, Action: rf.Action, Require: rf.Require, PinDigest: true}
	if rf.PinDigest != nil {
		r.PinDigest = *rf.PinDigest
	}
	if len(rf.Images) == 0 {
		return nil, fmt.Errorf("(%s).images: at least one pattern is required", rf.Name)
	}
	for j, s := range rf.Images {
		pt, err := CompilePattern(s)
		if err != nil {
			return nil, fmt.Errorf("(%s).images[%d]: %w", rf.Name, j, err)
		}
		r.Patterns = append(r.Patterns, pt)
	}
	switch r.Action {
	case "":
		r.Action = ActionVerify
	case ActionVerify, ActionAllow, ActionDeny:
	default:
		return nil, fmt.Errorf("(%s).action: %q is not one of verify, allow, deny", rf.Name, rf.Action)
	}
	if r.Require == "" {
		r.Require = RequireAll
	}
	if r.Action == ActionAllow && r.PinDigest {
		// Pinning an unverified image means asking its registry for the
		// digest. With a wildcard registry, whoever creates a pod would
		// choose the host trustgate connects to.
		for j, pt := range r.Patterns {
			if pt.AnyRegistry() {
				return nil, fmt.Errorf("(%s).images[%d]: %q leaves the registry open, so pinning would contact any host a pod names; name the registry or set pinDigest: false", rf.Name, j, pt)
			}
		}
	}
	if r.Action != ActionVerify {
		if len(rf.Verify) > 0 {
			return nil, fmt.Errorf("(%s).verify: only allowed with action verify", rf.Name)
		}
		if rf.Require != "" {
			return nil, fmt.Errorf("(%s).require: only allowed with action verify", rf.Name)
		}
		return r, nil
	}
	if len(rf.Verify) == 0 {
		return nil, fmt.Errorf("(%s).verify: action verify needs at least one verifier", rf.Name)
	}
	for j, n := range rf.Verify {
		v, ok := verifiers[n]
		if !ok {
			return nil, fmt.Errorf("(%s).verify[%d]: no verifier named %q", rf.Name, j, n)
		}
		if slices.Contains(rf.Verify[:j], n) {
			return nil, fmt.Errorf("(%s).verify[%d]: %q is listed twice", rf.Name, j, n)
		}
		r.Verifiers = append(r.Verifiers, v)
	}
	switch r.Require {
	case RequireAll:
		r.Need = len(r.Verifiers)
	case RequireAny:
		r.Need = 1
	default:
		k, err := strconv.Atoi(string(r.Require))
		if err != nil {
			return nil, fmt.Errorf("(%s).require: %q is not one of all, any, or a number of verifiers", rf.Name, rf.Require)
		}
		if k < 1 || k > len(r.Verifiers) {
			return nil, fmt.Errorf("(%s).require: %d is not between 1 and the %d verifiers listed", rf.Name, k, len(r.Verifiers))
		}
		r.Need = k
	}
	return r, nil
}

func parseSettings(s SettingsFile) (Settings, error) {
	out := Settings{Deadline: DefaultDeadline, RequestTimeout: DefaultRequestTimeout, CacheTTL: DefaultCacheTTL, DenyCacheTTL: DefaultDenyCacheTTL}
	out.ValidateAcceptsTags = s.ValidateRequiresDigest != nil && !*s.ValidateRequiresDigest
	for _, f := range []struct {
		name string
		text string
		into *time.Duration
	}{
		{"settings.deadline", s.Deadline, &out.Deadline},
		{"settings.requestTimeout", s.RequestTimeout, &out.RequestTimeout},
		{"settings.cacheTTL", s.CacheTTL, &out.CacheTTL},
		{"settings.denyCacheTTL", s.DenyCacheTTL, &out.DenyCacheTTL},
	} {
		if f.text == "" {
			continue
		}
		d, err := time.ParseDuration(f.text)
		if err != nil || d < 0 {
			return out, fmt.Errorf("%s: %q is not a duration like 8s", f.name, f.text)
		}
		*f.into = d
	}
	if out.Deadline <= 0 || out.Deadline > 30*time.Second {
		return out, fmt.Errorf("settings.deadline: must be in (0s, 30s], the API server's limit")
	}
	if s.RequestTimeout == "" && out.RequestTimeout > out.Deadline {
		out.RequestTimeout = out.Deadline
	}
	if out.RequestTimeout <= 0 || out.RequestTimeout > out.Deadline {
		return out, fmt.Errorf("settings.requestTimeout: must be positive and at most the deadline")
	}
	return out, nil
}
