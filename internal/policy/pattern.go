package policy

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/trustgate-dev/trustgate/internal/imageref"
)

// Pattern matches image repositories (and optionally tags). It is compiled
// once when the policy loads, so a bad pattern is a load error, never a
// panic at admission time.
type Pattern struct {
	text        string
	anyRegistry bool // the registry part is a wildcard
	repo        *regexp.Regexp
	tag         *regexp.Regexp // nil: every tag and digest
}

// CompilePattern compiles REGISTRY/PATH[:TAG] where `*` matches within one
// path segment and `**` across segments. A pattern without a registry is
// normalized the way a reference is ("nginx" → docker.io/library/nginx).
func CompilePattern(p string) (Pattern, error) {
	if p == "" {
		return Pattern{}, fmt.Errorf("empty pattern")
	}
	if strings.ContainsAny(p, " \t\n@") {
		return Pattern{}, fmt.Errorf("pattern %q: must not contain spaces or '@'", p)
	}
	repo, tag := p, ""
	if i := strings.LastIndexByte(p, ':'); i > strings.LastIndexByte(p, '/') {
		repo, tag = p[:i], p[i+1:]
		if tag == "" {
			return Pattern{}, fmt.Errorf("pattern %q: empty tag after ':'", p)
		}
	}
	segs := strings.Split(repo, "/")
	for _, s := range segs {
		if s == "" {
			return Pattern{}, fmt.Errorf("pattern %q: empty path segment", p)
		}
	}
	first := segs[0]
	switch {
	case imageref.IsRegistryHost(first):
		// The same function as imageref.Parse, so that a pattern and a
		// reference spelling one registry differently (case, :443, Docker
		// Hub's three names) still meet.
		host, err := imageref.NormalizeRegistry(first)
		if err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: %w", p, err)
		}
		segs[0] = host
		if len(segs) == 1 {
			return Pattern{}, fmt.Errorf("pattern %q: names a registry but no repository (use %s/**)", p, p)
		}
	case strings.Contains(first, "*"):
		// A leading wildcard spans registries: keep it as written.
	case len(segs) == 1:
		segs = []string{imageref.DockerHub, "library", segs[0]}
	default:
		segs = append([]string{imageref.DockerHub}, segs...)
	}
	if segs[0] == imageref.DockerHub && len(segs) == 2 && !strings.Contains(segs[1], "*") {
		segs = []string{imageref.DockerHub, "library", segs[1]}
	}
	re, err := globRegexp(strings.Join(segs, "/"), true)
	if err != nil {
		return Pattern{}, fmt.Errorf("pattern %q: %w", p, err)
	}
	pt := Pattern{text: p, repo: re, anyRegistry: strings.ContainsAny(segs[0], "*?")}
	if tag != "" {
		if pt.tag, err = globRegexp(tag, false); err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	return pt, nil
}

func globRegexp(g string, segments bool) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case c == '*' && i+1 < len(g) && g[i+1] == '*':
			if !segments {
				return nil, fmt.Errorf("'**' is only allowed in the repository part")
			}
			b.WriteString(".*")
			i++
			if i+1 < len(g) && g[i+1] == '*' {
				return nil, fmt.Errorf("'***' is not a wildcard")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Match reports whether ref is covered by the pattern. A digest-only reference
// never matches a pattern that names tags: its tag is unknown.
func (p Pattern) Match(ref imageref.Ref) bool {
	if !p.repo.MatchString(ref.Repository()) {
		return false
	}
	if p.tag == nil {
		return true
	}
	return ref.Tag() != "" && p.tag.MatchString(ref.Tag())
}

func (p Pattern) String() string { return p.text }

// AnyRegistry reports whether the pattern leaves the registry open, so that
// the references it matches may name any host at all.
func (p Pattern) AnyRegistry() bool { return p.anyRegistry }
