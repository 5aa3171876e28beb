package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// gateVerifier stands for a slow upstream: each call counts as one request
// in flight until the test opens the gate (or the call's ctx ends). It
// records the most calls ever in flight at once.
type gateVerifier struct {
	name     string
	gate     chan struct{} // closed: calls return at once
	started  chan struct{} // one send per call started (buffered by the test)
	calls    atomic.Int64
	inFlight atomic.Int64
	maxSeen  atomic.Int64
}

func (v *gateVerifier) Name() string    { return v.name }
func (v *gateVerifier) BindsTags() bool { return true } // says which digest a tag means, as notaryv1
func (v *gateVerifier) Type() string    { return "gate" }
func (v *gateVerifier) Verify(ctx context.Context, _ verify.Subject) (*verify.Result, error) {
	return v.verify(ctx)
}

func (v *gateVerifier) verify(ctx context.Context) (*verify.Result, error) {
	v.calls.Add(1)
	n := v.inFlight.Add(1)
	defer v.inFlight.Add(-1)
	for {
		m := v.maxSeen.Load()
		if n <= m || v.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	if v.started != nil {
		v.started <- struct{}{}
	}
	select {
	case <-v.gate:
		return &verify.Result{Digest: dA, Reason: "signed"}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", verify.ErrUnavailable, ctx.Err())
	}
}

const boundsPolicy = `
settings: {deadline: 30s}
verifiers:
  - {name: dct, type: notaryv1}
rules:
  - {name: ours, images: ["reg.io/**"], verify: [dct]}
`

func images(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("reg.io/%s-%04d:v1", prefix, i)
	}
	return out
}

// A request whose deadline passes while its first images are being verified
// starts nothing more: today each remaining image started a detached
// verification the moment its turn came, so the concurrency limit stopped
// applying after the deadline.
func TestNothingStartedAfterDeadline(t *testing.T) {
	const parallel, n = 4, 100
	v := &gateVerifier{name: "dct", gate: make(chan struct{}), started: make(chan struct{}, n)}
	e := New(newPolicyV(t, boundsPolicy, v), WithParallel(parallel))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// The deadline passes once the first `parallel` verifications are
		// under way: a count, not a clock.
		for range parallel {
			select {
			case <-v.started:
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	rep := e.Evaluate(ctx, Request{Namespace: "default", Images: images("slow", n)})
	if ctx.Err() == nil {
		t.Fatalf("Evaluate returned before %d verifications started: %+v", parallel, rep.Decisions[0])
	}
	// Every image is answered, as a deny that says it timed out.
	if len(rep.Decisions) != n {
		t.Fatalf("%d decisions, want %d", len(rep.Decisions), n)
	}
	for _, d := range rep.Decisions {
		if d.Allowed || !strings.Contains(d.Reason, "timed out") {
			t.Fatalf("decision %+v, want a deny that says timed out", d)
		}
	}
	// The verifications started before the deadline run on (their answer is
	// cached for the next request); nothing else may start. Give any
	// detached work that escaped the bound a chance to show itself before
	// counting.
	close(v.gate)
	for i := 0; i < 100 && v.calls.Load() == parallel; i++ {
		time.Sleep(2 * time.Millisecond)
	}
	if got := v.calls.Load(); got != parallel {
		t.Fatalf("%d verifications started for a request whose deadline passed after %d had started", got, parallel)
	}
}

// Verifications in flight across all requests never exceed the process-wide
// limit, however many requests arrive at once, and each request starts at
// most one verification per distinct image.
func TestUpstreamInFlightBounded(t *testing.T) {
	const limit, requests, perRequest = 5, 4, 40
	v := &gateVerifier{name: "dct", gate: make(chan struct{}), started: make(chan struct{}, requests*perRequest)}
	e := New(newPolicyV(t, boundsPolicy, v), WithParallel(16), WithMaxUpstream(limit))
	var wg sync.WaitGroup
	done := make(chan struct{})
	allowed := make([]int, requests)
	for r := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep := e.Evaluate(context.Background(), Request{Namespace: "default", Images: images(fmt.Sprintf("r%d", r), perRequest)})
			for _, d := range rep.Decisions {
				if d.Allowed {
					allowed[r]++
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	// Let the limit fill up; give work that escapes the bound a chance to
	// start too; then release everything.
	for range limit {
		select {
		case <-v.started:
		case <-done:
			t.Fatalf("every request answered with %d verifications started: %v", v.calls.Load(), allowed)
		}
	}
	for i := 0; i < 100 && v.inFlight.Load() <= limit; i++ {
		time.Sleep(2 * time.Millisecond)
	}
	if got := v.inFlight.Load(); got != limit {
		t.Fatalf("%d verifications in flight with every request waiting, want the limit, %d", got, limit)
	}
	close(v.gate)
	wg.Wait()
	if got := v.maxSeen.Load(); got > limit {
		t.Fatalf("at most %d verifications should be in flight; saw %d", limit, got)
	}
	if got := v.calls.Load(); got != requests*perRequest {
		t.Fatalf("%d verifications for %d distinct images", got, requests*perRequest)
	}
	for r, n := range allowed {
		if n != perRequest {
			t.Fatalf("request %d: %d of %d images allowed", r, n, perRequest)
		}
	}
}

// A request naming more distinct images than the cap is denied whole, with a
// reason that says so, and costs no verification; one at the cap is judged.
func TestDistinctImageCap(t *testing.T) {
	const limit = 8
	v := &gateVerifier{name: "dct", gate: make(chan struct{})}
	close(v.gate)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	e := New(newPolicyV(t, boundsPolicy, v), WithMaxImages(limit), WithMetrics(m))

	over := append(images("many", limit+1), images("many", 3)...) // repeats do not count
	for _, cached := range []bool{false, true} {
		var rep Report
		if cached {
			var ok bool
			if rep, ok = e.EvaluateCached(Request{Namespace: "default", Images: over}); !ok {
				t.Fatal("EvaluateCached declined a request over the cap; it needs no verification")
			}
		} else {
			rep = e.Evaluate(context.Background(), Request{Namespace: "default", Images: over})
		}
		if len(rep.Decisions) != limit+1 {
			t.Fatalf("cached=%v: %d decisions, want one per distinct image (%d)", cached, len(rep.Decisions), limit+1)
		}
		for _, d := range rep.Decisions {
			if d.Allowed || !strings.Contains(d.Reason, fmt.Sprintf("names %d distinct images; trustgate judges at most %d", limit+1, limit)) {
				t.Fatalf("cached=%v: decision %+v, want a deny naming the cap", cached, d)
			}
		}
	}
	if got := v.calls.Load(); got != 0 {
		t.Fatalf("%d verifications for a request over the cap", got)
	}
	rep := e.Evaluate(context.Background(), Request{Namespace: "default", Images: images("many", limit)})
	if len(rep.Denied()) != 0 || v.calls.Load() != limit {
		t.Fatalf("a request at the cap: %d denied, %d verifications, want 0 and %d", len(rep.Denied()), v.calls.Load(), limit)
	}
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("(none)", "deny")); got != 2*(limit+1) {
		t.Fatalf("over-cap denies counted %v times, want %d", got, 2*(limit+1))
	}
}

// Resolutions for pinning count against the same upstream limit and start
// nothing after the deadline.
func TestResolveNotStartedAfterDeadline(t *testing.T) {
	r := &tallyResolver{}
	e := New(newPolicyV(t, basePolicy, &gateVerifier{name: "dct"}, &gateVerifier{name: "cosign"}), WithResolver(r))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep := e.Evaluate(ctx, Request{Namespace: "default", Images: []string{"nginx:1"}, Pin: true})
	if d := rep.Decisions[0]; d.Allowed || !strings.Contains(d.Reason, "timed out") {
		t.Fatalf("decision %+v, want a timed-out deny", d)
	}
	for i := 0; i < 50 && r.calls.Load() == 0; i++ {
		time.Sleep(2 * time.Millisecond) // room for detached work to show itself
	}
	if got := r.calls.Load(); got != 0 {
		t.Fatalf("%d resolutions started after the deadline", got)
	}
}

type tallyResolver struct{ calls atomic.Int64 }

func (r *tallyResolver) Resolve(context.Context, imageref.Ref, resolve.Auth) (string, error) {
	r.calls.Add(1)
	return dB, nil
}

// newPolicyV is newPolicy for any verifiers.
func newPolicyV(t testing.TB, doc string, vs ...verify.Verifier) *policy.Policy {
	t.Helper()
	byName := map[string]verify.Verifier{}
	for _, v := range vs {
		byName[v.Name()] = v
	}
	return policytest.Parse(t, "test", "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\n"+doc,
		policytest.Scheme("notaryv1", func(name string, _ verify.Deps) (verify.Verifier, error) { return byName[name], nil }))
}
