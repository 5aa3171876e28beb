package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
)

// Machine describes where the figures come from.
type Machine struct {
	CPUs   int    `json:"cpus"`
	Model  string `json:"model"`
	Memory string `json:"memory"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	Load   string `json:"loadAverage"` // at the start: other work on the machine skews figures
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if out, err := exec.Command("nproc").Output(); err == nil {
		fmt.Sscan(string(out), &m.CPUs)
	}
	m.Model = procField("/proc/cpuinfo", "model name")
	m.Memory = procField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.Load = strings.Join(f[:3], " ")
		}
	}
	return m
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// Target is one of issue 6's targets with its verdict.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	Missing  bool   `json:"missing"` // the scenario did not produce a figure
}

type report struct {
	Command string        `json:"command"`
	Options options       `json:"-"`
	Machine Machine       `json:"machine"`
	Commit  string        `json:"commit"`
	Date    string        `json:"date"`
	Elapsed time.Duration `json:"elapsed"`
	Warm    *WarmResult   `json:"warm,omitempty"`
	Cold    *ColdResult   `json:"cold,omitempty"`
	Burst   *BurstResult  `json:"burst,omitempty"`
	Many    *ManyResult   `json:"many,omitempty"`
	Slow    *SlowResult   `json:"slow,omitempty"`
	Flood   *FloodResult  `json:"flood,omitempty"`
	Targets []Target      `json:"targets"`
	Notes   []string      `json:"notes,omitempty"`
	Micro   string        `json:"micro,omitempty"`
	// Analysis is the hand-written profile findings (bench/analysis.md),
	// kept in a file because this report is regenerated on every run.
	Analysis string `json:"-"`
}

// evaluate checks the figures against issue 6's targets.
func (r *report) evaluate() {
	add := func(t Target) { r.Targets = append(r.Targets, t) }
	missing := func(name, goal string) { add(Target{Name: name, Goal: goal, Measured: "not measured", Missing: true}) }

	const g1 = "p99 ≤ 1.5× floor p99, no error"
	if r.Warm != nil && len(r.Warm.Open) > 0 && r.Warm.Open[0].Trustgate != nil && r.Warm.Open[0].Floor != nil {
		p := r.Warm.Open[0]
		ratio := p.Trustgate.P99 / p.Floor.P99
		add(Target{Name: "warm cache at 1,000 req/s (pod)", Goal: g1,
			Measured: fmt.Sprintf("p99 %.2f ms vs floor %.2f ms = %.2f×; %d errors, %d not allowed", p.Trustgate.P99, p.Floor.P99, ratio, p.Trustgate.Errors, p.Trustgate.NotAllowed),
			Met:      ratio <= 1.5 && p.Trustgate.Errors == 0 && p.Trustgate.NotAllowed == 0})
	} else {
		missing("warm cache at 1,000 req/s (pod)", g1)
	}
	const g2 = "≥ 0.8× floor throughput"
	if r.Warm != nil && r.Warm.Saturation != nil && r.Warm.Saturation.Trustgate != nil && r.Warm.Saturation.Floor != nil {
		s := r.Warm.Saturation
		ratio := s.Trustgate.Throughput / s.Floor.Throughput
		add(Target{Name: "saturation throughput, warm path", Goal: g2,
			Measured: fmt.Sprintf("%.0f req/s vs floor %.0f req/s = %.2f×", s.Trustgate.Throughput, s.Floor.Throughput, ratio),
			Met:      ratio >= 0.8 && s.Trustgate.Errors == 0})
	} else {
		missing("saturation throughput, warm path", g2)
	}
	const g3 = "p50 ≤ 0.5× anchor cold p50, requests ≤ anchor's"
	if c := r.Cold; c != nil && c.FirstOfRepo != nil && c.Anchor != nil {
		ratio := c.FirstOfRepo.P50 / c.Anchor.Cold.P50Millis
		rpv := c.RequestsPerVerification()
		net := ""
		if c.FloorSequential != nil {
			net = fmt.Sprintf(" (%.2f ms net of the floor's %.2f ms round trip)", c.FirstOfRepo.P50-c.FloorSequential.P50, c.FloorSequential.P50)
		}
		add(Target{Name: "cold DCT verification vs anchor", Goal: g3,
			Measured: fmt.Sprintf("p50 %.2f ms, whole admission round trip%s, vs anchor %.2f ms = %.2f×; %.1f requests vs %d", c.FirstOfRepo.P50, net, c.Anchor.Cold.P50Millis, ratio, rpv, c.Anchor.Cold.P50Requests),
			Met:      ratio <= 0.5 && rpv <= float64(c.Anchor.Cold.P50Requests)})
	} else {
		missing("cold DCT verification vs anchor", g3)
	}
	const g4 = "no request at all"
	if c := r.Cold; c != nil && c.NewTag != nil {
		add(Target{Name: "new tag of a held repository, timestamp valid", Goal: g4,
			Measured: fmt.Sprintf("%d requests for %d new tags (p50 %.2f ms)", c.NewTagUpstream, c.NewTag.Requests, c.NewTag.P50),
			Met:      c.NewTagUpstream == 0})
	} else {
		missing("new tag of a held repository, timestamp valid", g4)
	}
	const g5 = "exactly one verification upstream; all answered"
	if b := r.Burst; b != nil && b.Trustgate != nil {
		one := int64(0)
		if r.Cold != nil {
			one = int64(r.Cold.RequestsPerVerification() + 0.5)
		}
		repeated := false
		for _, n := range b.Paths {
			if n > 1 {
				repeated = true
			}
		}
		add(Target{Name: fmt.Sprintf("burst of %d for one new image", b.Trustgate.Requests), Goal: g5,
			Measured: fmt.Sprintf("%d requests upstream (one verification = %d), each path at most once: %v; %d of %d allowed, %d errors",
				b.Upstream, one, !repeated, b.Trustgate.Allowed, r.Options.burst, b.Trustgate.Errors),
			Met: !repeated && b.Upstream > 0 && (one == 0 || b.Upstream <= one) && b.Trustgate.Allowed == r.Options.burst})
	} else {
		missing("burst for one new image", g5)
	}
	const g6 = "RSS < 100 MiB"
	if m := r.Many; m != nil && m.Run != nil {
		peak := max(m.EndRSSMiB, m.HWMMiB)
		add(Target{Name: fmt.Sprintf("%d cached decisions", m.Images), Goal: g6,
			Measured: fmt.Sprintf("RSS %.1f MiB after (peak %.1f MiB, idle %.1f MiB)", m.EndRSSMiB, m.HWMMiB, m.IdleRSSMiB),
			Met:      peak < 100})
	} else {
		missing("10,000 cached decisions", g6)
	}
	const g7 = "zero answers after the deadline; deny says \"timed out\""
	if s := r.Slow; s != nil && s.Run != nil {
		add(Target{Name: "slow notary (+" + s.Latency.String() + ") during a burst", Goal: g7,
			Measured: fmt.Sprintf("%d answers, %d after %s (deadline %s; max %.0f ms), %d errors, %d of %d say \"timed out\"",
				s.Run.Requests, s.Run.Late, s.LateAfter, s.Deadline, s.Run.Max, s.Run.Errors, s.TimedOut, s.Run.Requests),
			Met: s.Run.Late == 0 && s.Run.Errors == 0 && s.TimedOut == s.Run.Requests && s.Run.Requests == r.Options.slowBurst})
	} else {
		missing("slow notary during a burst", g7)
	}
	if r.Options.only == "" || strings.Contains(r.Options.only, "f") {
		r.evaluateFlood(add, missing)
	}
}

func verdict(t Target) string {
	switch {
	case t.Missing:
		return "**not measured**"
	case t.Met:
		return "met"
	default:
		return "**MISSED**"
	}
}

// summary is the short text printed at the end of a run.
func (r *report) summary() string {
	var b strings.Builder
	fmt.Fprintln(&b, "Targets (issue 6):")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "  %-12s %s: %s\n", strings.Trim(verdict(t), "*"), t.Name, t.Measured)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	return b.String()
}

func f3(v float64) string { return fmt.Sprintf("%.3f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func f0(v float64) string { return fmt.Sprintf("%.0f", v) }

func ratio(t, f float64) string {
	if f == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", t/f)
}

// pairTable renders trustgate and floor side by side with ÷ floor.
func pairTable(b *strings.Builder, t, f *loadgen.Result) {
	fmt.Fprintln(b, "| figure | trustgate | floor | trustgate ÷ floor |")
	fmt.Fprintln(b, "|---|---:|---:|---:|")
	for _, fig := range loadgen.Compare(t, f) {
		val := f3
		if strings.Contains(fig.Name, "req/s") || strings.Contains(fig.Name, "µs") || fig.Name == "errors" || fig.Name == "not allowed" {
			val = f0
		}
		if strings.Contains(fig.Name, "MiB") {
			val = func(v float64) string { return fmt.Sprintf("%.1f", v) }
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", fig.Name, val(fig.Target), val(fig.Floor), loadgen.RatioText(fig))
	}
	fmt.Fprintf(b, "| requests measured | %d | %d | |\n", t.Requests, f.Requests)
	fmt.Fprintf(b, "| CPU seconds (target process) | %s | %s | %s |\n\n", cpu(t), cpu(f), ratioCPU(t, f))
}

func cpu(r *loadgen.Result) string {
	if r.Proc == nil {
		return "–"
	}
	return f2(r.Proc.CPUSeconds)
}

func ratioCPU(t, f *loadgen.Result) string {
	if t.Proc == nil || f.Proc == nil {
		return "–"
	}
	return ratio(t.Proc.CPUSeconds, f.Proc.CPUSeconds)
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.Options
	fmt.Fprintln(&b, "# trustgate benchmarks")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "Written by `hack/bench.sh` (`make bench`); do not edit by hand — rerun it. The harness is")
	fmt.Fprintln(&b, "`bench/scenarios`; the load generator `bench/load` (`go run ./bench/load --help`), the floor server")
	fmt.Fprintln(&b, "`bench/floor`, and the anchor `bench/anchor` (its own Go module, the notary client library).")
	fmt.Fprintln(&b, "Sections between `<!-- NAME:begin -->` and `<!-- NAME:end -->` are written by their own benchmarks")
	fmt.Fprintln(&b, "(each names its command) and kept as they are by a rerun.")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| | |")
	fmt.Fprintln(&b, "|---|---|")
	fmt.Fprintf(&b, "| date | %s |\n", r.Date)
	fmt.Fprintf(&b, "| commit | `%s` |\n", r.Commit)
	fmt.Fprintf(&b, "| command | `%s` |\n", r.Command)
	fmt.Fprintf(&b, "| machine | %d CPUs (`nproc`), %s, %s RAM, Linux %s |\n", r.Machine.CPUs, r.Machine.Model, r.Machine.Memory, r.Machine.Kernel)
	fmt.Fprintf(&b, "| Go | %s |\n", r.Machine.Go)
	fmt.Fprintf(&b, "| load average at start | %s |\n", r.Machine.Load)
	fmt.Fprintf(&b, "| wall time of the run | %s |\n\n", r.Elapsed.Round(time.Second))
	fmt.Fprintln(&b, "Everything runs on this one machine on 127.0.0.1: the load generator shares the CPUs with")
	fmt.Fprintln(&b, "trustgate, the floor server, notary-server and the proxies. trustgate and the floor are separate")
	fmt.Fprintln(&b, "processes; their CPU seconds and RSS come from `/proc/PID`. Requests are AdmissionReview v1 over")
	fmt.Fprintln(&b, "HTTPS (HTTP/1.1 keep-alive, connections opened before measuring) to `/validate`. Open-loop latency")
	fmt.Fprintln(&b, "counts from each request's scheduled send time.")
	fmt.Fprintln(&b)

	fmt.Fprintln(&b, "## Targets (issue 6)")
	fmt.Fprintln(&b)
	fmt.Fprintln(&b, "| target | goal | measured | verdict |")
	fmt.Fprintln(&b, "|---|---|---|---|")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, verdict(t))
	}
	fmt.Fprintln(&b)
	if len(r.Notes) > 0 {
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- **%s**\n", n)
		}
		fmt.Fprintln(&b)
	}

	if w := r.Warm; w != nil {
		fmt.Fprintln(&b, "## (a) Warm cache")
		fmt.Fprintln(&b)
		fmt.Fprintf(&b, "Every image already verified (one request first). Open loop at %.0f req/s for %s (pod; %s for the\n", o.warmRate, o.warmDuration, o.warmDuration/2)
		fmt.Fprintf(&b, "Deployment and, at %.0f req/s, the 30-container Pod), then closed loop with %d workers for %s. Each\n", o.bigRate, o.satWorkers, o.satDuration)
		fmt.Fprintf(&b, "pair runs in %d interleaved slices (floor, trustgate, trustgate, floor, …; 500 ms unmeasured before\n", w.Slices)
		fmt.Fprintln(&b, "each) over the same kept-alive connections, so background load on the shared machine hits both")
		fmt.Fprintln(&b, "alike; the figures pool the slices. CPU µs per request is the figure least disturbed by other")
		fmt.Fprintf(&b, "processes. Requests that reached the notary server during (a): **%d**.\n\n", w.Upstream)
		for _, p := range w.Open {
			if p.Trustgate == nil || p.Floor == nil {
				continue
			}
			fmt.Fprintf(&b, "### %s\n\n", p.Name)
			pairTable(&b, p.Trustgate, p.Floor)
		}
		if s := w.Saturation; s != nil && s.Trustgate != nil && s.Floor != nil {
			fmt.Fprintf(&b, "### %s (saturation)\n\n", s.Name)
			pairTable(&b, s.Trustgate, s.Floor)
		}
	}

	if c := r.Cold; c != nil {
		fmt.Fprintln(&b, "## (b) Cold verification against the real notary server")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "trustgate and the anchor both reach notary-server through the same counting TLS proxy")
		fmt.Fprintln(&b, "(`test/harness/dct` RequestCounter, behind a plain TCP proxy that counts connections), which counts every request. trustgate's latency is the whole")
		fmt.Fprintln(&b, "admission round trip (HTTPS request, decode, verify, answer), one request at a time; the anchor's is")
		fmt.Fprintln(&b, "the library call alone (`client.NewFileCachedRepository` with the root certificate pinned,")
		fmt.Fprintln(&b, "`DisableTOFU: true`, + `GetTargetByName(tag, \"targets/releases\", \"targets\")`), with one shared")
		fmt.Fprintln(&b, "keep-alive transport (no TLS handshake per lookup — favourable to the anchor).")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "| case | n | p50 ms | p90 ms | max ms | requests to notary per verification |")
		fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|")
		if x := c.FirstOfRepo; x != nil {
			fmt.Fprintf(&b, "| trustgate: first image of a repository (cold) | %d | %s | %s | %s | %.1f |\n", x.Requests, f3(x.P50), f3(x.P90), f3(x.Max), c.RequestsPerVerification())
		}
		if x := c.NewTag; x != nil {
			fmt.Fprintf(&b, "| trustgate: new tag of a repository it holds | %d | %s | %s | %s | %.2f (%d in all) |\n", x.Requests, f3(x.P50), f3(x.P90), f3(x.Max), float64(c.NewTagUpstream)/float64(max(1, x.Requests)), c.NewTagUpstream)
		}
		if x := c.FloorSequential; x != nil {
			fmt.Fprintf(&b, "| floor: the same round trip, no verification | %d | %s | %s | %s | – |\n", x.Requests, f3(x.P50), f3(x.P90), f3(x.Max))
		}
		if a := c.Anchor; a != nil {
			fmt.Fprintf(&b, "| anchor: cold (new repository object, new cache dir) | %d | %s | %s | – | %d (min %d, max %d) |\n", a.Cold.N, f3(a.Cold.P50Millis), f3(a.Cold.P90Millis), a.Cold.P50Requests, a.Cold.MinRequests, a.Cold.MaxRequests)
			fmt.Fprintf(&b, "| anchor: warm (same repository object) | %d | %s | %s | – | %d (min %d, max %d) |\n", a.Warm.N, f3(a.Warm.P50Millis), f3(a.Warm.P90Millis), a.Warm.P50Requests, a.Warm.MinRequests, a.Warm.MaxRequests)
		}
		fmt.Fprintln(&b)
		if c.FirstOfRepo != nil {
			fmt.Fprintf(&b, "New connections to the notary side (TCP accepts at a zero-latency proxy in front of the counter):\n")
			fmt.Fprintf(&b, "trustgate %d for its %d cold verifications (its connections from (a) were already open); the anchor %d\n", c.FirstOfRepoConns, c.FirstOfRepo.Requests, c.AnchorConns)
			fmt.Fprintln(&b, "for its whole run (one keep-alive transport).")
			fmt.Fprintln(&b)
		}
		if len(c.FirstOfRepoPaths) > 0 {
			fmt.Fprintln(&b, "Requests trustgate sent for the cold verifications, by metadata file:")
			fmt.Fprintln(&b)
			writeCounts(&b, byRole(c.FirstOfRepoPaths))
		}
		if len(c.AnchorPaths) > 0 {
			fmt.Fprintln(&b, "Requests the anchor sent in its whole run (one untimed priming lookup, the cold lookups with")
			fmt.Fprintln(&b, "their `/v2/` ping, then the warm lookups):")
			fmt.Fprintln(&b)
			writeCounts(&b, c.AnchorPaths)
		}
	}

	if x := r.Burst; x != nil && x.Trustgate != nil {
		fmt.Fprintln(&b, "## (c) Rollout burst")
		fmt.Fprintln(&b)
		fmt.Fprintf(&b, "%d concurrent admissions (one connection each, opened before) of `%s`, which trustgate had never\n", x.Trustgate.Requests, x.Image)
		fmt.Fprintf(&b, "seen. Requests that reached the notary server: **%d**.\n\n", x.Upstream)
		writeCounts(&b, x.Paths)
		if x.Floor != nil {
			pairTable(&b, x.Trustgate, x.Floor)
		}
	}

	if m := r.Many; m != nil && m.Run != nil {
		fmt.Fprintln(&b, "## (d) Many distinct cached images")
		fmt.Fprintln(&b)
		fmt.Fprintf(&b, "A fresh trustgate process admits %d Pods, each with a different signed tag of one repository\n", m.Images)
		fmt.Fprintln(&b, "(all signed in one publish), 8 at a time, then the same again from the cache.")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "| figure | value |")
		fmt.Fprintln(&b, "|---|---:|")
		fmt.Fprintf(&b, "| RSS idle, before | %.1f MiB |\n", m.IdleRSSMiB)
		fmt.Fprintf(&b, "| RSS after %d decisions | %.1f MiB |\n", m.Images, m.EndRSSMiB)
		fmt.Fprintf(&b, "| peak RSS (VmHWM) | %.1f MiB |\n", m.HWMMiB)
		fmt.Fprintf(&b, "| first pass | %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d errors, %d not allowed |\n", m.Run.Throughput, m.Run.P50, m.Run.P99, m.Run.Errors, m.Run.NotAllowed)
		if m.Second != nil {
			fmt.Fprintf(&b, "| second pass (cached) | %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d errors, %d not allowed |\n", m.Second.Throughput, m.Second.P50, m.Second.P99, m.Second.Errors, m.Second.NotAllowed)
		}
		fmt.Fprintf(&b, "| requests to the notary server, both passes | %d |\n\n", m.Upstream)
	}

	if s := r.Slow; s != nil && s.Run != nil {
		fmt.Fprintln(&b, "## (e) Slow notary server during a burst")
		fmt.Fprintln(&b)
		fmt.Fprintf(&b, "A TCP proxy adds %s to every chunk towards notary-server; the policy's `settings.deadline` is %s.\n", s.Latency, s.Deadline)
		fmt.Fprintf(&b, "%d concurrent admissions of distinct images. An answer counts as late after %s, measured by the\n", s.Run.Requests, s.LateAfter)
		fmt.Fprintln(&b, "client from the moment it sent the request (the API server would wait at least that long: the")
		fmt.Fprintln(&b, "webhook's timeoutSeconds must exceed the policy deadline).")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "| figure | value |")
		fmt.Fprintln(&b, "|---|---:|")
		fmt.Fprintf(&b, "| answers | %d (allowed %d, denied %d, errors %d) |\n", s.Run.Requests, s.Run.Allowed, s.Run.NotAllowed, s.Run.Errors)
		fmt.Fprintf(&b, "| late (> %s) | %d |\n", s.LateAfter, s.Run.Late)
		fmt.Fprintf(&b, "| latency p50 / p99 / max | %.0f / %.0f / %.0f ms |\n", s.Run.P50, s.Run.P99, s.Run.Max)
		fmt.Fprintf(&b, "| deny reasons saying \"timed out\" | %d |\n\n", s.TimedOut)
		fmt.Fprintln(&b, "Deny reasons (quoted image names elided):")
		fmt.Fprintln(&b)
		grouped := groupReasons(s.Run.Reasons)
		for _, reason := range sortedKeys(grouped) {
			fmt.Fprintf(&b, "- %d × `%s`\n", grouped[reason], strings.ReplaceAll(reason, "`", "'"))
		}
		fmt.Fprintln(&b)
	}

	r.floodSection(&b)

	if r.Micro != "" {
		fmt.Fprintln(&b, "## Hot-path micro-benchmarks")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "`go test -run '^$' -bench . -benchmem ./bench/`: decode → extract images → match rules → cache")
		fmt.Fprintln(&b, "lookup → encode through `admission.NewValidating` and `engine.Engine` with a warm cache, no network.")
		fmt.Fprintln(&b)
		fmt.Fprintln(&b, "```")
		fmt.Fprintln(&b, strings.TrimSpace(r.Micro))
		fmt.Fprintln(&b, "```")
		fmt.Fprintln(&b)
	}
	fmt.Fprintln(&b, "## Where the cost is (profiles)")
	fmt.Fprintln(&b)
	if r.Analysis != "" {
		fmt.Fprintln(&b, strings.TrimSpace(r.Analysis))
	} else {
		fmt.Fprintln(&b, "No analysis file was given (--analysis).")
	}
	return b.String()
}

var quoted = regexp.MustCompile(`"[^"]*"`)

// groupReasons merges reasons that differ only in the quoted image name.
func groupReasons(m map[string]int) map[string]int {
	out := map[string]int{}
	for r, n := range m {
		out[quoted.ReplaceAllString(r, "IMAGE")] += n
	}
	return out
}

var hashInName = regexp.MustCompile(`\.[0-9a-f]{64}\.json$`)

// byRole folds request paths /v2/<gun>/_trust/tuf/<file> into <file>, with
// consistent-snapshot hashes shown as <sha256>, so repositories add up.
func byRole(paths map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for p, n := range paths {
		if _, role, ok := strings.Cut(p, "/_trust/tuf/"); ok {
			out[hashInName.ReplaceAllString(role, ".<sha256>.json")] += n
		} else {
			out[p] += n
		}
	}
	return out
}

func writeCounts(b *strings.Builder, m map[string]int64) {
	fmt.Fprintln(b, "| metadata | requests |")
	fmt.Fprintln(b, "|---|---:|")
	for _, k := range sortedKeys64(m) {
		fmt.Fprintf(b, "| `%s` | %d |\n", k, m[k])
	}
	fmt.Fprintln(b)
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedKeys64(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// markedSection is a block another benchmark owns:
// <!-- NAME:begin --> (or :start) … <!-- NAME:end -->.
var markedSection = regexp.MustCompile(`(?s)<!-- ([\w-]+):(?:begin|start) -->.*?<!-- ([\w-]+):end -->`)

// keepMarkedSections appends to md every marked section of old whose name md
// does not already carry, in their order in old.
func keepMarkedSections(old, md string) string {
	for _, m := range markedSection.FindAllStringSubmatch(old, -1) {
		if m[1] != m[2] || strings.Contains(md, "<!-- "+m[1]+":") {
			continue
		}
		md = strings.TrimRight(md, "\n") + "\n\n" + m[0] + "\n"
	}
	return md
}
