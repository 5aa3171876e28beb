package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustgate-dev/trustgate/internal/cache"
	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Resolver finds the digest a tag points to in its registry. It is used
// only for rules whose verifiers prove no digest (or `action: allow`) when
// pinning, and only for registries a rule names.
type Resolver interface {
	Resolve(ctx context.Context, ref imageref.Ref, auth resolve.Auth) (string, error)
}

// Engine evaluates requests against the current policy. It is safe for
// concurrent use; SetPolicy swaps the policy atomically.
type Engine struct {
	pol      atomic.Pointer[policy.Policy]
	results  *cache.Cache[*verify.Result]
	resolved *cache.Cache[string]
	parsed   *cache.Cache[imageref.Ref]
	resolver Resolver
	keychain KeychainFunc // verify.Subject.Keychain (combine.go)
	metrics  *metrics.Metrics
	// Bounds on work (bounds.go): images judged at once per request,
	// distinct images per request, and upstream work in flight in total.
	parallel  int
	maxImages int
	upstream  chan struct{}
}

// Option configures an Engine.
type Option func(*Engine)

// WithResolver sets the tag→digest resolver used for pinning.
func WithResolver(r Resolver) Option { return func(e *Engine) { e.resolver = r } }

// WithMetrics records cache and verification metrics.
func WithMetrics(m *metrics.Metrics) Option { return func(e *Engine) { e.metrics = m } }

// WithCacheSize bounds the number of cached decisions (default 100,000).
func WithCacheSize(n int) Option {
	return func(e *Engine) {
		e.results = cache.New[*verify.Result](n)
		e.resolved = cache.New[string](n)
		e.parsed = cache.New[imageref.Ref](min(n, 20_000))
	}
}

// New returns an engine for p.
func New(p *policy.Policy, opts ...Option) *Engine {
	e := &Engine{parallel: DefaultParallel, maxImages: DefaultMaxImages, upstream: make(chan struct{}, DefaultMaxUpstream)}
	WithCacheSize(100_000)(e)
	for _, o := range opts {
		o(e)
	}
	e.pol.Store(p)
	return e
}

// Policy is the policy in force.
func (e *Engine) Policy() *policy.Policy { return e.pol.Load() }

// SetPolicy puts p in force for every later evaluation. Cached decisions of
// the old policy are never reused: cache keys carry the policy generation.
func (e *Engine) SetPolicy(p *policy.Policy) { e.pol.Store(p) }

// Evaluate decides every distinct image of req. It returns when all are
// decided or ctx ends; an image not decided by then is denied as timed out.
// The work it starts is bounded: at most maxImages distinct images (more are
// denied whole), parallel of them at once, and nothing is started after ctx
// ends.
func (e *Engine) Evaluate(ctx context.Context, req Request) Report {
	p := e.pol.Load()
	rep := Report{Mode: p.Mode}
	if p.Exempt(req.Namespace) {
		rep.Exempt = true
		return rep
	}
	images := distinct(req.Images)
	if len(images) > e.maxImages {
		rep.Decisions = overCap(images, e.maxImages)
		e.countAll(rep.Decisions)
		return rep
	}
	for _, img := range images {
		rep.Decisions = append(rep.Decisions, Decision{Image: img})
	}
	if len(rep.Decisions) == 1 {
		rep.Decisions[0], _ = e.decide(ctx, p, req, rep.Decisions[0].Image, nil)
		e.count(rep.Decisions[0])
		return rep
	}
	sem := make(chan struct{}, e.parallel)
	var wg sync.WaitGroup
	for i := range rep.Decisions {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			// The deadline passed before this image's turn: start nothing
			// more, deny the rest as timed out (once every started image has
			// returned, so no decision is written twice).
			wg.Wait()
			for j := i; j < len(rep.Decisions); j++ {
				rep.Decisions[j] = timedOutDecision(rep.Decisions[j].Image)
			}
			e.countAll(rep.Decisions[i:])
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rep.Decisions[i], _ = e.decide(ctx, p, req, rep.Decisions[i].Image, nil)
			e.count(rep.Decisions[i])
		}()
	}
	wg.Wait()
	return rep
}

// distinct returns images without repeats, in first-seen order. Callers
// such as the webhook have usually removed repeats already; then the input
// is returned as it is, without allocating.
func distinct(images []string) []string {
	if len(images) <= 16 {
		for i, img := range images {
			if slices.Contains(images[:i], img) {
				return distinctSlow(images)
			}
		}
		return images
	}
	return distinctSlow(images)
}

func distinctSlow(images []string) []string {
	seen := make(map[string]bool, len(images))
	out := make([]string, 0, len(images))
	for _, img := range images {
		if !seen[img] {
			seen[img] = true
			out = append(out, img)
		}
	}
	return out
}

// errNotCached is what a cached-only evaluation meets where it would have
// to verify or resolve.
var errNotCached = errors.New("not cached")

// cachedOnly makes decide answer from memory or not at all.
type cachedOnly struct{ hits int }

// EvaluateCached decides req without blocking when it can: the namespace is
// exempt, or every image is decided by the policy alone or by cached
// verifications and digests. It never touches the network nor waits for a
// verification in flight; ok is false when Evaluate is needed. The webhook
// asks it first, on the request's own goroutine (admission.CachedEvaluator).
func (e *Engine) EvaluateCached(req Request) (Report, bool) {
	p := e.pol.Load()
	rep := Report{Mode: p.Mode}
	if p.Exempt(req.Namespace) {
		rep.Exempt = true
		return rep, true
	}
	images := distinct(req.Images)
	if len(images) > e.maxImages {
		rep.Decisions = overCap(images, e.maxImages)
		e.countAll(rep.Decisions)
		return rep, true
	}
	co := &cachedOnly{}
	for _, img := range images {
		d, ok := e.decide(context.Background(), p, req, img, co)
		if !ok {
			return Report{}, false
		}
		rep.Decisions = append(rep.Decisions, d)
	}
	e.countAll(rep.Decisions)
	if e.metrics != nil && co.hits > 0 {
		e.metrics.CacheLookups.WithLabelValues("hit").Add(float64(co.hits))
	}
	return rep, true
}

// decide judges one image. With co set it only answers from memory, and ok
// is false where it would have to verify or resolve.
func (e *Engine) decide(ctx context.Context, p *policy.Policy, req Request, img string, co *cachedOnly) (d Decision, ok bool) {
	d = Decision{Image: img}
	ref, err := e.parse(img)
	if err != nil {
		d.Action, d.Reason = "deny", err.Error()
		return d, true
	}
	d.Ref = ref
	rule := p.Match(ref, req.Namespace)
	if rule == nil {
		d.Action = "unmatched"
		d.Allowed = p.Unmatched == policy.ActionAllow
		if d.Allowed {
			d.Reason = "no rule matches; the policy allows unmatched images"
		} else {
			d.Reason = fmt.Sprintf("no rule matches %s; the policy denies unmatched images", ref.Repository())
		}
		return d, true
	}
	d.Rule, d.Action = rule.Name, string(rule.Action)
	switch rule.Action {
	case policy.ActionDeny:
		d.Reason = "the rule denies these images"
		return d, true
	case policy.ActionAllow:
		d.Allowed, d.Reason, d.Digest = true, "the rule allows these images without verification", ref.Digest()
	default:
		res, err := e.verifyAll(ctx, p, rule, ref, req, co)
		if errors.Is(err, errNotCached) {
			return d, false
		}
		d.Outcomes = res.outcomes
		if err != nil {
			d.Reason = err.Error()
			d.Unavailable = !errors.Is(err, verify.ErrUntrusted)
			return d, true
		}
		d.Allowed, d.Digest, d.Signers, d.Reason, d.Cached = true, res.digest, res.signers, res.reason, res.cached
	}
	if d, refused := unpinned(p, req, rule, d); refused {
		return d, true
	}
	if req.Pin && rule.PinDigest && ref.Digest() == "" {
		if d.Digest == "" {
			dg, err := e.resolve(ctx, p, ref, resolve.Auth{Namespace: req.Namespace, ServiceAccount: req.ServiceAccount, PullSecrets: req.PullSecrets}, co)
			if errors.Is(err, errNotCached) {
				return d, false
			}
			if err != nil {
				d.Allowed = false
				d.Unavailable = resolveUnavailable(err) // combine.go
				d.Reason = fmt.Sprintf("%s, but its digest could not be resolved for pinning: %v", d.Reason, err)
				return d, true
			}
			d.Digest = dg
		}
		d.Pin = ref.WithDigest(d.Digest).String()
	}
	return d, true
}

// parse is imageref.Parse, remembered: a rollout sends the same strings
// thousands of times, and parsing is a good part of a cached decision's cost.
// Both outcomes are deterministic, so they never expire (the LRU bounds them).
func (e *Engine) parse(img string) (imageref.Ref, error) {
	if out, ok := e.parsed.Get(img); ok {
		return out.Value, out.Err
	}
	ref, err := imageref.Parse(img)
	e.parsed.Put(img, cache.Outcome[imageref.Ref]{Value: ref, Err: err}, 24*time.Hour)
	return ref, err
}

// count records one decision in trustgate_image_decisions_total. The engine
// is the only place that counts decisions, once each.
func (e *Engine) count(d Decision) {
	if e.metrics != nil {
		res := d.Verdict() // allow, deny, or unavailable (could not complete)
		e.metrics.Decisions.WithLabelValues(decisionLabel(d), res).Inc()
	}
}

func (e *Engine) countAll(ds []Decision) {
	for _, d := range ds {
		e.count(d)
	}
}

func cacheKey(p *policy.Policy, verifier string, ref imageref.Ref) string {
	return p.Generation + "|" + verifier + "|" + ref.String()
}

func (e *Engine) verifyOne(ctx context.Context, p *policy.Policy, v verify.Verifier, s verify.Subject, co *cachedOnly) (*verify.Result, cache.Source, error) {
	ref := s.Reference()
	key := cacheKey(p, v.Name(), ref)
	if co != nil {
		out, ok := e.results.Get(key)
		if !ok {
			return nil, cache.Miss, errNotCached
		}
		co.hits++
		return out.Value, cache.Hit, out.Err
	}
	deadline := p.Settings.Deadline
	out, src := doBounded(e, e.results, ctx, key,
		func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), deadline)
		},
		func(vctx context.Context) cache.Outcome[*verify.Result] {
			start := time.Now()
			res, err := v.Verify(vctx, s)
			if err == nil && res == nil {
				err = fmt.Errorf("%w: verifier %s returned no result", verify.ErrUnavailable, v.Name())
			}
			if e.metrics != nil {
				e.metrics.VerifyDuration.WithLabelValues(v.Name(), resultLabel(err)).Observe(time.Since(start).Seconds())
			}
			if err == nil && ref.Digest() == "" && res.Digest != "" {
				// A pod created from a template pinned by this decision asks for
				// tag@digest: answer it from the cache, with no new verification.
				pinned := ref.WithDigest(res.Digest)
				e.results.Put(cacheKey(p, v.Name(), pinned), cache.Outcome[*verify.Result]{Value: res}, successTTL(p, res))
			}
			return cache.Outcome[*verify.Result]{Value: res, Err: err}
		},
		func(o cache.Outcome[*verify.Result]) time.Duration {
			switch {
			case o.Err == nil:
				return successTTL(p, o.Value)
			case errors.Is(o.Err, verify.ErrUntrusted):
				return p.Settings.DenyCacheTTL
			default:
				return 0
			}
		})
	if e.metrics != nil {
		e.metrics.CacheLookups.WithLabelValues([...]string{"miss", "hit", "shared"}[src]).Inc()
	}
	if out.Err != nil {
		if ctx.Err() != nil && errors.Is(out.Err, ctx.Err()) {
			return nil, src, fmt.Errorf("%w: verification by %s timed out before the admission deadline", verify.ErrUnavailable, v.Name())
		}
		return nil, src, out.Err
	}
	return out.Value, src, nil
}

func successTTL(p *policy.Policy, r *verify.Result) time.Duration {
	ttl := p.Settings.CacheTTL
	if r != nil && !r.Expires.IsZero() {
		if until := time.Until(r.Expires); until < ttl {
			ttl = until
		}
	}
	return ttl
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, verify.ErrUntrusted):
		return "untrusted"
	default:
		return "unavailable"
	}
}

func (e *Engine) resolve(ctx context.Context, p *policy.Policy, ref imageref.Ref, auth resolve.Auth, co *cachedOnly) (string, error) {
	if e.resolver == nil {
		return "", errors.New("no registry resolver configured")
	}
	deadline := p.Settings.Deadline
	// Credentials differ per namespace and pod: what one pod's secrets can
	// see must not answer for another's.
	key := p.Generation + "|resolve|" + ref.String() + "|" + auth.Namespace + "|" + auth.ServiceAccount + "|" + strings.Join(auth.PullSecrets, ",")
	if co != nil {
		out, ok := e.resolved.Get(key)
		if !ok {
			return "", errNotCached
		}
		return out.Value, out.Err
	}
	out, _ := doBounded(e, e.resolved, ctx, key,
		func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), deadline)
		},
		func(rctx context.Context) cache.Outcome[string] {
			d, err := e.resolver.Resolve(rctx, ref, auth)
			return cache.Outcome[string]{Value: d, Err: err}
		},
		func(o cache.Outcome[string]) time.Duration {
			if o.Err != nil {
				return 0
			}
			// A resolved (unverified) tag may move; keep it briefly.
			return p.Settings.DenyCacheTTL
		})
	if out.Err != nil && ctx.Err() != nil {
		return "", fmt.Errorf("resolving the digest timed out: %w", out.Err)
	}
	return out.Value, out.Err
}
