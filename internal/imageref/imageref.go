// Package imageref parses container image references the way the kubelet
// understands them and gives them one canonical spelling, so that policy
// matching, caching and Notary GUNs all agree on what an image is.
//
// Unlike go-containerregistry's name.ParseReference it keeps both the tag and
// the digest of "repo:tag@sha256:…": Notary looks the tag up, and the digest is
// what must match.
package imageref

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// The grammar of github.com/distribution/reference, written out: path
// components are lower-case alphanumerics joined by '.', '_', '__' or dashes;
// a registry host is a domain or IP with an optional port; a tag is at most
// 128 word characters. Upper case is let through in the path here so that the
// error for it can say what is wrong.
var (
	pathComponent = `[a-zA-Z0-9]+(?:(?:[._]|__|-+)[a-zA-Z0-9]+)*`
	domain        = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?`
	nameRE        = regexp.MustCompile(`^(?:` + domain + `/)?` + pathComponent + `(?:/` + pathComponent + `)*(?::[\w][\w.-]{0,127})?$`)
	digestRE      = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
)

// ErrInvalid is matched (errors.Is) by every parse failure.
var ErrInvalid = errors.New("invalid image reference")

// Ref is an immutable, normalized image reference.
type Ref struct {
	original string
	registry string // lower case; "docker.io" for Docker Hub
	path     string // repository path, e.g. "library/nginx"
	tag      string // empty when the reference has only a digest
	digest   string // "sha256:<hex>" or empty
}

// Parse normalizes s: "nginx" becomes docker.io/library/nginx:latest, the
// registry host is lower-cased, and a reference with a digest but no tag keeps
// no tag (the kubelet pulls by digest then).
func Parse(s string) (Ref, error) {
	if s == "" {
		return Ref{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	// distribution caps a repository name at 255 characters and a tag at
	// 128; with a host and a digest nothing valid comes near 1024. The cap
	// keeps what hostile pods can make trustgate remember small.
	if len(s) > 1024 {
		return Ref{}, fmt.Errorf("%w: longer than 1024 bytes", ErrInvalid)
	}
	if strings.TrimSpace(s) != s {
		return Ref{}, fmt.Errorf("%w %q: surrounding whitespace", ErrInvalid, s)
	}
	rest, dig, hasDigest := strings.Cut(s, "@")
	r := Ref{original: s}
	if hasDigest {
		if !digestRE.MatchString(dig) {
			return Ref{}, fmt.Errorf("%w %q: digest must be sha256:<64 hex> or sha512:<128 hex>", ErrInvalid, s)
		}
		r.digest = dig
	}
	// A trailing dot gets its own message: it looks like a harmless
	// fully-qualified spelling of a host, but the reference grammar (and so
	// the kubelet) refuses it.
	if i := strings.IndexByte(rest, '/'); i > 0 && strings.HasSuffix(strings.Split(rest[:i], ":")[0], ".") {
		return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, errTrailingDot(rest[:i]))
	}
	if !nameRE.MatchString(rest) {
		return Ref{}, fmt.Errorf("%w %q: not of the form [REGISTRY/]PATH[:TAG]", ErrInvalid, s)
	}
	// Normalize the registry part only: hosts are case-insensitive and have
	// aliases (see NormalizeRegistry); repository paths are case-sensitive
	// (upper case there is rejected below, as the kubelet does).
	if i := strings.IndexByte(rest, '/'); i > 0 && IsRegistryHost(rest[:i]) {
		host, err := NormalizeRegistry(rest[:i])
		if err != nil {
			return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
		}
		rest = host + rest[i:]
	}
	repoPart := rest
	if hasTag(rest) {
		repoPart = rest[:strings.LastIndexByte(rest, ':')]
	}
	if repoPart != strings.ToLower(repoPart) {
		return Ref{}, fmt.Errorf("%w %q: repository name must be lower case", ErrInvalid, s)
	}
	var repo name.Repository
	if hasDigest && !hasTag(rest) {
		rp, err := name.NewRepository(rest, name.WeakValidation)
		if err != nil {
			return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
		}
		repo = rp
	} else {
		t, err := name.NewTag(rest, name.WeakValidation)
		if err != nil {
			return Ref{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
		}
		repo, r.tag = t.Repository, t.TagStr()
	}
	r.registry = repo.RegistryStr()
	if r.registry == name.DefaultRegistry {
		r.registry = DockerHub
	}
	r.path = repo.RepositoryStr()
	if n := len(r.registry) + 1 + len(r.path); n > 255 {
		return Ref{}, fmt.Errorf("%w %q: repository name is %d characters, more than 255", ErrInvalid, s, n)
	}
	return r, nil
}

// MustParse is Parse for tests and constants; it panics on error.
func MustParse(s string) Ref {
	r, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return r
}

// hasTag reports whether the last path segment of a reference without digest
// carries a ":tag" (a colon in the first segment may be a registry port).
func hasTag(s string) bool {
	last := s[strings.LastIndexByte(s, '/')+1:]
	return strings.Contains(last, ":")
}

// Original is the reference as it was written in the object.
func (r Ref) Original() string { return r.original }

// Registry is the lower-cased registry host[:port]; "docker.io" for Docker Hub.
func (r Ref) Registry() string { return r.registry }

// Path is the repository path inside the registry ("library/nginx").
func (r Ref) Path() string { return r.path }

// Repository is REGISTRY/PATH, the name policy patterns match.
func (r Ref) Repository() string { return r.registry + "/" + r.path }

// Tag is the tag, or "" for a digest-only reference.
func (r Ref) Tag() string { return r.tag }

// Digest is "sha256:<hex>", or "" when the reference has none.
func (r Ref) Digest() string { return r.digest }

// IsZero reports whether r is the zero Ref (nothing parsed).
func (r Ref) IsZero() bool { return r.registry == "" }

// GUN is the Notary v1 globally unique name of the repository, as docker
// computes it: the canonical repository name with Docker Hub as docker.io.
func (r Ref) GUN() string { return r.Repository() }

// String is the canonical spelling: REGISTRY/PATH[:TAG][@DIGEST].
func (r Ref) String() string {
	var b strings.Builder
	b.WriteString(r.Repository())
	if r.tag != "" {
		b.WriteByte(':')
		b.WriteString(r.tag)
	}
	if r.digest != "" {
		b.WriteByte('@')
		b.WriteString(r.digest)
	}
	return b.String()
}

// WithDigest returns r bound to digest d, keeping the tag for humans.
func (r Ref) WithDigest(d string) Ref {
	r.digest = d
	r.original = r.String()
	return r
}

// WithoutDigest returns r with its digest removed (the tag that was asked for).
func (r Ref) WithoutDigest() Ref {
	r.digest = ""
	r.original = r.String()
	return r
}

// Name returns a go-containerregistry reference for registry calls: the digest
// when there is one (what will run), else the tag.
func (r Ref) Name(opts ...name.Option) (name.Reference, error) {
	repo := r.registry
	if repo == DockerHub {
		repo = name.DefaultRegistry
	}
	repo += "/" + r.path
	if r.digest != "" {
		return name.NewDigest(repo+"@"+r.digest, opts...)
	}
	return name.NewTag(repo+":"+r.tag, opts...)
}
