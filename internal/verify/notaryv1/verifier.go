package notaryv1

import (
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// Docker's release delegation.
const roleReleases = "targets/releases"

// Verifier checks images against one notary server and trust configuration.
// It is safe for concurrent use.
type Verifier struct {
	name      string
	cfg       *settings
	fetch     *fetcher
	now       func() time.Time
	freshness time.Duration
	maxMeta   int64
	// refreshTimeout bounds one shared refresh (several requests).
	refreshTimeout time.Duration
	// counted are the roles whose signatures count, in order of preference
	// for Docker's rule.
	counted []string
	// load are the delegations to fetch, parents before children.
	load []string

	logger *slog.Logger

	group singleflight.Group
	mu    sync.Mutex
	guns  map[string]*gunState
	// lru orders guns' entries, most recently used first (trust.go);
	// maxGUNs overrides the bound of that name when positive (tests).
	lru     list.List
	maxGUNs int
}

var _ verify.Verifier = (*Verifier)(nil)

// New builds a Verifier from a decoded Config.
func New(name string, cfg Config, deps verify.Deps, opts ...Option) (*Verifier, error) {
	o := options{now: time.Now, freshness: DefaultFreshness, maxMeta: DefaultMaxMetadataBytes}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxMeta <= 0 {
		return nil, fmt.Errorf("notaryv1 %s: max metadata size must be positive", name)
	}
	s, err := parseConfig(cfg, deps, o.getenv)
	if err != nil {
		return nil, fmt.Errorf("notaryv1 %s: %w", name, err)
	}
	client, err := verify.NewHTTPClient(deps.Transport, s.rootCAs)
	if err != nil {
		return nil, fmt.Errorf("notaryv1 %s: %w", name, err)
	}
	timeout := deps.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	traits := new(serverTraits)
	client.Transport = &traitWatch{next: client.Transport, t: traits}
	v := &Verifier{
		name: name,
		cfg:  s,
		fetch: &fetcher{
			base:       trimServer(s.server.String()),
			auth:       credentials.NewClient(client, s.creds),
			reqTimeout: timeout,
			seen:       traits,
		},
		now:       o.now,
		freshness: o.freshness,
		// A refresh makes about five requests, most of them cheap.
		refreshTimeout: 4 * timeout,
		maxMeta:        o.maxMeta,
		guns:           map[string]*gunState{},
		logger:         deps.Logger,
	}
	if v.logger == nil {
		v.logger = slog.New(slog.DiscardHandler)
	}
	v.counted = s.signers
	if len(v.counted) == 0 {
		v.counted = []string{roleReleases, tuf.RoleTargets}
	}
	v.load = delegationsToLoad(v.counted)
	return v, nil
}

// delegationsToLoad lists every delegation on the path to the counted
// roles (targets/a/b needs targets/a), shallow ones first.
func delegationsToLoad(counted []string) []string {
	set := map[string]bool{}
	for _, r := range counted {
		for i := len(tuf.RoleTargets); i < len(r); i++ {
			if r[i] == '/' {
				set[r[:i]] = true
			}
		}
		set[r] = true
	}
	delete(set, tuf.RoleTargets)
	out := make([]string, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := strings.Count(out[i], "/"), strings.Count(out[j], "/")
		if di != dj {
			return di < dj
		}
		return out[i] < out[j]
	})
	return out
}

// Name returns the verifier's name from the policy.
func (v *Verifier) Name() string { return v.name }

// Type returns "notaryv1".
func (v *Verifier) Type() string { return Type }

// BindsTags reports that notaryv1's signed targets say which digest a tag
// means: the engine asks it before digest-bound schemes.
func (v *Verifier) BindsTags() bool { return true }

// Verify admits the subject when the repository's Notary metadata signs it:
// a tag resolves to its signed digest; with a digest (in the reference or in
// s.Digest) that digest must be the signed one.
func (v *Verifier) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	// The subject's keychain (pull secrets) travels in the context down to
	// the fetcher, through the shared refresh, which keeps ctx's values.
	res, err := v.verify(credentials.WithKeychain(ctx, s.Keychain), s.Reference())
	if err != nil {
		return nil, fmt.Errorf("notaryv1 %s: %w", v.name, v.explainRetired(err))
	}
	return res, nil
}

func (v *Verifier) verify(ctx context.Context, ref imageref.Ref) (*verify.Result, error) {
	if ref.IsZero() || (ref.Tag() == "" && ref.Digest() == "") {
		return nil, untrusted(nil, "reference %q names no tag or digest", ref.Original())
	}
	if err := ctx.Err(); err != nil {
		return nil, transportError(ctx, err, "verify %s", ref)
	}
	gun := ref.GUN() // the repository name, built once per lookup
	td, cached, err := v.trustData(ctx, gun, ref.Registry(), false)
	if err != nil {
		return nil, err
	}
	res, err := v.decide(td, ref, gun)
	if err == nil || !cached || !errors.Is(err, verify.ErrUntrusted) {
		return res, err
	}
	// Metadata held in memory may be up to the freshness window old, and a
	// tag signed a moment ago is not in it: only a "yes" may come from the
	// memory alone. Before saying "no", ask the server (one timestamp
	// request when nothing changed).
	if td, _, err = v.trustData(ctx, gun, ref.Registry(), true); err != nil {
		return nil, err
	}
	return v.decide(td, ref, gun)
}

// trustData returns verified metadata for gun, from memory when fresh,
// otherwise refreshed, with concurrent refreshes of one gun coalesced.
// With revalidate, memory is not enough: the timestamp is fetched again.
// cached reports whether the answer came from memory without a request.
func (v *Verifier) trustData(ctx context.Context, gun, registry string, revalidate bool) (td *trustData, cached bool, err error) {
	st := v.gunState(gun)
	if !revalidate {
		if td := v.current(st, v.now()); td != nil {
			return td, true, nil
		}
	}
	ch := v.group.DoChan(gun, func() (any, error) {
		// The refresh is shared by every caller waiting for this gun, so
		// it must not die with the first caller's context; it is bounded
		// by its own timeout instead, and each caller still returns as
		// soon as its own context ends.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.refreshTimeout)
		defer cancel()
		return v.refresh(rctx, gun, registry, st)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, false, r.Err
		}
		return r.Val.(*trustData), false, nil
	case <-ctx.Done():
		return nil, false, transportError(ctx, ctx.Err(), "verify %s", gun)
	}
}

// lookup returns the digest role signed for tag, if the role exists, lists
// the tag, and every delegation on its way allows the name.
func lookup(td *trustData, role, tag string) (string, bool, error) {
	rd := td.roles[role]
	if rd == nil {
		return "", false, nil
	}
	fm, ok := rd.targets.Targets[tag]
	if !ok || !pathAllowed(rd, tag) {
		return "", false, nil
	}
	d, err := targetDigest(fm)
	if err != nil {
		return "", false, untrusted(err, "target %s in %s", tag, role)
	}
	return d, true, nil
}

func pathAllowed(rd *roleData, name string) bool {
	for _, d := range rd.chain {
		if !d.AllowsPath(name) {
			return false
		}
	}
	return true
}

func targetDigest(fm tuf.FileMeta) (string, error) {
	h := fm.Hashes["sha256"]
	if len(h) != 32 {
		return "", errors.New("no 32-byte sha256 hash")
	}
	// One allocation: this runs on every lookup, cached or not.
	const prefix = "sha256:"
	var hx [64]byte
	hex.Encode(hx[:], h)
	var sb strings.Builder
	sb.Grow(len(prefix) + len(hx))
	sb.WriteString(prefix)
	sb.Write(hx[:])
	return sb.String(), nil
}

// Deny messages end up in `kubectl` output: each names the tag or digest,
// the roles consulted and what would make the image admissible.

// decide applies the signer rule to verified metadata. repo is
// ref.Repository(), passed in so the lookup builds it only once.
func (v *Verifier) decide(td *trustData, ref imageref.Ref, repo string) (*verify.Result, error) {
	if ref.Tag() == "" {
		return v.decideDigest(td, ref, repo)
	}
	tag := ref.Tag()
	signCmd := func() string { return "`docker trust sign " + repo + ":" + tag + "`" }
	var digest string
	var signers []string
	if len(v.cfg.signers) == 0 {
		// Docker's rule: targets/releases, else targets; other
		// delegations do not count.
		for _, role := range v.counted {
			d, ok, err := lookup(td, role, tag)
			if err != nil {
				return nil, err
			}
			if ok {
				digest, signers = d, []string{role}
				break
			}
		}
		if digest == "" {
			return nil, untrusted(nil, "tag %s of %s is not signed in %s or %s%s; sign it with %s",
				tag, repo, roleReleases, tuf.RoleTargets, notes(td, v.counted, tag), signCmd())
		}
	} else {
		byDigest := map[string][]string{}
		for _, role := range v.counted {
			d, ok, err := lookup(td, role, tag)
			if err != nil {
				return nil, err
			}
			if ok {
				byDigest[d] = append(byDigest[d], role)
			}
		}
		switch len(byDigest) {
		case 0:
			return nil, untrusted(nil, "tag %s of %s is not signed in %s%s; sign it with %s using a key of %s",
				tag, repo, strings.Join(v.counted, " or "), notes(td, v.counted, tag), signCmd(), oneOf(v.counted))
		case 1:
		default:
			var parts []string
			for d, roles := range byDigest {
				parts = append(parts, strings.Join(roles, ", ")+" → "+d)
			}
			sort.Strings(parts)
			return nil, untrusted(nil, "tag %s of %s is signed to different digests (%s); its signers must sign the same image",
				tag, repo, strings.Join(parts, "; "))
		}
		for d, roles := range byDigest {
			digest, signers = d, roles
		}
		if len(signers) < v.cfg.thresh {
			missing := without(v.counted, signers)
			return nil, untrusted(nil, "tag %s of %s is signed by %d of the %d required roles among %s (signed: %s)%s; sign it with %s using a key of %s",
				tag, repo, len(signers), v.cfg.thresh, strings.Join(v.counted, ", "), strings.Join(signers, ", "),
				notes(td, missing, tag), signCmd(), oneOf(missing))
		}
	}
	if ref.Digest() != "" && ref.Digest() != digest {
		return nil, untrusted(nil, "tag %s of %s is signed for %s, not %s; deploy %s@%s or sign the new image with %s",
			tag, repo, digest, ref.Digest(), repo, digest, signCmd())
	}
	return &verify.Result{
		Digest:  digest,
		Signers: signers,
		Reason:  "tag " + tag + " signed by " + strings.Join(signers, ", "),
		Expires: td.expires,
	}, nil
}

// decideDigest admits a digest-only reference when counted roles sign some
// tag with that digest.
func (v *Verifier) decideDigest(td *trustData, ref imageref.Ref, repo string) (*verify.Result, error) {
	want := ref.Digest()
	var signers []string
	for _, role := range v.counted {
		rd := td.roles[role]
		if rd == nil {
			continue
		}
		// Sorted for deterministic results and messages.
		names := make([]string, 0, len(rd.targets.Targets))
		for name := range rd.targets.Targets {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			d, err := targetDigest(rd.targets.Targets[name])
			if err == nil && d == want && pathAllowed(rd, name) {
				signers = append(signers, role)
				break
			}
		}
	}
	need := v.cfg.thresh
	if len(v.cfg.signers) == 0 {
		need = 1
	}
	if len(signers) == 0 {
		return nil, untrusted(nil, "digest %s of %s is not signed in %s (no signed tag points to it); deploy a signed tag or sign one with `docker trust sign %s:TAG`",
			want, repo, strings.Join(v.counted, " or "), repo)
	}
	if len(signers) < need {
		missing := without(v.counted, signers)
		return nil, untrusted(nil, "digest %s of %s is signed by %d of the %d required roles (signed: %s); sign a tag of it with `docker trust sign %s:TAG` using a key of %s",
			want, repo, len(signers), need, strings.Join(signers, ", "), repo, oneOf(missing))
	}
	return &verify.Result{
		Digest:  want,
		Signers: signers,
		Reason:  "digest signed by " + strings.Join(signers, ", "),
		Expires: td.expires,
	}, nil
}

// notes explains, for the roles that did not sign tag, the causes a
// publisher would not guess: the role does not exist, or it lists the tag
// but its delegation's paths exclude it. It returns "" or " (…)".
func notes(td *trustData, roles []string, tag string) string {
	var out []string
	for _, role := range roles {
		rd := td.roles[role]
		switch {
		case rd == nil && role != roleReleases:
			// A missing targets/releases is normal (Docker's rule falls
			// back to targets); a missing listed signer is not.
			out = append(out, "no "+role+" role is published")
		case rd == nil:
		default:
			if _, listed := rd.targets.Targets[tag]; listed && !pathAllowed(rd, tag) {
				out = append(out, role+" lists it but its delegated paths exclude it")
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

// oneOf reads "targets/a" or "one of targets/a, targets/b".
func oneOf(roles []string) string {
	if len(roles) == 1 {
		return roles[0]
	}
	return "one of " + strings.Join(roles, ", ")
}

// without returns the roles not in signed, in order.
func without(roles, signed []string) []string {
	var out []string
	for _, r := range roles {
		if !slices.Contains(signed, r) {
			out = append(out, r)
		}
	}
	return out
}
