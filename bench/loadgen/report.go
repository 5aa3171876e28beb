package loadgen

import (
	"fmt"
	"sort"
	"strings"
)

// Text is a human-readable summary of r.
func (r *Result) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %s", r.Name, r.Mode)
	switch r.Mode {
	case Open:
		fmt.Fprintf(&b, " %.0f req/s", r.Rate)
	case Closed:
		fmt.Fprintf(&b, " %d workers", r.Workers)
	case Burst:
		fmt.Fprintf(&b, " %d at once", r.Workers)
	}
	fmt.Fprintf(&b, "  → %s\n", r.URL)
	fmt.Fprintf(&b, "  requests %d in %.2fs = %.0f req/s; allowed %d, not allowed %d, errors %d, late %d\n",
		r.Requests, r.Seconds, r.Throughput, r.Allowed, r.NotAllowed, r.Errors, r.Late)
	fmt.Fprintf(&b, "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
		r.P50, r.P90, r.P99, r.P999, r.Max, r.Mean)
	if r.Proc != nil {
		fmt.Fprintf(&b, "  target: cpu %.2fs (%.1f µs/req), peak RSS %.1f MiB, end RSS %.1f MiB\n",
			r.Proc.CPUSeconds, r.CPUPerRequest(), r.Proc.PeakRSSMiB, r.Proc.EndRSSMiB)
	}
	for _, reason := range sortedReasons(r.Reasons) {
		fmt.Fprintf(&b, "  %5d × %s\n", r.Reasons[reason], reason)
	}
	for _, e := range r.ErrSamples {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	return b.String()
}

// CPUPerRequest is the target's CPU time per measured request, in µs.
func (r *Result) CPUPerRequest() float64 {
	if r.Proc == nil || r.Requests == 0 {
		return 0
	}
	return r.Proc.CPUSeconds * 1e6 / float64(r.Requests)
}

func sortedReasons(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

// Figure is one compared quantity of two runs.
type Figure struct {
	Name          string
	Target, Floor float64
	// HigherIsBetter marks throughput-like figures.
	HigherIsBetter bool
}

// Ratio is Target ÷ Floor (0 when the floor is 0).
func (f Figure) Ratio() float64 {
	if f.Floor == 0 {
		return 0
	}
	return f.Target / f.Floor
}

// Compare lists the figures of a target run next to the floor's.
func Compare(target, floor *Result) []Figure {
	fs := []Figure{
		{Name: "throughput req/s", Target: target.Throughput, Floor: floor.Throughput, HigherIsBetter: true},
		{Name: "p50 ms", Target: target.P50, Floor: floor.P50},
		{Name: "p90 ms", Target: target.P90, Floor: floor.P90},
		{Name: "p99 ms", Target: target.P99, Floor: floor.P99},
		{Name: "p99.9 ms", Target: target.P999, Floor: floor.P999},
		{Name: "max ms", Target: target.Max, Floor: floor.Max},
		{Name: "errors", Target: float64(target.Errors), Floor: float64(floor.Errors)},
		{Name: "not allowed", Target: float64(target.NotAllowed), Floor: float64(floor.NotAllowed)},
	}
	if target.Proc != nil && floor.Proc != nil {
		fs = append(fs,
			Figure{Name: "CPU µs/req", Target: target.CPUPerRequest(), Floor: floor.CPUPerRequest()},
			Figure{Name: "peak RSS MiB", Target: target.Proc.PeakRSSMiB, Floor: floor.Proc.PeakRSSMiB},
		)
	}
	return fs
}

// CompareText renders Compare as an aligned text table.
func CompareText(target, floor *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %-18s %12s %12s %8s\n", "figure", "target", "floor", "÷ floor")
	for _, f := range Compare(target, floor) {
		fmt.Fprintf(&b, "  %-18s %12.3f %12.3f %8s\n", f.Name, f.Target, f.Floor, RatioText(f))
	}
	return b.String()
}

// RatioText formats f's ratio, or "–" when the floor is zero.
func RatioText(f Figure) string {
	if f.Floor == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", f.Ratio())
}
