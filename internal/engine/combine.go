package engine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trustgate-dev/trustgate/internal/cache"
	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Status is one verifier's judgement of one image.
type Status string

const (
	Passed      Status = "passed"      // the verifier trusts the image
	NotTrusted  Status = "untrusted"   // a definite no
	Unavailable Status = "unavailable" // the check could not complete (timeout, server error)
	Skipped     Status = "skipped"     // not needed: the rule's verdict was reached without it
)

// Outcome records what one verifier of a rule said about one image.
type Outcome struct {
	Verifier string   `json:"verifier"`
	Type     string   `json:"type"`
	Status   Status   `json:"status"`
	Digest   string   `json:"digest,omitempty"`
	Signers  []string `json:"signers,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	// Deprecated is the policy's reason this verifier is deprecated, if it is.
	Deprecated string `json:"deprecated,omitempty"`
	Cached     bool   `json:"cached,omitempty"`
	// Expires is when the trust data behind a pass runs out (zero: the
	// scheme does not say).
	Expires time.Time `json:"expires,omitzero"`
}

// Expires is the earliest expiry of the trust data the admission rests on
// (DCT timestamp/targets, certificates), zero when no passing verifier says.
func (d Decision) Expires() time.Time {
	var at time.Time
	for _, o := range d.Outcomes {
		if o.Status == Passed && !o.Expires.IsZero() && (at.IsZero() || o.Expires.Before(at)) {
			at = o.Expires
		}
	}
	return at
}

// Verdict is the decision's label in metrics and logs: "allow", "deny" (a
// definite no) or "unavailable" (denied because a check could not complete).
func (d Decision) Verdict() string {
	switch {
	case d.Allowed:
		return "allow"
	case d.Unavailable:
		return "unavailable"
	default:
		return "deny"
	}
}

// DeprecatedOnly returns the outcomes that admitted the image when every one
// of them is a deprecated verifier's, and nil otherwise: the image still
// depends on a scheme that is going away.
func (d Decision) DeprecatedOnly() []Outcome {
	if !d.Allowed {
		return nil
	}
	n := 0
	for _, o := range d.Outcomes {
		if o.Status != Passed {
			continue
		}
		if o.Deprecated == "" {
			return nil
		}
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]Outcome, 0, n)
	for _, o := range d.Outcomes {
		if o.Status == Passed {
			out = append(out, o)
		}
	}
	return out
}

// KeychainFunc returns the credentials a pod's images are fetched with.
type KeychainFunc func(ctx context.Context, auth resolve.Auth) (authn.Keychain, error)

// WithKeychain sets where verify.Subject.Keychain comes from. Without it the
// engine asks its resolver when that can say (resolve.Resolver.Keychain),
// and verifiers are anonymous otherwise.
func WithKeychain(f KeychainFunc) Option { return func(e *Engine) { e.keychain = f } }

func (e *Engine) keychainFunc() KeychainFunc {
	if e.keychain != nil {
		return e.keychain
	}
	if k, ok := e.resolver.(interface {
		Keychain(context.Context, resolve.Auth) (authn.Keychain, error)
	}); ok {
		return k.Keychain
	}
	return nil
}

// lazyKeychain reads the pod's credentials only when a verifier asks: most
// schemes carry their own, and pull secrets cost a Kubernetes API call.
type lazyKeychain struct {
	once sync.Once
	get  func() (authn.Keychain, error)
	kc   authn.Keychain
	err  error
}

func (l *lazyKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	l.once.Do(func() {
		if l.get != nil {
			l.kc, l.err = l.get()
		}
	})
	if l.err != nil {
		return nil, l.err
	}
	if l.kc == nil {
		return authn.Anonymous, nil
	}
	return l.kc.Resolve(r)
}

func (e *Engine) subjectKeychain(ctx context.Context, auth resolve.Auth) authn.Keychain {
	f := e.keychainFunc()
	if f == nil {
		return &lazyKeychain{}
	}
	return &lazyKeychain{get: func() (authn.Keychain, error) { return f(ctx, auth) }}
}

type combined struct {
	digest   string
	signers  []string
	reason   string
	cached   bool
	outcomes []Outcome
}

// tally combines the outcomes of one rule's verifiers as they arrive.
type tally struct {
	need    int // verifiers that must pass
	out     []Outcome
	passed  int
	failed  int // not trusted
	unavail int
	pending int
	cached  bool
	// Verifiers that are not deprecated: passed, and not answered yet.
	passedCurrent, pendingCurrent int
	// digest is the first digest proven, by; conflict describes two
	// verifiers that proved different digests.
	digest, by string
	conflict   string
	// err0 is the first verifier's error: a rule of one verifier denies
	// with it as it is.
	err0 error
}

// decided reports whether the verdict is known: enough passed, two
// verifiers disagree on the digest, too few can pass even if every verifier
// that did not complete had (a definite no), or every verifier answered.
// A deny that is not yet definite waits for the verifiers still running:
// their no makes it a 403 instead of a "could not complete".
//
// Enough passes made only of deprecated verifiers wait for the current
// verifiers still running: whether the image depends on the deprecated
// scheme alone is what the deprecation warning says, so it must be known.
func (t *tally) decided() bool {
	if t.conflict != "" {
		return true
	}
	if t.passed >= t.need {
		return t.passedCurrent > 0 || t.pendingCurrent == 0
	}
	return t.passed+t.pending+t.unavail < t.need || t.pending == 0
}

// record stores verifier i's answer about the subject.
func (t *tally) record(i int, s verify.Subject, res *verify.Result, src cache.Source, err error) {
	o := &t.out[i]
	t.pending--
	if o.Deprecated == "" {
		t.pendingCurrent--
	}
	if src != cache.Hit {
		t.cached = false
	}
	o.Cached = src == cache.Hit
	if err == nil {
		switch {
		case res.Digest == "":
		case s.Digest != "" && res.Digest != s.Digest && s.Ref.Digest() == s.Digest:
			err = fmt.Errorf("%w: %s proved %s, but the reference asks for %s", verify.ErrUntrusted, o.Verifier, res.Digest, s.Digest)
		case s.Digest != "" && res.Digest != s.Digest:
			err = fmt.Errorf("%w: %s proved %s, but %s is the digest under judgement", verify.ErrUntrusted, o.Verifier, res.Digest, s.Digest)
		}
	}
	if i == 0 {
		t.err0 = err
	}
	switch {
	case err == nil:
		o.Status, o.Digest, o.Signers, o.Reason = Passed, res.Digest, res.Signers, res.Reason
		o.Expires = res.Expires
		if o.Digest == "" {
			o.Digest = s.Digest
		}
		t.passed++
		if o.Deprecated == "" {
			t.passedCurrent++
		}
		if o.Digest == "" {
			return
		}
		if t.digest == "" {
			t.digest, t.by = o.Digest, o.Verifier
		} else if o.Digest != t.digest && t.conflict == "" {
			t.conflict = fmt.Sprintf("verifiers disagree on the digest of %s: %s proved %s, %s proved %s", s.Ref, t.by, t.digest, o.Verifier, o.Digest)
		}
	case errors.Is(err, verify.ErrUntrusted):
		o.Status, o.Reason = NotTrusted, err.Error()
		t.failed++
	default:
		o.Status, o.Reason = Unavailable, err.Error()
		t.unavail++
	}
}

// verifyAll applies the rule's verifiers to ref and combines them: at least
// rule.Need must pass (all, any, or k of n), and every digest proven must be
// the same. Tag binders (notaryv1, acrSignedTag) are asked first and say
// which digest a tag means; the other verifiers then judge that digest, or,
// when no binder proved one, the digest resolved once from the registry.
// Verifiers of one phase run in parallel; the answer comes as soon as the
// verdict cannot change, and verifiers not waited for are recorded as
// skipped. A deny wraps verify.ErrUntrusted when it is definite and
// verify.ErrUnavailable when a verifier that could have changed it did not
// complete.
func (e *Engine) verifyAll(ctx context.Context, p *policy.Policy, rule *policy.Rule, ref imageref.Ref, req Request, co *cachedOnly) (combined, error) {
	n := len(rule.Verifiers)
	t := tally{need: rule.Need, out: make([]Outcome, n), pending: n, cached: true}
	if t.need <= 0 || t.need > n {
		t.need = n // a rule built without policy.compileRule: all
	}
	auth := resolve.Auth{Namespace: req.Namespace, ServiceAccount: req.ServiceAccount, PullSecrets: req.PullSecrets}
	subject := verify.Subject{Ref: ref, Digest: ref.Digest()}
	if co == nil {
		subject.Keychain = e.subjectKeychain(ctx, auth)
	}
	// Phase one: tag binders, or every verifier when the reference names
	// its digest (there is nothing to bind). Phase two: digest-bound schemes.
	var one, two []int
	var oneBuf, twoBuf [4]int
	one, two = oneBuf[:0], twoBuf[:0]
	for i, v := range rule.Verifiers {
		t.out[i] = Outcome{Verifier: v.Name(), Type: v.Type(), Status: Skipped, Deprecated: p.Deprecated[v.Name()]}
		if t.out[i].Deprecated == "" {
			t.pendingCurrent++
		}
		if subject.Digest != "" || verify.BindsTags(v) {
			one = append(one, i)
		} else {
			two = append(two, i)
		}
	}
	if err := e.runPhase(ctx, p, rule, one, subject, &t, co); err != nil {
		return combined{}, err
	}
	if len(two) > 0 && !t.decided() {
		subject.Digest = t.digest
		if subject.Digest == "" {
			d, err := e.resolve(ctx, p, ref, auth, co)
			if errors.Is(err, errNotCached) {
				return combined{}, err
			}
			if err != nil {
				sentinel := verify.ErrUnavailable
				if !resolveUnavailable(err) {
					sentinel = verify.ErrUntrusted
				}
				for _, i := range two {
					t.record(i, subject, nil, cache.Miss, fmt.Errorf("%w: %s: the digest to judge could not be resolved: %v", sentinel, t.out[i].Verifier, err))
				}
			}
			subject.Digest = d
		}
		if subject.Digest != "" {
			if err := e.runPhase(ctx, p, rule, two, subject, &t, co); err != nil {
				return combined{}, err
			}
		}
	}
	return t.verdict(rule, ref)
}

// resolveUnavailable reports whether a failed digest resolution is "could
// not complete" (timeouts, server errors) rather than a definite no: a tag
// the registry says it does not have (404).
func resolveUnavailable(err error) bool {
	var te *transport.Error
	return !(errors.As(err, &te) && te.StatusCode == http.StatusNotFound)
}

// runPhase asks the verifiers idx about s, in parallel, until the verdict
// is decided. From memory only (co set), it returns errNotCached when an
// answer it needs is not cached.
func (e *Engine) runPhase(ctx context.Context, p *policy.Policy, rule *policy.Rule, idx []int, s verify.Subject, t *tally, co *cachedOnly) error {
	if len(idx) == 0 || t.decided() {
		return nil
	}
	if co != nil || len(idx) == 1 {
		missing := false
		for _, i := range idx {
			if t.decided() {
				break
			}
			res, src, err := e.verifyOne(ctx, p, rule.Verifiers[i], s, co)
			if errors.Is(err, errNotCached) {
				missing = true
				continue
			}
			t.record(i, s, res, src, err)
		}
		if missing && !t.decided() {
			return errNotCached
		}
		return nil
	}
	type answer struct {
		i   int
		res *verify.Result
		src cache.Source
		err error
	}
	// Buffered: verifiers not waited for still finish (and fill the cache)
	// without blocking.
	answers := make(chan answer, len(idx))
	for _, i := range idx {
		go func() {
			res, src, err := e.verifyOne(ctx, p, rule.Verifiers[i], s, nil)
			answers <- answer{i, res, src, err}
		}()
	}
	for range idx {
		a := <-answers
		t.record(a.i, s, a.res, a.src, a.err)
		if t.decided() {
			break
		}
	}
	return nil
}

// verdict turns the tally into the rule's answer.
func (t *tally) verdict(rule *policy.Rule, ref imageref.Ref) (combined, error) {
	out := combined{outcomes: t.out, cached: t.cached}
	if t.conflict != "" {
		return out, fmt.Errorf("%w: %s", verify.ErrUntrusted, t.conflict)
	}
	if t.passed >= t.need {
		out.digest = t.digest
		if out.digest == "" {
			out.digest = ref.Digest()
		}
		for _, o := range t.out {
			if o.Status != Passed {
				continue
			}
			if out.reason != "" {
				out.reason += "; "
			}
			out.reason += o.Verifier + ": " + o.Reason
			out.signers = append(out.signers, o.Signers...)
		}
		return out, nil
	}
	sentinel := verify.ErrUntrusted
	if t.passed+t.pending+t.unavail >= t.need {
		// Had the verifiers that did not complete said yes, the image would
		// pass: the check could not complete, it is not a definite no.
		sentinel = verify.ErrUnavailable
	}
	if len(t.out) == 1 && t.err0 != nil {
		// One verifier: its own words (they wrap the same sentinel).
		return out, t.err0
	}
	var b strings.Builder
	switch {
	case t.pending > 0:
		// Decided before every verifier answered: counts would mislead.
		fmt.Fprintf(&b, "%s of %d verifiers needed", needText(rule, t.need), len(t.out))
	case t.passed == 0:
		fmt.Fprintf(&b, "no verifier passed (%s of %d needed)", needText(rule, t.need), len(t.out))
	default:
		fmt.Fprintf(&b, "%d of %d verifiers passed (%s needed)", t.passed, len(t.out), needText(rule, t.need))
	}
	sep := ": "
	for _, o := range t.out {
		if o.Status != NotTrusted && o.Status != Unavailable {
			continue
		}
		b.WriteString(sep)
		sep = "; "
		if !strings.HasPrefix(o.Reason, o.Type+" "+o.Verifier+":") {
			// Unless the scheme's error names its verifier (as
			// "notaryv1 dct: …" does), say which one this is.
			b.WriteString(o.Verifier + ": ")
		}
		b.WriteString(o.Reason)
	}
	return out, fmt.Errorf("%w: %s", sentinel, b.String())
}

func needText(rule *policy.Rule, need int) string {
	switch {
	case need == len(rule.Verifiers):
		return "all"
	case need == 1:
		return "one"
	default:
		return fmt.Sprint(need)
	}
}
