package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how requests are paced.
type Mode string

const (
	// Open sends at a fixed rate whatever the answers do; latency counts
	// from the scheduled send time, so a stalled target shows as latency
	// instead of silently slowing the sender (coordinated omission).
	Open Mode = "open"
	// Closed keeps Workers requests in flight, each sent when the previous
	// answer arrives: the saturation throughput.
	Closed Mode = "closed"
	// Burst sends Requests requests at the same instant on as many
	// connections, as a rollout does.
	Burst Mode = "burst"
)

// Body is one prepared request.
type Body struct {
	Data []byte
	UID  string
}

// Config describes one run.
type Config struct {
	Name     string // label in reports
	URL      string // https://host:port/validate
	CAFile   string // PEM bundle that issued the target's certificate
	Mode     Mode
	Rate     float64       // open: requests per second
	Duration time.Duration // open and closed: measured time (after Warmup)
	Warmup   time.Duration // open and closed: unmeasured lead-in at the same pace
	Requests int           // burst: how many; open/closed: stop after this many measured (0 = by Duration)
	Workers  int           // closed: concurrency; open: most requests in flight (default 256)
	Bodies   []Body        // request i sends Bodies[i % len(Bodies)]
	// LateAfter counts answers slower than this (the API server's webhook
	// timeout, or the policy deadline); 0 disables the count.
	LateAfter time.Duration
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
	// PID of the target, whose CPU time and RSS are sampled; 0 = none.
	PID int
	// HTTP2 negotiates h2 as the API server may; default HTTP/1.1 keep-alive.
	HTTP2 bool
	// NoPrewarm skips opening the connections before measuring.
	NoPrewarm bool
	// ReasonSubstring, when set, is counted in Result.ReasonMatches.
	ReasonSubstring string
	// Client, when set, is used instead of a new one (CAFile and HTTP2 are
	// then ignored), so interleaved runs keep their warm connections.
	Client *http.Client
}

// Result is the outcome of one run. Latencies are milliseconds.
type Result struct {
	Name       string         `json:"name"`
	URL        string         `json:"url"`
	Mode       Mode           `json:"mode"`
	Rate       float64        `json:"rate,omitempty"`
	Workers    int            `json:"workers,omitempty"`
	Requests   int            `json:"requests"`
	Allowed    int            `json:"allowed"`
	NotAllowed int            `json:"notAllowed"`
	Errors     int            `json:"errors"`
	Late       int            `json:"late"`
	Seconds    float64        `json:"seconds"`
	Throughput float64        `json:"throughput"`
	P50        float64        `json:"p50"`
	P90        float64        `json:"p90"`
	P99        float64        `json:"p99"`
	P999       float64        `json:"p999"`
	Max        float64        `json:"max"`
	Mean       float64        `json:"mean"`
	Proc       *ProcUsage     `json:"proc,omitempty"`
	Reasons    map[string]int `json:"reasons,omitempty"`
	ErrSamples []string       `json:"errorSamples,omitempty"`
	// ReasonMatches counts answers whose reason contains
	// Config.ReasonSubstring (Reasons keeps only the first few distinct).
	ReasonMatches int `json:"reasonMatches,omitempty"`
	// Latencies are the measured latencies, sorted; Merge uses them.
	Latencies []time.Duration `json:"-"`
}

const (
	maxAnswerBytes = 4 << 20
	maxReasons     = 20
	maxErrSamples  = 5
	maxReasonLen   = 300
)

// NewClient returns the HTTP client a run uses: keep-alive, the given CA,
// enough idle connections for conns concurrent requests.
func NewClient(caFile string, conns int, http2 bool) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   http2,
	}
	if !http2 {
		// A non-nil empty map turns HTTP/2 off.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr}, nil
}

// recorder collects per-request outcomes.
type recorder struct {
	mu         sync.Mutex
	lat        []time.Duration
	allowed    int
	notAllowed int
	errors     int
	late       int
	reasons    map[string]int
	errSamples []string
	lastDone   time.Time
	match      string
	matches    int
}

var quotedText = regexp.MustCompile(`"[^"]*"`)

// otherReasons collects the reasons past the first maxReasons distinct ones.
const otherReasons = "(other reasons)"

func (r *recorder) add(lat time.Duration, done time.Time, allowed bool, reason string, err error, lateAfter time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, lat)
	if done.After(r.lastDone) {
		r.lastDone = done
	}
	if lateAfter > 0 && lat > lateAfter {
		r.late++
	}
	switch {
	case err != nil:
		r.errors++
		if len(r.errSamples) < maxErrSamples {
			r.errSamples = append(r.errSamples, err.Error())
		}
	case allowed:
		r.allowed++
	default:
		r.notAllowed++
		if r.match != "" && strings.Contains(reason, r.match) {
			r.matches++
		}
		// Reasons usually quote the image; grouping by the rest keeps
		// the list short when every request names another image.
		reason = quotedText.ReplaceAllString(reason, `"…"`)
		if len(reason) > maxReasonLen {
			reason = reason[:maxReasonLen] + "…"
		}
		if _, ok := r.reasons[reason]; ok || len(r.reasons) < maxReasons {
			r.reasons[reason]++
		} else {
			r.reasons[otherReasons]++
		}
	}
}

// Run performs one measured run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if len(cfg.Bodies) == 0 {
		return nil, errors.New("run: no request bodies")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	conns := cfg.Workers
	switch cfg.Mode {
	case Open:
		if cfg.Rate <= 0 || (cfg.Duration <= 0 && cfg.Requests <= 0) {
			return nil, errors.New("run: open loop needs a rate and a duration or request count")
		}
		if conns <= 0 {
			conns = 256
		}
	case Closed:
		if conns <= 0 || (cfg.Duration <= 0 && cfg.Requests <= 0) {
			return nil, errors.New("run: closed loop needs workers and a duration or request count")
		}
	case Burst:
		if cfg.Requests <= 0 {
			return nil, errors.New("run: burst needs a request count")
		}
		conns = cfg.Requests
	default:
		return nil, fmt.Errorf("run: unknown mode %q", cfg.Mode)
	}
	client := cfg.Client
	if client == nil {
		c, err := NewClient(cfg.CAFile, conns, cfg.HTTP2)
		if err != nil {
			return nil, err
		}
		defer c.CloseIdleConnections()
		client = c
	}
	if !cfg.NoPrewarm {
		if err := prewarm(ctx, client, cfg.URL, conns); err != nil {
			return nil, err
		}
	}

	rec := &recorder{reasons: map[string]int{}, match: cfg.ReasonSubstring}
	var watcher *ProcWatcher
	var start time.Time
	begin := func() error {
		if cfg.PID > 0 {
			w, err := WatchProc(cfg.PID, 100*time.Millisecond)
			if err != nil {
				return err
			}
			watcher = w
		}
		start = time.Now()
		return nil
	}
	send := func(i int) (bool, string, error) {
		return post(ctx, client, cfg.URL, cfg.Bodies[i%len(cfg.Bodies)], cfg.Timeout)
	}

	var err error
	switch cfg.Mode {
	case Open:
		err = runOpen(ctx, cfg, conns, send, rec, begin)
	case Closed:
		err = runClosed(ctx, cfg, send, rec, begin)
	case Burst:
		err = runBurst(ctx, cfg, send, rec, begin)
	}
	if err != nil {
		if watcher != nil {
			_, _ = watcher.Stop()
		}
		return nil, err
	}
	res := summarize(cfg, rec, start)
	if watcher != nil {
		u, err := watcher.Stop()
		if err != nil {
			return nil, fmt.Errorf("sample target process: %w", err)
		}
		res.Proc = &u
	}
	return res, nil
}

// prewarm opens n connections with concurrent GET /healthz requests, so
// the measurement sees kept-alive connections as an API server has them.
func prewarm(ctx context.Context, client *http.Client, target string, n int) error {
	u := target
	if i := strings.Index(u[len("https://"):], "/"); i >= 0 {
		u = u[:len("https://")+i]
	}
	u += "/healthz"
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
			if err == nil {
				var resp *http.Response
				if resp, err = client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
					resp.Body.Close()
				}
			}
			if err != nil {
				err = fmt.Errorf("prewarm %s: %w", u, err)
				failed.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if p := failed.Load(); p != nil {
		return *p
	}
	return nil
}

// answer is the part of an AdmissionReview response the tool checks.
type answer struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   *struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Status  *struct {
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// post sends one review and checks the answer.
func post(ctx context.Context, client *http.Client, url string, b Body, timeout time.Duration) (allowed bool, reason string, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.Data))
	if err != nil {
		return false, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return false, "", fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return false, "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data[:min(len(data), 200)])))
	}
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return false, "", fmt.Errorf("answer is not an AdmissionReview: %w", err)
	}
	if a.Kind != "AdmissionReview" || a.Response == nil {
		return false, "", fmt.Errorf("answer is not an AdmissionReview response (kind %q)", a.Kind)
	}
	if a.Response.UID != b.UID {
		return false, "", fmt.Errorf("answer uid %q, sent %q", a.Response.UID, b.UID)
	}
	if a.Response.Status != nil {
		reason = a.Response.Status.Message
	}
	return a.Response.Allowed, reason, nil
}

type sendFunc func(i int) (allowed bool, reason string, err error)

func runOpen(ctx context.Context, cfg Config, workers int, send sendFunc, rec *recorder, begin func() error) error {
	type job struct {
		i         int
		scheduled time.Time
		measured  bool
	}
	jobs := make(chan job, 1<<16)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				allowed, reason, err := send(j.i)
				done := time.Now()
				if j.measured {
					rec.add(done.Sub(j.scheduled), done, allowed, reason, err, cfg.LateAfter)
				}
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	warmN := int(cfg.Warmup / interval)
	total := cfg.Requests
	if total <= 0 {
		total = int(cfg.Duration / interval)
	}
	t0 := time.Now()
	var err error
	for i := 0; i < warmN+total; i++ {
		if i == warmN {
			if err = begin(); err != nil {
				break
			}
		}
		at := t0.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			err = ctx.Err()
			break
		}
		// The channel is large enough never to block at sane rates; if
		// it did, the wait would still count since latency starts at `at`.
		jobs <- job{i: i, scheduled: at, measured: i >= warmN}
	}
	close(jobs)
	wg.Wait()
	return err
}

func runClosed(ctx context.Context, cfg Config, send sendFunc, rec *recorder, begin func() error) error {
	var next atomic.Int64
	var measuring atomic.Bool
	stopAt := atomic.Int64{}
	stopAt.Store(time.Now().Add(cfg.Warmup + cfg.Duration + 24*time.Hour).UnixNano())
	var measured atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().UnixNano() < stopAt.Load() {
				i := int(next.Add(1) - 1)
				m := measuring.Load()
				if m && cfg.Requests > 0 && measured.Add(1) > int64(cfg.Requests) {
					return
				}
				st := time.Now()
				allowed, reason, err := send(i)
				done := time.Now()
				if m {
					rec.add(done.Sub(st), done, allowed, reason, err, cfg.LateAfter)
				}
			}
		}()
	}
	if cfg.Warmup > 0 {
		select {
		case <-time.After(cfg.Warmup):
		case <-ctx.Done():
		}
	}
	err := begin()
	measuring.Store(true)
	if cfg.Duration > 0 {
		stopAt.Store(time.Now().Add(cfg.Duration).UnixNano())
	} else {
		stopAt.Store(time.Now().Add(24 * time.Hour).UnixNano())
	}
	if err != nil {
		stopAt.Store(0)
	}
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

func runBurst(ctx context.Context, cfg Config, send sendFunc, rec *recorder, begin func() error) error {
	if err := begin(); err != nil {
		return err
	}
	release := make(chan struct{})
	var ready, wg sync.WaitGroup
	for i := range cfg.Requests {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-release
			st := time.Now()
			allowed, reason, err := send(i)
			done := time.Now()
			rec.add(done.Sub(st), done, allowed, reason, err, cfg.LateAfter)
		}()
	}
	ready.Wait()
	close(release)
	wg.Wait()
	return ctx.Err()
}

func summarize(cfg Config, rec *recorder, start time.Time) *Result {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	res := &Result{
		Name: cfg.Name, URL: cfg.URL, Mode: cfg.Mode, Rate: cfg.Rate, Workers: cfg.Workers,
		Requests: len(rec.lat), Allowed: rec.allowed, NotAllowed: rec.notAllowed,
		Errors: rec.errors, Late: rec.late, ErrSamples: rec.errSamples, ReasonMatches: rec.matches,
	}
	if cfg.Mode == Burst {
		res.Workers = cfg.Requests
	}
	if len(rec.reasons) > 0 {
		res.Reasons = rec.reasons
	}
	if len(rec.lat) == 0 {
		return res
	}
	res.Seconds = rec.lastDone.Sub(start).Seconds()
	if res.Seconds > 0 {
		res.Throughput = float64(len(rec.lat)) / res.Seconds
	}
	res.Latencies = append([]time.Duration(nil), rec.lat...)
	res.setPercentiles()
	return res
}

// setPercentiles sorts Latencies and fills the latency figures.
func (r *Result) setPercentiles() {
	if len(r.Latencies) == 0 {
		return
	}
	sorted := r.Latencies
	sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	r.P50 = ms(Percentile(sorted, 50))
	r.P90 = ms(Percentile(sorted, 90))
	r.P99 = ms(Percentile(sorted, 99))
	r.P999 = ms(Percentile(sorted, 99.9))
	r.Max = ms(sorted[len(sorted)-1])
	r.Mean = ms(sum / time.Duration(len(sorted)))
}

// Merge combines runs of the same configuration (for example slices
// interleaved with another target's, so background noise hits both alike)
// into one result: counts and CPU add up, latencies are pooled,
// throughput is requests over the summed measured time, RSS is the peak.
func Merge(rs ...*Result) *Result {
	if len(rs) == 0 {
		return nil
	}
	out := *rs[0]
	out.Latencies, out.Reasons, out.ErrSamples, out.Proc = nil, nil, nil, nil
	out.Requests, out.Allowed, out.NotAllowed, out.Errors, out.Late, out.ReasonMatches, out.Seconds = 0, 0, 0, 0, 0, 0, 0
	for _, r := range rs {
		out.Requests += r.Requests
		out.Allowed += r.Allowed
		out.NotAllowed += r.NotAllowed
		out.Errors += r.Errors
		out.Late += r.Late
		out.ReasonMatches += r.ReasonMatches
		out.Seconds += r.Seconds
		out.Latencies = append(out.Latencies, r.Latencies...)
		for k, v := range r.Reasons {
			if out.Reasons == nil {
				out.Reasons = map[string]int{}
			}
			out.Reasons[k] += v
		}
		if len(out.ErrSamples) < maxErrSamples {
			out.ErrSamples = append(out.ErrSamples, r.ErrSamples...)
		}
		if r.Proc != nil {
			if out.Proc == nil {
				out.Proc = &ProcUsage{}
			}
			out.Proc.CPUSeconds += r.Proc.CPUSeconds
			out.Proc.PeakRSSMiB = max(out.Proc.PeakRSSMiB, r.Proc.PeakRSSMiB)
			out.Proc.HWMMiB = max(out.Proc.HWMMiB, r.Proc.HWMMiB)
			out.Proc.EndRSSMiB = r.Proc.EndRSSMiB
		}
	}
	if out.Seconds > 0 {
		out.Throughput = float64(out.Requests) / out.Seconds
	}
	out.setPercentiles()
	return &out
}

// Percentile returns the nearest-rank percentile p (0 < p ≤ 100) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
