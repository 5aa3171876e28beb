package main

import (
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
)

func verdicts(r *report) map[string]Target {
	r.Targets = nil
	r.evaluate()
	out := map[string]Target{}
	for _, t := range r.Targets {
		out[strings.SplitN(t.Name, " ", 2)[0]] = t
	}
	return out
}

func goodReport() *report {
	res := func(tp, p99 float64) *loadgen.Result {
		return &loadgen.Result{Requests: 100, Allowed: 100, Throughput: tp, P50: 1, P99: p99}
	}
	r := &report{Options: options{burst: 500, slowBurst: 200}}
	r.Warm = &WarmResult{
		Open:       []Pair{{Trustgate: res(1000, 1.4), Floor: res(1000, 1)}},
		Saturation: &Pair{Trustgate: res(900, 5), Floor: res(1000, 5)},
	}
	r.Cold = &ColdResult{
		FirstOfRepo: &loadgen.Result{Requests: 10, Allowed: 10, P50: 2}, FirstOfRepoUpstream: 50,
		NewTag: &loadgen.Result{Requests: 100, Allowed: 100, P50: 0.5},
		Anchor: &AnchorResult{},
	}
	r.Cold.Anchor.Cold.P50Millis, r.Cold.Anchor.Cold.P50Requests = 5, 6
	r.Burst = &BurstResult{Trustgate: &loadgen.Result{Requests: 500, Allowed: 500}, Upstream: 5,
		Paths: map[string]int64{"root.json": 1, "timestamp.json": 1, "snapshot.json": 1, "targets.json": 1, "targets/releases.json": 1}}
	r.Many = &ManyResult{Images: 10000, Run: res(2000, 2), EndRSSMiB: 60, HWMMiB: 70}
	r.Slow = &SlowResult{Deadline: time.Second, Latency: 2 * time.Second, LateAfter: time.Second,
		Run: &loadgen.Result{Requests: 200, NotAllowed: 200}, TimedOut: 200}
	r.Flood = &FloodResult{Latency: 300 * time.Millisecond, Deadline: 5 * time.Second, Cap: 256, Parallel: 16, Verifs: 64, Limit: 64, MemLimit: 256,
		Runs: []FloodRun{
			{Name: "over", Pods: 2, ImagesPerPod: 5000, Run: &loadgen.Result{Requests: 2, NotAllowed: 2, ReasonMatches: 2}, HWMMiB: 70},
			{Name: "one", Pods: 1, ImagesPerPod: 256, Run: &loadgen.Result{Requests: 1, NotAllowed: 1}, Upstream: 600, MaxInFlight: 50, MaxAnswered: 48, HWMMiB: 70},
			{Name: "eight", Pods: 8, ImagesPerPod: 256, Run: &loadgen.Result{Requests: 8, NotAllowed: 8}, Upstream: 1100, MaxInFlight: 72, MaxAnswered: 64, HWMMiB: 70},
		}}
	return r
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *report)
		target string // first word of the target's name that must flip to missed
	}{
		{name: "all met"},
		{name: "warm p99 too high", change: func(r *report) { r.Warm.Open[0].Trustgate.P99 = 1.6 }, target: "warm"},
		{name: "warm error", change: func(r *report) { r.Warm.Open[0].Trustgate.Errors = 1 }, target: "warm"},
		{name: "saturation too low", change: func(r *report) { r.Warm.Saturation.Trustgate.Throughput = 790 }, target: "saturation"},
		{name: "cold too slow", change: func(r *report) { r.Cold.FirstOfRepo.P50 = 2.6 }, target: "cold"},
		{name: "cold too many requests", change: func(r *report) { r.Cold.FirstOfRepoUpstream = 70 }, target: "cold"},
		{name: "new tag costs a request", change: func(r *report) { r.Cold.NewTagUpstream = 1 }, target: "new"},
		{name: "burst fetched twice", change: func(r *report) { r.Burst.Paths["targets.json"] = 2 }, target: "burst"},
		{name: "burst lost answers", change: func(r *report) { r.Burst.Trustgate.Allowed = 499 }, target: "burst"},
		{name: "too much memory", change: func(r *report) { r.Many.HWMMiB = 100 }, target: "10000"},
		{name: "slow answer late", change: func(r *report) { r.Slow.Run.Late = 1 }, target: "slow"},
		{name: "slow reason unclear", change: func(r *report) { r.Slow.TimedOut = 199 }, target: "slow"},
		{name: "flood over the limit", change: func(r *report) { r.Flood.Runs[2].MaxAnswered = 65 }, target: "5,000-image"},
		{name: "flood answer late", change: func(r *report) { r.Flood.Runs[1].Run.Late = 1 }, target: "5,000-image"},
		{name: "flood over the cap reached upstream", change: func(r *report) { r.Flood.Runs[0].Upstream = 1 }, target: "5,000-image"},
		{name: "flood not denied as over the cap", change: func(r *report) { r.Flood.Runs[0].Run.ReasonMatches = 1 }, target: "5,000-image"},
		{name: "flood out of memory", change: func(r *report) { r.Flood.Runs[2].HWMMiB = 256 }, target: "5,000-image"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := goodReport()
			if tc.change != nil {
				tc.change(r)
			}
			v := verdicts(r)
			if len(v) != 8 {
				t.Fatalf("%d targets, want 8: %v", len(v), v)
			}
			for name, tg := range v {
				want := name != tc.target
				if tg.Met != want || tg.Missing {
					t.Errorf("%s: met=%v missing=%v (%s), want met=%v", tg.Name, tg.Met, tg.Missing, tg.Measured, want)
				}
			}
			md := r.markdown()
			if !strings.Contains(md, "## Targets (issue 6)") || (tc.target != "" && !strings.Contains(md, "**MISSED**")) {
				t.Errorf("markdown does not show the verdicts:\n%s", md)
			}
		})
	}
	t.Run("nothing measured", func(t *testing.T) {
		v := verdicts(&report{})
		for _, tg := range v {
			if !tg.Missing || tg.Met {
				t.Errorf("%s: %+v, want not measured", tg.Name, tg)
			}
		}
	})
}

func TestByRole(t *testing.T) {
	got := byRole(map[string]int64{
		"/v2/127.0.0.1:5000/a/b/_trust/tuf/root.json":                                      2,
		"/v2/127.0.0.1:5000/a/c/_trust/tuf/root.json":                                      1,
		"/v2/127.0.0.1:5000/a/b/_trust/tuf/targets/releases.json":                          1,
		"/v2/127.0.0.1:5000/a/b/_trust/tuf/snapshot." + strings.Repeat("ab", 32) + ".json": 1,
		"/v2/127.0.0.1:5000/a/c/_trust/tuf/snapshot." + strings.Repeat("cd", 32) + ".json": 1,
		"/v2/": 3,
	})
	want := map[string]int64{"root.json": 3, "targets/releases.json": 1, "snapshot.<sha256>.json": 2, "/v2/": 3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func TestGroupReasons(t *testing.T) {
	got := groupReasons(map[string]int{
		`denied 1 image(s): "a.io/x:1" (rule r): timed out`: 1,
		`denied 1 image(s): "a.io/x:2" (rule r): timed out`: 2,
		`(other reasons)`: 5,
	})
	if len(got) != 2 || got[`denied 1 image(s): IMAGE (rule r): timed out`] != 3 || got[`(other reasons)`] != 5 {
		t.Fatalf("got %v", got)
	}
}

func TestKeepMarkedSections(t *testing.T) {
	old := "# old\n\n<!-- a:begin -->\nA\n<!-- a:end -->\n\ntext\n<!-- b:start -->\nB\n<!-- b:end -->\n"
	got := keepMarkedSections(old, "# new\n")
	want := "# new\n\n<!-- a:begin -->\nA\n<!-- a:end -->\n\n<!-- b:start -->\nB\n<!-- b:end -->\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	// A section the new report writes itself is not duplicated.
	if got := keepMarkedSections(old, "# new\n<!-- a:begin -->\nA2\n<!-- a:end -->\n"); strings.Count(got, "a:begin") != 1 || !strings.Contains(got, "A2") || !strings.Contains(got, "\nB\n") {
		t.Errorf("got %q", got)
	}
}
