package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/test/harness/dct"
)

// FloodRun is one burst of scenario (f).
type FloodRun struct {
	Name         string          `json:"name"`
	Pods         int             `json:"pods"`
	ImagesPerPod int             `json:"imagesPerPod"`
	Run          *loadgen.Result `json:"run"`
	// Upstream is the requests that reached the notary server; MaxInFlight
	// the most that were open at once.
	Upstream    int64 `json:"upstream"`
	MaxInFlight int64 `json:"maxInFlight"`
	// MaxAnswered counts only requests the client waited for to the end
	// (see holdingProxy.MaxAnswering).
	MaxAnswered int64 `json:"maxAnswered"`
	// HWMMiB is trustgate's peak RSS (VmHWM) during the run (loadgen resets
	// it when a run starts).
	HWMMiB float64 `json:"hwmMiB"`
}

// FloodResult is scenario (f): one pod naming 5,000 repositories, and pods
// at the cap, against a notary server that takes 300 ms per answer.
type FloodResult struct {
	Latency    time.Duration `json:"latency"`
	Deadline   time.Duration `json:"deadline"`
	Cap        int           `json:"cap"`           // engine.DefaultMaxImages
	Parallel   int           `json:"parallel"`      // engine.DefaultParallel, per request
	Verifs     int           `json:"verifications"` // engine.DefaultMaxUpstream, whole process
	Limit      int           `json:"limit"`         // verify.DefaultMaxRequests, whole process
	IdleRSSMiB float64       `json:"idleRSSMiB"`    // before the first run
	Runs       []FloodRun    `json:"runs"`
	MemLimit   float64       `json:"memLimitMiB"` // deploy/base's memory limit
}

// (f) A pod naming 5,000 repositories (issue 9, item 4), twice at once; then
// pods at the image cap, one and several at once, so that first the
// per-request bound and then the process-wide limits are what hold. The notary server answers every request 300 ms late (an HTTP
// proxy that holds each request, so in-flight requests can be counted). The
// images are distinct repositories without trust data: each costs one
// request, as a first look at a repository does.
func (e *env) flood(ctx context.Context, rep *report) error {
	const latency, deadline = 300 * time.Millisecond, 5 * time.Second
	px, err := startHoldingProxy(e.notary.URL(), e.notary.CA(), latency)
	if err != nil {
		return err
	}
	defer px.Close()
	tg, err := e.startTrustgate("trustgate-flood", px.URL(), deadline)
	if err != nil {
		return err
	}
	defer tg.stop()
	idle, err := loadgen.ReadProc(tg.PID())
	if err != nil {
		return err
	}
	f := &FloodResult{Latency: latency, Deadline: deadline, Cap: engine.DefaultMaxImages, Parallel: engine.DefaultParallel,
		Verifs: engine.DefaultMaxUpstream, Limit: verify.DefaultMaxRequests, IdleRSSMiB: float64(idle.RSS) / (1 << 20), MemLimit: 256}
	rep.Flood = f

	next := 0 // repositories are never reused, so no run is answered from the cache
	repos := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("127.0.0.1:5000/bench/flood/r%05d:v1", next)
			next++
		}
		return out
	}
	for _, r := range []struct {
		name         string
		pods, images int
		reason       string
	}{
		{"two pods of 5,000 images at once", 2, 5000, "trustgate judges at most"},
		{fmt.Sprintf("one pod of %d images (the cap)", engine.DefaultMaxImages), 1, engine.DefaultMaxImages, "timed out"},
		{fmt.Sprintf("eight pods of %d images at once", engine.DefaultMaxImages), 8, engine.DefaultMaxImages, "timed out"},
	} {
		bodies := make([]loadgen.Body, r.pods)
		for i := range bodies {
			if bodies[i], err = manyImagePod(fmt.Sprintf("flood-%05d", next), repos(r.images)); err != nil {
				return err
			}
		}
		c := cfgFor(tg, loadgen.Burst, bodies)
		c.Requests, c.LateAfter, c.ReasonSubstring = r.pods, deadline, r.reason
		px.Reset()
		res, err := loadgen.Run(ctx, c)
		if err != nil {
			return err
		}
		// Requests trustgate started before answering may still be held by
		// the proxy; count them once they are done (at most one latency).
		px.WaitIdle(ctx, 2*latency)
		proc, err := loadgen.ReadProc(tg.PID())
		if err != nil {
			return err
		}
		run := FloodRun{Name: r.name, Pods: r.pods, ImagesPerPod: r.images, Run: res,
			Upstream: px.Count(), MaxInFlight: px.MaxInFlight(), MaxAnswered: px.MaxAnswering(), HWMMiB: float64(proc.HWM) / (1 << 20)}
		f.Runs = append(f.Runs, run)
		logf("  %s: %d answered (%d late > %s, max %.0f ms, %d errors), %d requests upstream, at most %d answered in flight (%d with abandoned ones), peak RSS %.1f MiB",
			r.name, res.Requests, res.Late, deadline, res.Max, res.Errors, run.Upstream, run.MaxAnswered, run.MaxInFlight, run.HWMMiB)
	}
	return nil
}

// manyImagePod is an AdmissionReview of a Pod with one container per image.
func manyImagePod(name string, images []string) (loadgen.Body, error) {
	containers := make([]any, len(images))
	for i, img := range images {
		containers[i] = map[string]any{"name": fmt.Sprintf("c%05d", i), "image": img}
	}
	h := sha256Sum(name)
	uid := fmt.Sprintf("f1f1f1f1-0000-4000-8000-%x", h[:6]) // one per pod
	review := map[string]any{
		"apiVersion": "admission.k8s.io/v1",
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       uid,
			"kind":      map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]any{"group": "", "version": "v1", "resource": "pods"},
			"name":      name,
			"namespace": "default",
			"operation": "CREATE",
			"userInfo":  map[string]any{"username": "alice@example.com"},
			"object": map[string]any{
				"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{"name": name, "namespace": "default"},
				"spec":     map[string]any{"containers": containers},
			},
			"dryRun": false,
		},
	}
	data, err := json.Marshal(review)
	if err != nil {
		return loadgen.Body{}, err
	}
	return loadgen.Body{Data: data, UID: uid}, nil
}

// holdingProxy is an HTTPS reverse proxy in front of the notary server that
// holds every request for a fixed latency before forwarding it, and counts
// requests in total and in flight (the most at once). Unlike the TCP
// SlowProxy it sees requests, not connections, so the in-flight figure is
// the number of upstream requests trustgate has open.
type holdingProxy struct {
	srv      *http.Server
	ln       net.Listener
	latency  time.Duration
	total    atomic.Int64
	inFlight atomic.Int64
	maxSeen  atomic.Int64
	mu       sync.Mutex
	idle     *sync.Cond
	// answered holds the time each answered request arrived and the time
	// its answer was complete; requests the client abandoned are left out
	// (see MaxAnswering).
	answered [][2]time.Time
}

func startHoldingProxy(upstreamURL string, ca *dct.CA, latency time.Duration) (*holdingProxy, error) {
	u, err := url.Parse(upstreamURL)
	if err != nil {
		return nil, fmt.Errorf("start holding proxy: %w", err)
	}
	cert, err := ca.IssueTLS("holding-proxy")
	if err != nil {
		return nil, fmt.Errorf("start holding proxy: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start holding proxy: %w", err)
	}
	p := &holdingProxy{ln: ln, latency: latency}
	p.idle = sync.NewCond(&p.mu)
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.total.Add(1)
			arrived := time.Now()
			n := p.inFlight.Add(1)
			var once sync.Once
			done := func() {
				once.Do(func() {
					if p.inFlight.Add(-1) == 0 {
						p.mu.Lock()
						p.idle.Broadcast()
						p.mu.Unlock()
					}
				})
			}
			defer done()
			for {
				m := p.maxSeen.Load()
				if n <= m || p.maxSeen.CompareAndSwap(m, n) {
					break
				}
			}
			t := time.NewTimer(p.latency)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return // the client gave up: nothing is forwarded
			}
			// The whole answer is fetched, then the request stops counting
			// as in flight, then it is written: the client cannot see the
			// end of an answer (and send its next request) while the
			// request still counts here.
			up, err := http.NewRequestWithContext(r.Context(), r.Method, u.JoinPath(r.URL.Path).String(), nil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			up.Header = r.Header.Clone()
			resp, err := client.Do(up)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			resp.Body.Close()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			done()
			p.mu.Lock()
			p.answered = append(p.answered, [2]time.Time{arrived, time.Now()})
			p.mu.Unlock()
			for k, vs := range resp.Header {
				if k != "Content-Length" {
					w.Header()[k] = vs
				}
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(body)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	return p, nil
}

// URL is https://127.0.0.1:PORT.
func (p *holdingProxy) URL() string { return "https://" + p.ln.Addr().String() }

// Count is the requests received since the last Reset.
func (p *holdingProxy) Count() int64 { return p.total.Load() }

// MaxInFlight is the most requests open at once since the last Reset.
func (p *holdingProxy) MaxInFlight() int64 { return p.maxSeen.Load() }

// Reset zeroes the counts (not the requests in flight).
func (p *holdingProxy) Reset() {
	p.total.Store(0)
	p.maxSeen.Store(p.inFlight.Load())
	p.mu.Lock()
	p.answered = nil
	p.mu.Unlock()
}

// MaxAnswering is the most answered requests that were open at once.
// MaxInFlight also counts requests the client had already abandoned (a
// verifier cancels the parallel fetches it no longer needs, e.g. after a
// 404 for root.json): the client frees its slot at once, the proxy notices
// a little later, so MaxInFlight can exceed the client's limit by the
// cancellations it has not noticed yet.
func (p *holdingProxy) MaxAnswering() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	type edge struct {
		at    time.Time
		delta int64
	}
	edges := make([]edge, 0, 2*len(p.answered))
	for _, iv := range p.answered {
		edges = append(edges, edge{iv[0], 1}, edge{iv[1], -1})
	}
	// Ends sort before starts at the same instant.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return int(a.delta - b.delta)
	})
	var n, most int64
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// WaitIdle waits until no request is in flight, or limit passes.
func (p *holdingProxy) WaitIdle(ctx context.Context, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.inFlight.Load() > 0 && ctx.Err() == nil {
		p.idle.Wait()
	}
}

// Close stops the proxy.
func (p *holdingProxy) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = p.srv.Close()
	}
}

// evaluateFlood checks (f) against issue 9 item 4: every answer before the
// deadline, the over-cap pods denied with no upstream request, upstream
// requests in flight within the per-request bound for one pod and within the
// process-wide limit for several, and peak RSS well under deploy/base's
// 256 MiB limit.
func (r *report) evaluateFlood(add func(Target), missing func(name, goal string)) {
	const name = "5,000-image pod against a 300 ms notary (issue 9)"
	const goal = "every answer before the deadline; upstream requests in flight ≤ the configured limit; peak RSS < 256 MiB"
	f := r.Flood
	if f == nil || len(f.Runs) < 3 {
		missing(name, goal)
		return
	}
	met := true
	var late, errs int
	for i, run := range f.Runs {
		if run.Run == nil {
			missing(name, goal)
			return
		}
		late += run.Run.Late
		errs += run.Run.Errors
		bound := int64(f.Limit)
		switch {
		case run.Run.Requests != run.Pods || run.Run.Allowed != 0 || run.Run.Late > 0 || run.Run.Errors > 0:
			met = false
		case i == 0 && (run.Upstream != 0 || run.Run.ReasonMatches != run.Pods):
			met = false // over the cap: denied as such, nothing started
		case run.MaxAnswered > bound:
			met = false
		case run.HWMMiB >= f.MemLimit:
			met = false
		}
	}
	over, one, many := f.Runs[0], f.Runs[1], f.Runs[2]
	add(Target{Name: name, Goal: goal, Met: met,
		Measured: fmt.Sprintf("2 × 5,000 images: denied in max %.0f ms, %d upstream requests; 1 × %d: max %.0f ms, ≤ %d in flight; 8 × %d: max %.0f ms, ≤ %d in flight (limit %d); %d late, %d errors; peak RSS %.1f MiB",
			over.Run.Max, over.Upstream, one.ImagesPerPod, one.Run.Max, one.MaxAnswered,
			many.ImagesPerPod, many.Run.Max, many.MaxAnswered, f.Limit, late, errs, max(over.HWMMiB, one.HWMMiB, many.HWMMiB))})
}

// floodSection writes (f) into the report.
func (r *report) floodSection(b *strings.Builder) {
	f := r.Flood
	if f == nil || len(f.Runs) == 0 {
		return
	}
	fmt.Fprintln(b, "## (f) One pod naming 5,000 repositories against a slow notary server")
	fmt.Fprintln(b)
	fmt.Fprintf(b, "An HTTPS proxy holds every request to notary-server for %s (and counts the requests open at\n", f.Latency)
	fmt.Fprintf(b, "once); the policy's `settings.deadline` is %s. Every image is a different repository without trust\n", f.Deadline)
	fmt.Fprintln(b, "data, so each costs one request and no run is answered from the cache. trustgate judges at most")
	fmt.Fprintf(b, "%d distinct images per request (more are denied whole, before any work), %d of one request at\n", f.Cap, f.Parallel)
	fmt.Fprintf(b, "once, at most %d verifications or digest resolutions in flight in the whole process\n", f.Verifs)
	fmt.Fprintf(b, "(engine.DefaultMaxImages, DefaultParallel, DefaultMaxUpstream), and at most %d requests to notary\n", f.Limit)
	fmt.Fprintln(b, "servers and registries open at once (verify.DefaultMaxRequests; a verification fetches several")
	fmt.Fprintln(b, "metadata files in parallel); nothing starts after a request's deadline. \"late\" counts answers")
	fmt.Fprintln(b, "after the deadline, measured by the client. Peak RSS is trustgate's VmHWM during the run (idle")
	fmt.Fprintf(b, "before the first: %.1f MiB), against deploy/base's %.0f Mi limit.\n", f.IdleRSSMiB, f.MemLimit)
	fmt.Fprintln(b)
	fmt.Fprintln(b, "\"Most in flight\" counts requests trustgate waited for to the end; the figure after it also counts")
	fmt.Fprintln(b, "requests trustgate had abandoned (a verifier cancels the parallel fetches it no longer needs, e.g.")
	fmt.Fprintln(b, "after a 404 for root.json) that the proxy had not yet noticed, so it may exceed the limit.")
	fmt.Fprintln(b)
	fmt.Fprintln(b, "| run | answers (denied, errors) | late | p50 / max ms | upstream requests | most in flight (with abandoned) | peak RSS MiB |")
	fmt.Fprintln(b, "|---|---|---:|---:|---:|---:|---:|")
	for _, run := range f.Runs {
		if run.Run == nil {
			continue
		}
		fmt.Fprintf(b, "| %s | %d (%d, %d) | %d | %.0f / %.0f | %d | %d (%d) | %.1f |\n", run.Name, run.Run.Requests, run.Run.NotAllowed, run.Run.Errors,
			run.Run.Late, run.Run.P50, run.Run.Max, run.Upstream, run.MaxAnswered, run.MaxInFlight, run.HWMMiB)
	}
	fmt.Fprintln(b)
	fmt.Fprintln(b, "One deny message of each run, shortened (image and repository names elided):")
	fmt.Fprintln(b)
	for _, run := range f.Runs {
		if run.Run == nil {
			continue
		}
		grouped := groupReasons(run.Run.Reasons)
		if keys := sortedKeys(grouped); len(keys) > 0 {
			reason := floodRepo.ReplaceAllString(keys[0], "REPO")
			fmt.Fprintf(b, "- %s: `%s`\n", run.Name, truncateReason(strings.ReplaceAll(reason, "`", "'"), 300))
		}
	}
	fmt.Fprintln(b)
}

var floodRepo = regexp.MustCompile(`127\.0\.0\.1:5000/bench/flood/r[0-9]+|https://127\.0\.0\.1:[0-9]+`)

func truncateReason(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
