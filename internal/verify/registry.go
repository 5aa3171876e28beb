package verify

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
)

// Scheme describes one signature scheme to the policy loader: adding a
// scheme is one package that exports a Scheme and one Register line in the
// composition root (internal/cli). The policy package names no scheme.
type Scheme struct {
	// Type is the name policies use in `type:` and as the configuration
	// block's key, e.g. "notaryv1".
	Type string
	// Config returns a pointer to a new, zero configuration (say
	// new(notaryv1.Config)). The policy loader decodes the verifier's block
	// into it strictly: an unknown field is an error naming it.
	Config func() any
	// Files lists the files a decoded configuration reads (CA bundles, key
	// files, docker configs), as written; relative paths resolve against
	// Deps.BaseDir. Their contents are hashed into the verifier's identity,
	// so a changed file rebuilds the verifier, and they are watched like the
	// policy file. Inline material (PEM in the policy) is not a file. May be
	// nil when the scheme reads no file.
	Files func(cfg any) []string
	// New builds a verifier from the configuration Config returned, after
	// decoding. It must reject bad values with an error naming the field.
	New func(name string, cfg any, deps Deps) (Verifier, error)
}

var typeName = regexp.MustCompile(`^[a-z][A-Za-z0-9]*$`)

func (s Scheme) check() error {
	switch {
	case !typeName.MatchString(s.Type):
		return fmt.Errorf("scheme type %q: want a name like notaryv1 (a letter, then letters and digits)", s.Type)
	case s.Type == "name" || s.Type == "type" || s.Type == "deprecated":
		// The block sits next to these keys in a policy's verifier entry.
		return fmt.Errorf("scheme type %q collides with a verifier field", s.Type)
	case s.Config == nil || s.New == nil:
		return fmt.Errorf("scheme %s: Config and New are required", s.Type)
	}
	return nil
}

// Registry holds the schemes a policy may use. The zero value is empty and
// ready to use; it is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	schemes map[string]Scheme
}

// NewRegistry returns a registry holding schemes.
func NewRegistry(schemes ...Scheme) (*Registry, error) {
	r := &Registry{}
	if err := r.Register(schemes...); err != nil {
		return nil, err
	}
	return r, nil
}

// ErrDuplicateScheme is matched by the error of registering a type twice.
var ErrDuplicateScheme = errors.New("scheme registered twice")

// Register adds schemes. A type registered twice, or a scheme missing Type,
// Config or New, is an error and nothing is added.
func (r *Registry) Register(schemes ...Scheme) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range schemes {
		if err := s.check(); err != nil {
			return err
		}
		if _, dup := r.schemes[s.Type]; dup || seen[s.Type] {
			return fmt.Errorf("%w: %s", ErrDuplicateScheme, s.Type)
		}
		seen[s.Type] = true
	}
	if r.schemes == nil {
		r.schemes = map[string]Scheme{}
	}
	for _, s := range schemes {
		r.schemes[s.Type] = s
	}
	return nil
}

// Lookup returns the scheme registered for typ.
func (r *Registry) Lookup(typ string) (Scheme, bool) {
	if r == nil {
		return Scheme{}, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.schemes[typ]
	return s, ok
}

// Types lists the registered type names, sorted (for error messages).
func (r *Registry) Types() []string {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.schemes))
	for t := range r.schemes {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// registered is the process's registry, filled once by the composition root.
var registered Registry

// Register adds schemes to the process's registry. The composition root
// calls it once at start-up, one scheme per signature package:
//
//	verify.Register(notaryv1.Scheme, acr.Scheme)
//
// It panics on a type registered twice or an incomplete scheme: that is a
// programming error to find at start-up, like http.Handle's.
func Register(schemes ...Scheme) {
	if err := registered.Register(schemes...); err != nil {
		panic("verify.Register: " + err.Error())
	}
}

// Registered returns the process's registry.
func Registered() *Registry { return &registered }
