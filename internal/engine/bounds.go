package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/trustgate-dev/trustgate/internal/cache"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Limits on the work requests can start (issue 9, item 4).
const (
	// DefaultMaxImages caps the distinct images one request may name; a
	// request over the cap is denied whole, before any image is parsed or
	// verified. Real Pods name a handful of images and rarely more than a few
	// dozen (containers, init and ephemeral containers, image volumes), but
	// the API server's object size limit (about 1.5 MiB in etcd) leaves room
	// for thousands. 256 is far above any Pod seen in practice and about what
	// can be verified within one deadline against a slow server: at 16 in
	// flight per request and two 300 ms round trips per cold verification, an
	// 8 s deadline completes about 8 / 0.6 × 16 ≈ 210. A request that names
	// more cannot be judged in time anyway; it gets a clear deny instead of a
	// wave of upstream requests.
	DefaultMaxImages = 256
	// DefaultParallel is how many images of one request are judged at once.
	DefaultParallel = 16
	// DefaultMaxUpstream bounds verifications and digest resolutions in
	// flight across all requests of the process, whatever the number of
	// admission requests at once: work waiting for a slot holds a goroutine,
	// not a connection. A verification may send several requests at once
	// (notaryv1 fetches metadata files in parallel); `serve` bounds those
	// requests themselves with verify.LimitRequests.
	DefaultMaxUpstream = 64
)

// WithMaxImages sets the cap on distinct images per request (n ≥ 1).
func WithMaxImages(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.maxImages = n
		}
	}
}

// WithParallel sets how many images of one request are judged at once (n ≥ 1).
func WithParallel(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.parallel = n
		}
	}
}

// WithMaxUpstream sets how many verifications and digest resolutions may be
// in flight at once across all requests (n ≥ 1).
func WithMaxUpstream(n int) Option {
	return func(e *Engine) {
		if n > 0 {
			e.upstream = make(chan struct{}, n)
		}
	}
}

// errNotStarted is the outcome of a verification or resolution that never
// started: the request that would have started it reached its deadline
// first. It is "unavailable", so it is never cached, and a caller that joined
// the same call with time left starts it again itself.
var errNotStarted = fmt.Errorf("%w: timed out: not started before the admission deadline", verify.ErrUnavailable)

// startUpstream takes one of the process-wide upstream slots for work a
// request is about to start, waiting under that request's ctx. Nothing is
// started once ctx is done, even if a slot is free: the answer could no
// longer be used by the request that asked for it.
func (e *Engine) startUpstream(ctx context.Context) (release func(), err error) {
	if ctx.Err() != nil {
		return nil, errNotStarted
	}
	select {
	case e.upstream <- struct{}{}:
	case <-ctx.Done():
		return nil, errNotStarted
	}
	// Both cases may have been ready at once; select picks either.
	if ctx.Err() != nil {
		<-e.upstream
		return nil, errNotStarted
	}
	return func() { <-e.upstream }, nil
}

// overCap denies every image of a request that names more distinct images
// than the engine judges in one request.
func overCap(images []string, max int) []Decision {
	reason := fmt.Sprintf("the object names %d distinct images; trustgate judges at most %d in one request", len(images), max)
	out := make([]Decision, len(images))
	for i, img := range images {
		out[i] = Decision{Image: img, Action: "deny", Reason: reason}
	}
	return out
}

// timedOutDecision is the decision for an image whose request reached its
// deadline before the image's turn came: nothing was started for it.
func timedOutDecision(img string) Decision {
	return Decision{Image: img, Action: "deny", Reason: "timed out: not judged before the admission deadline", Unavailable: true}
}

// unpinned is the /validate check for rules that pin: a reference without a
// digest means /mutate did not pin it (absent, failed open, or undone by a
// later mutating webhook), and the kubelet would pull whatever the tag points
// to when it starts the container, not what was verified.
func unpinned(p *policy.Policy, req Request, rule *policy.Rule, d Decision) (Decision, bool) {
	if !req.RequireDigest || !rule.PinDigest || d.Ref.Digest() != "" || p.Settings.ValidateAcceptsTags || !d.Allowed {
		return d, false
	}
	d.Allowed = false
	d.Pin = ""
	d.Reason = fmt.Sprintf("rule %s pins images to their digest, but this reference has none: the mutating webhook (/mutate) did not pin it, "+
		"or a later mutating webhook removed the pin, so the kubelet would pull whatever the tag points to then "+
		"(clusters that run only /validate: settings.validateRequiresDigest: false)", rule.Name)
	return d, true
}

// decisionLabel is the rule label of trustgate_image_decisions_total: one
// label, "(none)", for images no rule decided (unmatched or unparsable).
func decisionLabel(d Decision) string {
	if d.Rule == "" {
		return "(none)"
	}
	return d.Rule
}

// doBounded is c.Do for work that reaches upstream (a verification, a digest
// resolution): the call takes a process-wide upstream slot under the ctx of
// the request that starts it, and is not started once that ctx is done.
// Callers that joined a call which never started, and still have time, start
// it again themselves.
func doBounded[V any](e *Engine, c *cache.Cache[V], ctx context.Context, key string, fnCtx func() (context.Context, context.CancelFunc), fn func(context.Context) cache.Outcome[V], ttl cache.TTLFunc[V]) (cache.Outcome[V], cache.Source) {
	bounded := func(fctx context.Context) cache.Outcome[V] {
		// ctx is the starter's: only the caller that starts the call runs
		// this function.
		release, err := e.startUpstream(ctx)
		if err != nil {
			return cache.Outcome[V]{Err: err}
		}
		defer release()
		return fn(fctx)
	}
	for {
		out, src := c.Do(ctx, key, fnCtx, bounded, ttl)
		if errors.Is(out.Err, errNotStarted) && ctx.Err() == nil {
			continue
		}
		return out, src
	}
}
