package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// MaxReferencedFileBytes bounds one file a verifier's configuration names
// (keys, CA bundles, docker configs): it is read to be hashed.
const MaxReferencedFileBytes = 4 << 20

// verifierKeys are the fields of a verifier entry besides its block.
var verifierKeys = map[string]bool{"name": true, "type": true, "deprecated": true}

// UnmarshalJSON reads `{name, type, deprecated, <type>: {...}}`: the one
// configuration block is the key named by type, kept as written for the
// scheme to decode. Any other key (a block of another type, a misspelt
// field) is refused, so a policy cannot carry configuration that nothing
// reads.
func (v *VerifierFile) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("(?): want an object with name and type: %w", err)
	}
	var out VerifierFile
	for _, f := range []struct {
		k   string
		dst *string
	}{{"name", &out.Name}, {"type", &out.Type}, {"deprecated", &out.Deprecated}} {
		k, dst := f.k, f.dst
		raw, ok := fields[k]
		if !ok {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("(%s).%s: want a string, got %s", out.Name, k, raw)
		}
	}
	if out.Type == "" {
		return fmt.Errorf("(%s).type: required", out.Name)
	}
	var extra []string
	for k, raw := range fields {
		switch {
		case verifierKeys[k]:
		case k == out.Type:
			if string(raw) != "null" {
				out.Block = raw
			}
		default:
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("(%s).%s: unknown field or a block that does not match type %q (a verifier takes name, type, deprecated and the one block named by its type)",
			out.Name, extra[0], out.Type)
	}
	*v = out
	return nil
}

// VerifierFiles is the policy's verifier list; it decodes each entry with
// its index in errors ("verifiers[2] (x).cosign: ...").
type VerifierFiles []VerifierFile

// UnmarshalJSON decodes a JSON array of verifier entries.
func (vs *VerifierFiles) UnmarshalJSON(b []byte) error {
	var raws []json.RawMessage
	if err := json.Unmarshal(b, &raws); err != nil {
		return fmt.Errorf("verifiers: want a list: %w", err)
	}
	out := make(VerifierFiles, len(raws))
	for i, raw := range raws {
		if err := out[i].UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("verifiers[%d] %w", i, err)
		}
	}
	*vs = out
	return nil
}

// MarshalJSON writes the shape UnmarshalJSON reads.
func (v VerifierFile) MarshalJSON() ([]byte, error) {
	m := map[string]any{"name": v.Name, "type": v.Type}
	if v.Deprecated != "" {
		m["deprecated"] = v.Deprecated
	}
	if len(v.Block) > 0 && v.Type != "" && !verifierKeys[v.Type] {
		m[v.Type] = v.Block
	}
	return json.Marshal(m)
}

// Input is a file a policy was built from, with the SHA-256 of the content
// it was built with: the policy file and every file its verifiers read.
// Watchers compare it with the disk to know when to reload.
type Input struct {
	Path   string // absolute when the policy was loaded from a file
	SHA256 string // hex; "" when the file could not be read
}

// Loader builds policies from the registered schemes and keeps verifier
// instances across policies: a verifier whose type, name, configuration
// block and referenced files (by content) are unchanged is reused by the
// next policy, so what it learned (trusted roots, rollback floors, cached
// metadata, connection pools) survives a reload; a changed one is built
// anew; one the new policy drops is dropped. Only a policy that loads
// completely replaces the kept set, so a refused policy changes nothing.
//
// Instances are not closed when dropped: a policy still answering in-flight
// requests may use them, and they hold nothing but memory and idle
// connections, which the garbage collector reclaims.
type Loader struct {
	schemes *verify.Registry
	deps    verify.Deps

	mu        sync.Mutex
	live      map[string]verify.Verifier // instance key → verifier
	attempted []string                   // files the last load read, success or not
}

// NewLoader returns a loader for schemes (nil: the process's registered
// ones) with deps for every verifier it builds. deps.BaseDir is set per
// policy file by Load; deps.RequestTimeout, when zero, comes from the
// policy's settings.
func NewLoader(schemes *verify.Registry, deps verify.Deps) *Loader {
	if schemes == nil {
		schemes = verify.Registered()
	}
	return &Loader{schemes: schemes, deps: deps, live: map[string]verify.Verifier{}}
}

// Load reads and builds the policy at path. Relative file paths inside it
// resolve against its folder.
func (l *Loader) Load(path string) (*Policy, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempted = []string{abs}
	data, err := readCapped(path, MaxPolicyBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	deps := l.deps
	deps.BaseDir = filepath.Dir(abs)
	p, err := l.parseLocked(data, path, deps)
	if err != nil {
		return nil, err
	}
	p.Inputs = append([]Input{{Path: abs, SHA256: sumHex(data)}}, p.Inputs...)
	return p, nil
}

// Parse builds a policy from YAML (or JSON) data; source names it in
// errors. Relative paths resolve against the loader's deps.BaseDir.
func (l *Loader) Parse(data []byte, source string) (*Policy, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempted = nil
	return l.parseLocked(data, source, l.deps)
}

// Attempted lists the files the last Load or Parse read (or tried to), in
// order, the policy file first. After a refused policy, watching these
// (and not only the files of the policy in force) notices when a file the
// new policy needs appears or is fixed.
func (l *Loader) Attempted() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slicesClone(l.attempted)
}

func (l *Loader) parseLocked(data []byte, source string, deps verify.Deps) (*Policy, error) {
	b := &verifierBuild{l: l, deps: deps, next: map[string]verify.Verifier{}}
	p, err := parse(data, b)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalid, source, err)
	}
	p.Source = source
	l.live = b.next
	return p, nil
}

// verifierBuild builds (or reuses) the verifiers of one policy.
type verifierBuild struct {
	l    *Loader
	deps verify.Deps
	// next becomes the loader's live set if the policy loads.
	next map[string]verify.Verifier
	// keys are the instance keys of the policy's verifiers, in file order;
	// they enter its Generation.
	keys   []string
	inputs []Input
}

// verifier builds the verifier vf, or reuses the live instance with the
// same identity. field names it in errors ("verifiers[2]").
func (b *verifierBuild) verifier(field string, vf VerifierFile) (verify.Verifier, error) {
	s, ok := b.l.schemes.Lookup(vf.Type)
	if !ok {
		types := b.l.schemes.Types()
		if len(types) == 0 {
			return nil, fmt.Errorf("%s (%s).type: %q is not a registered verifier type (none are registered)", field, vf.Name, vf.Type)
		}
		return nil, fmt.Errorf("%s (%s).type: %q is not one of %s", field, vf.Name, vf.Type, strings.Join(types, ", "))
	}
	cfg := s.Config()
	if err := verify.DecodeStrict(vf.Block, cfg); err != nil {
		return nil, fmt.Errorf("%s (%s).%s: %w", field, vf.Name, vf.Type, err)
	}
	// The identity: everything the instance is built from. The block is
	// the JSON the YAML converted to (keys sorted), so layout changes in
	// the file do not count; the deps that vary by policy (its folder,
	// its request timeout) do.
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %q %d\n", vf.Type, vf.Name, b.deps.BaseDir, b.deps.RequestTimeout)
	h.Write(canonicalJSON(vf.Block))
	if s.Files != nil {
		for _, f := range s.Files(cfg) {
			path := verify.ResolvePath(b.deps.BaseDir, f)
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			b.l.attempted = append(b.l.attempted, path)
			sum := ""
			data, err := readCapped(path, MaxReferencedFileBytes)
			switch {
			case err == nil:
				sum = sumHex(data)
			case os.IsNotExist(err) || os.IsPermission(err):
				// The scheme's constructor reports the file precisely; the
				// empty sum never matches a readable file's.
			default:
				return nil, fmt.Errorf("%s (%s).%s: %s: %v", field, vf.Name, vf.Type, f, err)
			}
			fmt.Fprintf(h, "\nfile %q %s", path, sum)
			b.inputs = append(b.inputs, Input{Path: path, SHA256: sum})
		}
	}
	key := hex.EncodeToString(h.Sum(nil))
	b.keys = append(b.keys, key)
	if v, ok := b.l.live[key]; ok {
		b.next[key] = v
		return v, nil
	}
	v, err := s.New(vf.Name, cfg, b.deps)
	if err != nil {
		return nil, fmt.Errorf("%s (%s).%s: %w", field, vf.Name, vf.Type, err)
	}
	if v == nil {
		return nil, fmt.Errorf("%s (%s).%s: the scheme built no verifier", field, vf.Name, vf.Type)
	}
	b.next[key] = v
	return v, nil
}

// generation identifies a policy by its text and by what its verifiers were
// built from (referenced files included), so a changed key file is a new
// generation even when the policy text is the same.
func (b *verifierBuild) generation(data []byte) string {
	h := sha256.New()
	h.Write(data)
	for _, k := range b.keys {
		h.Write([]byte("\n" + k))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// canonicalJSON re-encodes a block with sorted keys and no spacing so that
// equal configurations hash equally whatever produced the JSON.
func canonicalJSON(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return out
}

func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return buf.Bytes(), nil
}

func sumHex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
