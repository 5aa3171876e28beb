package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
)

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// Pair is one load run against trustgate and the same against the floor.
type Pair struct {
	Name      string          `json:"name"`
	Trustgate *loadgen.Result `json:"trustgate"`
	Floor     *loadgen.Result `json:"floor"`
}

// WarmResult is scenario (a).
type WarmResult struct {
	Slices     int    `json:"slices"`
	Open       []Pair `json:"open"`
	Saturation *Pair  `json:"saturation"`
	// Upstream is how many requests reached the notary server during (a).
	Upstream int64 `json:"upstream"`
}

// AnchorResult is `anchor measure --json`.
type AnchorResult struct {
	Cold struct {
		N           int     `json:"n"`
		P50Millis   float64 `json:"p50ms"`
		P90Millis   float64 `json:"p90ms"`
		P50Requests int64   `json:"p50Requests"`
		MinRequests int64   `json:"minRequests"`
		MaxRequests int64   `json:"maxRequests"`
	} `json:"cold"`
	Warm struct {
		N           int     `json:"n"`
		P50Millis   float64 `json:"p50ms"`
		P90Millis   float64 `json:"p90ms"`
		P50Requests int64   `json:"p50Requests"`
		MinRequests int64   `json:"minRequests"`
		MaxRequests int64   `json:"maxRequests"`
	} `json:"warm"`
}

// ColdResult is scenario (b).
type ColdResult struct {
	// FirstOfRepo: one request per repository trustgate has never seen.
	FirstOfRepo         *loadgen.Result  `json:"firstOfRepo"`
	FirstOfRepoUpstream int64            `json:"firstOfRepoUpstream"`
	FirstOfRepoPaths    map[string]int64 `json:"firstOfRepoPaths"`
	// NewTag: new tags of a repository whose metadata trustgate holds.
	NewTag         *loadgen.Result `json:"newTag"`
	NewTagUpstream int64           `json:"newTagUpstream"`
	// FloorSequential: the same one-at-a-time requests against the floor,
	// the cost of the admission round trip alone.
	FloorSequential *loadgen.Result `json:"floorSequential"`
	Anchor          *AnchorResult   `json:"anchor"`
	// AnchorPaths counts what the anchor's whole run fetched (cold and
	// warm lookups, and the untimed first lookup).
	AnchorPaths map[string]int64 `json:"anchorPaths"`
	// Connections opened to the notary side (TCP accepts at a proxy) by
	// trustgate for the cold verifications and by the whole anchor run.
	FirstOfRepoConns int64 `json:"firstOfRepoConns"`
	AnchorConns      int64 `json:"anchorConns"`
}

// RequestsPerVerification is the upstream requests of one first-time
// verification.
func (c *ColdResult) RequestsPerVerification() float64 {
	if c.FirstOfRepo == nil || c.FirstOfRepo.Requests == 0 {
		return 0
	}
	return float64(c.FirstOfRepoUpstream) / float64(c.FirstOfRepo.Requests)
}

// BurstResult is scenario (c).
type BurstResult struct {
	Image     string           `json:"image"`
	Trustgate *loadgen.Result  `json:"trustgate"`
	Floor     *loadgen.Result  `json:"floor"`
	Upstream  int64            `json:"upstream"`
	Paths     map[string]int64 `json:"paths"`
}

// ManyResult is scenario (d).
type ManyResult struct {
	Images     int             `json:"images"`
	Run        *loadgen.Result `json:"run"`
	IdleRSSMiB float64         `json:"idleRSSMiB"`
	EndRSSMiB  float64         `json:"endRSSMiB"`
	HWMMiB     float64         `json:"hwmMiB"`
	Upstream   int64           `json:"upstream"`
	Second     *loadgen.Result `json:"second"` // the same images again, all cached
}

// SlowResult is scenario (e).
type SlowResult struct {
	Deadline  time.Duration   `json:"deadline"`
	Latency   time.Duration   `json:"latency"`
	LateAfter time.Duration   `json:"lateAfter"`
	Run       *loadgen.Result `json:"run"`
	TimedOut  int             `json:"timedOut"` // answers whose reason says "timed out"
}

// (a) warm cache: open loop at a fixed rate and closed loop at saturation,
// trustgate and floor, every image already verified. Each pair is measured
// in interleaved slices (floor, trustgate, trustgate, floor, …) over kept
// connections, so background load on the shared machine hits both alike.
func (e *env) warm(ctx context.Context, rep *report) error {
	tg, err := e.startTrustgate("trustgate", e.conns.URL(), 5*time.Second)
	if err != nil {
		return err
	}
	fl, err := e.startFloor()
	if err != nil {
		return err
	}
	e.main, e.floorSrv = tg, fl
	// One request verifies the image; everything after is the warm path.
	first := cfgFor(tg, loadgen.Closed, mustBodies(loadgen.KindPod, []string{e.hotImage}, false))
	first.Workers, first.Requests = 1, 1
	r, err := loadgen.Run(ctx, first)
	if err != nil {
		return err
	}
	if err := allowedAll(r); err != nil {
		return fmt.Errorf("warming %s: %w", e.hotImage, err)
	}
	e.counter.Reset()
	w := &WarmResult{Slices: e.o.slices}
	rep.Warm = w
	for _, k := range loadgen.Kinds {
		d, rate := e.o.warmDuration, e.o.warmRate
		switch k {
		case loadgen.KindDeployment:
			d /= 2
		case loadgen.KindBigPod:
			// 30 containers per Pod is rare; at 1,000/s it would only
			// measure a saturated queue.
			d, rate = d/2, e.o.bigRate
		}
		base := loadgen.Config{Mode: loadgen.Open, Rate: rate, Workers: 64, Bodies: mustBodies(k, []string{e.hotImage}, false)}
		p, err := e.pair(ctx, fmt.Sprintf("%s, open loop %.0f/s", k, rate), fl, tg, base, d)
		if err != nil {
			return err
		}
		w.Open = append(w.Open, p)
	}
	base := loadgen.Config{Mode: loadgen.Closed, Workers: e.o.satWorkers, Bodies: mustBodies(loadgen.KindPod, []string{e.hotImage}, false)}
	sat, err := e.pair(ctx, fmt.Sprintf("pod, closed loop %d workers", e.o.satWorkers), fl, tg, base, e.o.satDuration)
	if err != nil {
		return err
	}
	w.Saturation = &sat
	w.Upstream = e.counter.Count()
	if e.o.profile != "" {
		if err := e.profileWarm(ctx, tg); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("profiling failed: %v", err))
		}
	}
	return nil
}

// pair measures base against the floor and trustgate in e.o.slices
// interleaved slices of total/slices each, 500 ms unmeasured before each.
func (e *env) pair(ctx context.Context, name string, fl, tg *server, base loadgen.Config, total time.Duration) (Pair, error) {
	p := Pair{Name: name}
	var fls, tgs []*loadgen.Result
	for i := range e.o.slices {
		order := []*server{fl, tg}
		if i%2 == 1 {
			order = []*server{tg, fl}
		}
		for _, s := range order {
			c := base
			c.Name, c.URL, c.PID, c.Client = s.name, s.URL(), s.PID(), s.client
			c.LateAfter, c.Timeout = 10*time.Second, 30*time.Second
			c.Duration, c.Warmup = total/time.Duration(e.o.slices), 500*time.Millisecond
			res, err := loadgen.Run(ctx, c)
			if err != nil {
				return p, fmt.Errorf("%s against %s: %w", name, s.name, err)
			}
			if s == tg {
				tgs = append(tgs, res)
			} else {
				fls = append(fls, res)
			}
		}
	}
	p.Trustgate, p.Floor = loadgen.Merge(tgs...), loadgen.Merge(fls...)
	logf("  %s: trustgate p99 %.2f ms %.0f req/s %.0f µs CPU/req | floor p99 %.2f ms %.0f req/s %.0f µs CPU/req",
		name, p.Trustgate.P99, p.Trustgate.Throughput, p.Trustgate.CPUPerRequest(), p.Floor.P99, p.Floor.Throughput, p.Floor.CPUPerRequest())
	return p, nil
}

// profileWarm takes CPU profiles of trustgate at the warm rate and at
// saturation (unmeasured runs), for the analysis of a missed target.
func (e *env) profileWarm(ctx context.Context, tg *server) error {
	if tg.pprof == "" {
		return errors.New("trustgate was not built with the pprof overlay")
	}
	bodies := mustBodies(loadgen.KindPod, []string{e.hotImage}, false)
	for _, run := range []struct {
		name string
		cfg  loadgen.Config
	}{
		{"warm-open", loadgen.Config{Mode: loadgen.Open, Rate: e.o.warmRate, Workers: 64, Duration: 6 * time.Second}},
		{"warm-saturation", loadgen.Config{Mode: loadgen.Closed, Workers: e.o.satWorkers, Duration: 6 * time.Second}},
	} {
		c := run.cfg
		c.Name, c.URL, c.Client, c.Bodies, c.Warmup = tg.name, tg.URL(), tg.client, bodies, 0
		prof := make(chan error, 1)
		go func() {
			prof <- fetchProfile(ctx, tg.pprof, 5, filepath.Join(e.o.profile, "trustgate-"+run.name+".pprof"))
		}()
		if _, err := loadgen.Run(ctx, c); err != nil {
			return err
		}
		if err := <-prof; err != nil {
			return err
		}
	}
	logf("  CPU profiles written to %s", e.o.profile)
	return nil
}

func fetchProfile(ctx context.Context, addr string, seconds int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+10)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile: HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	return os.WriteFile(path, data, 0o644)
}

// sequential sends the bodies one at a time (one worker), each once.
func sequential(ctx context.Context, s *server, bodies []loadgen.Body) (*loadgen.Result, error) {
	c := cfgFor(s, loadgen.Closed, bodies)
	c.Workers, c.Requests = 1, len(bodies)
	return loadgen.Run(ctx, c)
}

// (b) cold: first verification of a repository, new tags of a known one,
// and the anchor side by side.
func (e *env) cold(ctx context.Context, rep *report) error {
	if e.main == nil {
		return errors.New("needs the trustgate of (a)")
	}
	c := &ColdResult{}
	rep.Cold = c
	e.counter.Reset()
	conns0 := e.conns.Accepted()
	res, err := sequential(ctx, e.main, mustBodies(loadgen.KindPod, e.coldImages, true))
	if err != nil {
		return err
	}
	c.FirstOfRepo, c.FirstOfRepoUpstream = res, e.counter.Count()
	c.FirstOfRepoConns = e.conns.Accepted() - conns0
	c.FirstOfRepoPaths = e.counter.Paths()
	if err := allowedAll(res); err != nil {
		return err
	}
	logf("  first of a repository: p50 %.2f ms, %.1f upstream requests each", res.P50, c.RequestsPerVerification())

	// The bulk repository's metadata is fetched once, then every new tag
	// should be answered from it.
	if _, err := sequential(ctx, e.main, mustBodies(loadgen.KindPod, e.bulkImages(0, 1), true)); err != nil {
		return err
	}
	e.counter.Reset()
	res, err = sequential(ctx, e.main, mustBodies(loadgen.KindPod, e.bulkImages(1, e.o.newTags), true))
	if err != nil {
		return err
	}
	c.NewTag, c.NewTagUpstream = res, e.counter.Count()
	if err := allowedAll(res); err != nil {
		return err
	}
	logf("  new tag of a known repository: p50 %.2f ms, %d upstream requests for %d tags", res.P50, c.NewTagUpstream, res.Requests)

	floorBodies := mustBodies(loadgen.KindPod, e.bulkImages(1, e.o.newTags), true)
	if res, err = sequential(ctx, e.floorSrv, floorBodies); err != nil {
		return err
	}
	c.FloorSequential = res

	// --ping: docker/cli (and Portieris) GET /v2/ first to learn the
	// auth challenge; that request is part of the path measured.
	args := []string{"measure", "--ping", "--server", e.conns.URL(), "--ca", e.notary.CAFile(), "--tags", "v1",
		"--cold", fmt.Sprint(e.o.anchorCold), "--warm", fmt.Sprint(e.o.anchorWarm), "--json"}
	for _, r := range e.coldRoots {
		args = append(args, "--repo", r)
	}
	e.counter.Reset()
	conns0 = e.conns.Accepted()
	cmd := exec.CommandContext(ctx, e.o.anchor, args...)
	out, err := cmd.Output()
	c.AnchorPaths = byRole(e.counter.Paths())
	c.AnchorConns = e.conns.Accepted() - conns0
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return fmt.Errorf("anchor: %w", err)
	}
	var a AnchorResult
	if err := json.Unmarshal(out, &a); err != nil {
		return fmt.Errorf("anchor output: %w", err)
	}
	c.Anchor = &a
	logf("  anchor: cold p50 %.2f ms with %d requests; warm p50 %.2f ms with %d", a.Cold.P50Millis, a.Cold.P50Requests, a.Warm.P50Millis, a.Warm.P50Requests)
	return nil
}

// (c) rollout burst: many concurrent admissions of one new image.
func (e *env) rollout(ctx context.Context, rep *report) error {
	if e.main == nil {
		return errors.New("needs the trustgate of (a)")
	}
	b := &BurstResult{Image: e.rolloutImage}
	rep.Burst = b
	bodies := mustBodies(loadgen.KindPod, []string{e.rolloutImage}, false)
	c := cfgFor(e.main, loadgen.Burst, bodies)
	c.Requests = e.o.burst
	e.counter.Reset()
	res, err := loadgen.Run(ctx, c)
	if err != nil {
		return err
	}
	b.Trustgate, b.Upstream = res, e.counter.Count()
	b.Paths = byRole(e.counter.Paths())
	logf("  %d answered (%d allowed) in p99 %.0f ms; %d requests reached the notary server %v", res.Requests, res.Allowed, res.P99, b.Upstream, b.Paths)
	fc := cfgFor(e.floorSrv, loadgen.Burst, bodies)
	fc.Requests = e.o.burst
	if b.Floor, err = loadgen.Run(ctx, fc); err != nil {
		return err
	}
	return allowedAll(res)
}

// (d) many distinct cached images: trustgate's memory.
func (e *env) manyImages(ctx context.Context, rep *report) error {
	tg, err := e.startTrustgate("trustgate-many", e.counter.URL(), 5*time.Second)
	if err != nil {
		return err
	}
	defer tg.stop()
	idle, err := loadgen.ReadProc(tg.PID())
	if err != nil {
		return err
	}
	m := &ManyResult{Images: e.o.many, IdleRSSMiB: float64(idle.RSS) / (1 << 20)}
	rep.Many = m
	bodies := mustBodies(loadgen.KindPod, e.bulkImages(0, e.o.many), true)
	c := cfgFor(tg, loadgen.Closed, bodies)
	c.Workers, c.Requests = 8, len(bodies)
	e.counter.Reset()
	if m.Run, err = loadgen.Run(ctx, c); err != nil {
		return err
	}
	// Again: every decision should now come from the cache.
	if m.Second, err = loadgen.Run(ctx, c); err != nil {
		return err
	}
	m.Upstream = e.counter.Count()
	end, err := loadgen.ReadProc(tg.PID())
	if err != nil {
		return err
	}
	m.EndRSSMiB, m.HWMMiB = float64(end.RSS)/(1<<20), float64(end.HWM)/(1<<20)
	logf("  %d images: RSS idle %.1f MiB, after %.1f MiB, peak %.1f MiB; %.0f req/s first pass, %.0f cached",
		m.Images, m.IdleRSSMiB, m.EndRSSMiB, m.HWMMiB, m.Run.Throughput, m.Second.Throughput)
	if err := allowedAll(m.Run); err != nil {
		return err
	}
	return allowedAll(m.Second)
}

// (e) a slow notary server during a burst: every answer before the API
// server would give up, each a deny that says "timed out".
func (e *env) slowNotary(ctx context.Context, rep *report) error {
	tg, err := e.startTrustgate("trustgate-slow", e.slow.URL(), e.o.slowDeadline)
	if err != nil {
		return err
	}
	defer tg.stop()
	e.slow.SetLatency(e.o.slowLatency)
	defer e.slow.SetLatency(0)
	s := &SlowResult{Deadline: e.o.slowDeadline, Latency: e.o.slowLatency, LateAfter: e.o.slowDeadline}
	rep.Slow = s
	c := cfgFor(tg, loadgen.Burst, mustBodies(loadgen.KindPod, e.bulkImages(0, e.o.slowBurst), true))
	c.Requests, c.LateAfter, c.ReasonSubstring = e.o.slowBurst, s.LateAfter, "timed out"
	if s.Run, err = loadgen.Run(ctx, c); err != nil {
		return err
	}
	s.TimedOut = s.Run.ReasonMatches
	logf("  %d answers, %d late (> %s), max %.0f ms, %d say timed out", s.Run.Requests, s.Run.Late, s.LateAfter, s.Run.Max, s.TimedOut)
	return nil
}
