package loadgen

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trustgate-dev/trustgate/internal/admission"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

func TestReviewBodies(t *testing.T) {
	tests := []struct {
		kind           Kind
		images         []string
		containers     int
		minKB, maxKB   float64
		distinctImages int
	}{
		{kind: KindPod, images: []string{"a.io/x:1"}, containers: 3, minKB: 2.5, maxKB: 4, distinctImages: 1},
		{kind: KindPod, images: []string{"a.io/x:1", "a.io/y:1"}, containers: 3, minKB: 2.5, maxKB: 4, distinctImages: 2},
		{kind: KindDeployment, images: []string{"a.io/x:1"}, containers: 3, minKB: 2.5, maxKB: 4.5, distinctImages: 1},
		{kind: KindBigPod, images: []string{"a.io/x:1", "a.io/y:1", "a.io/z:1"}, containers: 31, minKB: 10, maxKB: 25, distinctImages: 3},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind)+"/"+strings.Join(tc.images, ","), func(t *testing.T) {
			data, err := Review(tc.kind, tc.images, "uid-1", "team")
			if err != nil {
				t.Fatal(err)
			}
			if kb := float64(len(data)) / 1024; kb < tc.minKB || kb > tc.maxKB {
				t.Errorf("body is %.1f KB, want %.1f–%.1f", kb, tc.minKB, tc.maxKB)
			}
			// The body must be what trustgate accepts, not just JSON.
			review, err := admission.DecodeAdmissionReview(data)
			if err != nil {
				t.Fatal(err)
			}
			if review.Request.UID != "uid-1" || review.Request.Namespace != "team" {
				t.Errorf("uid %q namespace %q", review.Request.UID, review.Request.Namespace)
			}
			gk := schema.GroupKind{Group: review.Request.Kind.Group, Kind: review.Request.Kind.Kind}
			obj, err := workload.Extract(gk, "", review.Request.Object.Raw)
			if err != nil || obj == nil {
				t.Fatalf("extract: %v", err)
			}
			if len(obj.Containers) != tc.containers {
				t.Errorf("%d containers, want %d", len(obj.Containers), tc.containers)
			}
			if n := len(obj.Images()); n != tc.distinctImages {
				t.Errorf("%d distinct images %v, want %d", n, obj.Images(), tc.distinctImages)
			}
		})
	}
	if _, err := Review("cronjob", []string{"x"}, "u", ""); err == nil {
		t.Error("unknown kind accepted")
	}
	if _, err := Review(KindPod, nil, "u", ""); err == nil {
		t.Error("no image accepted")
	}
}

func TestPrepare(t *testing.T) {
	images := []string{"a.io/x:1", "a.io/x:2", "a.io/x:3"}
	per, err := Prepare(KindPod, images, true, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(per) != 3 {
		t.Fatalf("%d bodies, want one per image", len(per))
	}
	uids := map[string]bool{}
	for i, b := range per {
		uids[b.UID] = true
		if !strings.Contains(string(b.Data), images[i]) || strings.Contains(string(b.Data), images[(i+1)%3]) {
			t.Errorf("body %d does not carry only %s", i, images[i])
		}
		if !strings.Contains(string(b.Data), `"uid":"`+b.UID+`"`) {
			t.Errorf("body %d does not carry its uid %s", i, b.UID)
		}
	}
	same, err := Prepare(KindPod, images, false, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range same {
		uids[b.UID] = true
	}
	if len(same) != 10 || len(uids) != 10 {
		t.Errorf("%d bodies, %d distinct uids; want 10 bodies with their own uids", len(same), len(uids))
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99.9, 7 * time.Millisecond},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p90 of 4", ms(1, 2, 3, 4), 90, 4 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestReadProcSelf(t *testing.T) {
	// Burn some CPU so utime moves.
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	s, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU <= 0 || s.RSS <= 0 || s.HWM < s.RSS {
		t.Fatalf("implausible sample %+v", s)
	}
	w, err := WatchProc(os.Getpid(), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	u, err := w.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUSeconds < 0.03 || u.PeakRSSMiB <= 0 {
		t.Fatalf("usage %+v after 300 ms of busy loop", u)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("no error for a missing process")
	}
}

// webhook is a fake target: it answers AdmissionReviews the way behave says.
type webhook struct {
	delay    func(uid string) time.Duration
	deny     func(uid string) string // non-empty: deny with this reason
	wrongUID func(uid string) bool
	// barrier > 0 holds each review until that many are in flight at
	// once (or 3 s pass), so only truly concurrent senders reach it.
	barrier  int64
	inFlight atomic.Int64
	peak     atomic.Int64
	reviews  atomic.Int64
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		return // prewarm
	}
	n := h.inFlight.Add(1)
	defer h.inFlight.Add(-1)
	for {
		p := h.peak.Load()
		if n <= p || h.peak.CompareAndSwap(p, n) {
			break
		}
	}
	h.reviews.Add(1)
	if h.barrier > 0 {
		for deadline := time.Now().Add(3 * time.Second); h.peak.Load() < h.barrier && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	data, _ := io.ReadAll(r.Body)
	var in struct {
		Request struct{ UID string } `json:"request"`
	}
	if err := json.Unmarshal(data, &in); err != nil {
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	uid := in.Request.UID
	if h.delay != nil {
		time.Sleep(h.delay(uid))
	}
	resp := map[string]any{"uid": uid, "allowed": true}
	if h.wrongUID != nil && h.wrongUID(uid) {
		resp["uid"] = "someone-else"
	}
	if h.deny != nil {
		if reason := h.deny(uid); reason != "" {
			resp["allowed"] = false
			resp["status"] = map[string]any{"code": 403, "message": reason}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
}

func startTarget(t *testing.T, h *webhook) (url, caFile string) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL + "/validate", caFile
}

func bodies(t *testing.T, n int) []Body {
	t.Helper()
	b, err := Prepare(KindPod, []string{"a.io/x:1"}, false, n, "")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunModes(t *testing.T) {
	tests := []struct {
		name  string
		hook  *webhook
		cfg   Config
		check func(t *testing.T, r *Result, h *webhook)
	}{
		{
			name: "open loop sends at the rate",
			hook: &webhook{},
			cfg:  Config{Mode: Open, Rate: 200, Duration: 500 * time.Millisecond, Workers: 8},
			check: func(t *testing.T, r *Result, _ *webhook) {
				if r.Requests != 100 || r.Allowed != 100 || r.Errors != 0 {
					t.Errorf("requests %d allowed %d errors %d, want 100 allowed", r.Requests, r.Allowed, r.Errors)
				}
				// The upper bound is what shows pacing; the lower one only
				// that the run did not stall (a busy machine may delay the
				// last answers).
				if r.Throughput < 100 || r.Throughput > 220 {
					t.Errorf("throughput %.0f, want about 200", r.Throughput)
				}
			},
		},
		{
			// One connection, and the first answer takes 300 ms: the
			// requests scheduled meanwhile must show the wait.
			name: "open loop latency counts from the scheduled time",
			hook: &webhook{delay: func(uid string) time.Duration {
				if strings.HasSuffix(uid, "000000000000") {
					return 300 * time.Millisecond
				}
				return 0
			}},
			cfg: Config{Mode: Open, Rate: 100, Duration: 500 * time.Millisecond, Workers: 1, LateAfter: 100 * time.Millisecond},
			check: func(t *testing.T, r *Result, _ *webhook) {
				if r.Max < 290 {
					t.Errorf("max %.0f ms, want ≥ 300 (the stall)", r.Max)
				}
				// Requests 0..~20 were scheduled during the stall; most
				// of them waited longer than 100 ms.
				if r.Late < 15 {
					t.Errorf("%d late answers, want the ~20 queued behind the stall", r.Late)
				}
			},
		},
		{
			name: "closed loop stops after the request count",
			hook: &webhook{},
			cfg:  Config{Mode: Closed, Workers: 4, Requests: 50},
			check: func(t *testing.T, r *Result, h *webhook) {
				if r.Requests != 50 || r.Allowed != 50 {
					t.Errorf("measured %d, allowed %d; want 50", r.Requests, r.Allowed)
				}
				if h.peak.Load() > 4 {
					t.Errorf("%d in flight, want at most 4 workers", h.peak.Load())
				}
			},
		},
		{
			name: "burst sends all at once",
			hook: &webhook{barrier: 30},
			cfg:  Config{Mode: Burst, Requests: 30},
			check: func(t *testing.T, r *Result, h *webhook) {
				if r.Requests != 30 || r.Allowed != 30 {
					t.Errorf("measured %d, allowed %d; want 30", r.Requests, r.Allowed)
				}
				if p := h.peak.Load(); p != 30 {
					t.Errorf("peak concurrency %d, want 30", p)
				}
			},
		},
		{
			name: "denies, wrong uids and late answers are counted",
			hook: &webhook{
				deny: func(uid string) string {
					if strings.HasSuffix(uid, "1") {
						return "image x is not signed"
					}
					return ""
				},
				wrongUID: func(uid string) bool { return strings.HasSuffix(uid, "2") },
				delay: func(uid string) time.Duration {
					if strings.HasSuffix(uid, "3") {
						return 600 * time.Millisecond
					}
					return 0
				},
			},
			cfg: Config{Mode: Closed, Workers: 1, Requests: 16, LateAfter: 300 * time.Millisecond},
			check: func(t *testing.T, r *Result, _ *webhook) {
				// 16 bodies, uids ending …0 … …f: one each of 1, 2, 3.
				if r.NotAllowed != 1 || r.Errors != 1 || r.Late != 1 || r.Allowed != 14 {
					t.Errorf("allowed %d notAllowed %d errors %d late %d; want 14, 1, 1, 1", r.Allowed, r.NotAllowed, r.Errors, r.Late)
				}
				if r.Reasons["image x is not signed"] != 1 {
					t.Errorf("reasons %v", r.Reasons)
				}
				if len(r.ErrSamples) != 1 || !strings.Contains(r.ErrSamples[0], "uid") {
					t.Errorf("error samples %v", r.ErrSamples)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, ca := startTarget(t, tc.hook)
			cfg := tc.cfg
			cfg.URL, cfg.CAFile, cfg.Bodies = url, ca, bodies(t, 16)
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r, tc.hook)
			if !strings.Contains(r.Text(), "p99.9") {
				t.Errorf("text report lacks percentiles:\n%s", r.Text())
			}
		})
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	b := []Body{{Data: []byte("{}"), UID: "u"}}
	for name, cfg := range map[string]Config{
		"no bodies":           {Mode: Open, Rate: 1, Duration: time.Second},
		"open without rate":   {Mode: Open, Duration: time.Second, Bodies: b},
		"closed, no workers":  {Mode: Closed, Duration: time.Second, Bodies: b},
		"burst without count": {Mode: Burst, Bodies: b},
		"unknown mode":        {Mode: "zigzag", Bodies: b},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Run(context.Background(), cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestCompare(t *testing.T) {
	tg := &Result{Throughput: 800, P99: 3, Proc: &ProcUsage{CPUSeconds: 2}, Requests: 1000}
	fl := &Result{Throughput: 1000, P99: 2, Proc: &ProcUsage{CPUSeconds: 1}, Requests: 1000}
	got := map[string]string{}
	for _, f := range Compare(tg, fl) {
		got[f.Name] = RatioText(f)
	}
	want := map[string]string{"throughput req/s": "0.80×", "p99 ms": "1.50×", "CPU µs/req": "2.00×", "errors": "–"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if txt := CompareText(tg, fl); !strings.Contains(txt, "÷ floor") {
		t.Errorf("compare text:\n%s", txt)
	}
}

func TestMergeAndReasonMatches(t *testing.T) {
	hook := &webhook{deny: func(uid string) string {
		if strings.HasSuffix(uid, "0") || strings.HasSuffix(uid, "1") {
			return "image " + uid + ": verification timed out"
		}
		return ""
	}}
	url, ca := startTarget(t, hook)
	client, err := NewClient(ca, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{URL: url, Client: client, Mode: Closed, Workers: 2, Requests: 16, Bodies: bodies(t, 16), ReasonSubstring: "timed out"}
	var parts []*Result
	for range 3 {
		r, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.ReasonMatches != 2 || len(r.Latencies) != 16 {
			t.Fatalf("matches %d latencies %d, want 2 and 16", r.ReasonMatches, len(r.Latencies))
		}
		parts = append(parts, r)
	}
	m := Merge(parts...)
	if m.Requests != 48 || m.NotAllowed != 6 || m.ReasonMatches != 6 || len(m.Latencies) != 48 {
		t.Fatalf("merged %+v", m)
	}
	if m.Max < parts[0].Max || m.Max < parts[2].Max || m.P50 <= 0 {
		t.Fatalf("merged max %.3f p50 %.3f from parts %.3f %.3f", m.Max, m.P50, parts[0].Max, parts[2].Max)
	}
	wantTP := 48 / (parts[0].Seconds + parts[1].Seconds + parts[2].Seconds)
	if d := m.Throughput - wantTP; d > 1e-6 || d < -1e-6 {
		t.Fatalf("throughput %.1f, want %.1f", m.Throughput, wantTP)
	}
}

func TestReasonsGroupQuotedNames(t *testing.T) {
	hook := &webhook{deny: func(uid string) string { return `image "` + uid + `" is not signed` }}
	url, ca := startTarget(t, hook)
	r, err := Run(context.Background(), Config{URL: url, CAFile: ca, Mode: Closed, Workers: 2, Requests: 30, Bodies: bodies(t, 30)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Reasons) != 1 || r.Reasons[`image "…" is not signed`] != 30 {
		t.Fatalf("reasons %v", r.Reasons)
	}
}

func TestReasonsAreCappedButCounted(t *testing.T) {
	hook := &webhook{deny: func(uid string) string { return "image " + uid + ": verification timed out" }}
	url, ca := startTarget(t, hook)
	r, err := Run(context.Background(), Config{URL: url, CAFile: ca, Mode: Closed, Workers: 2, Requests: 30,
		Bodies: bodies(t, 30), ReasonSubstring: "timed out"})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range r.Reasons {
		total += n
	}
	if r.NotAllowed != 30 || r.ReasonMatches != 30 || total != 30 || len(r.Reasons) != maxReasons+1 || r.Reasons[otherReasons] != 10 {
		t.Fatalf("notAllowed %d matches %d reasons %d distinct %d other %d", r.NotAllowed, r.ReasonMatches, total, len(r.Reasons), r.Reasons[otherReasons])
	}
}
