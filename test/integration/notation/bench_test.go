package notation

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notation"
	"github.com/trustgate-dev/trustgate/test/harness/dct"
	harness "github.com/trustgate-dev/trustgate/test/harness/notation"
)

// sample is one cold verification.
type sample struct {
	Millis   float64 `json:"ms"`
	Requests int64   `json:"requests"`
}

type summary struct {
	n                  int
	p50, p90, mean     float64
	minReqs, maxReqs   int64
	meanReqs, totalReq float64
}

func summarize(s []sample) summary {
	if len(s) == 0 {
		return summary{}
	}
	ms := make([]float64, len(s))
	out := summary{n: len(s), minReqs: s[0].Requests, maxReqs: s[0].Requests}
	for i, x := range s {
		ms[i] = x.Millis
		out.mean += x.Millis
		out.minReqs, out.maxReqs = min(out.minReqs, x.Requests), max(out.maxReqs, x.Requests)
		out.totalReq += float64(x.Requests)
	}
	out.mean /= float64(len(s))
	out.meanReqs = out.totalReq / float64(len(s))
	sort.Float64s(ms)
	rank := func(p float64) float64 { return ms[min(len(ms)-1, max(0, int(float64(len(ms))*p+0.999999)-1))] }
	out.p50, out.p90 = rank(0.5), rank(0.9)
	return out
}

func reqRange(s summary) string {
	if s.maxReqs == s.minReqs {
		return fmt.Sprintf("%d", s.minReqs)
	}
	return fmt.Sprintf("%d–%d (mean %.1f)", s.minReqs, s.maxReqs, s.meanReqs)
}

// buildAnchor builds bench/notationanchor (its own module).
func buildAnchor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "notationanchor")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "..", "..", "bench", "notationanchor")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the anchor: %v\n%s", err, out)
	}
	return bin
}

// anchorConfig writes the notation configuration directory the anchor
// reads, trusting the same CA and identity as trustgate's verifier.
func anchorConfig(t *testing.T, tr trust) string {
	t.Helper()
	dir := t.TempDir()
	store := filepath.Join(dir, "truststore", "x509", "ca", "bench")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store, "ca.pem"), []byte(tr.ca.PEM()), 0o600); err != nil {
		t.Fatal(err)
	}
	policy := map[string]any{"version": "1.0", "trustPolicies": []any{map[string]any{
		"name": "bench", "registryScopes": []string{"*"},
		"signatureVerification": map[string]string{"level": "strict"},
		"trustStores":           []string{"ca:bench"},
		"trustedIdentities":     tr.cfg.TrustedIdentities,
	}}}
	b, _ := json.Marshal(policy)
	if err := os.WriteFile(filepath.Join(dir, "trustpolicy.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runAnchor(t *testing.T, bin, config string, refs []string) []sample {
	t.Helper()
	// One untimed verification first: trustgate's verifier runs on warm
	// connections, so the anchor's process gets one too.
	args := []string{"measure", "--config", config, "--json", "--warmup", "1"}
	for _, r := range refs {
		args = append(args, "--ref", r)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("anchor: %v\n%s", err, stderr.String())
	}
	var out struct {
		Samples []sample `json:"samples"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("anchor output %q: %v", stdout.String(), err)
	}
	return out.Samples
}

// benchRegistry is one registry under comparison.
type benchRegistry struct {
	name string
	host string
}

// TestColdVsAnchor compares trustgate's cold Notation verification with
// the anchor's, side by side on the same registries in one run, in
// interleaved slices. It asserts request counts (trustgate never sends more
// than the anchor); times are reported, not asserted (the machine is
// shared). TRUSTGATE_NOTATION_BENCH=FILE writes (or replaces) the section for
// BENCHMARKS.md and TRUSTGATE_NOTATION_BENCH_N sets the samples per side
// and registry (default 10).
func TestColdVsAnchor(t *testing.T) {
	n := 10
	if s := os.Getenv("TRUSTGATE_NOTATION_BENCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 5 {
			t.Fatalf("TRUSTGATE_NOTATION_BENCH_N=%q: want a number ≥ 5", s)
		}
		n = v
	}
	slices := min(10, n/2)
	tr := newTrust(t)
	anchor := buildAnchor(t)
	config := anchorConfig(t, tr)
	real := dct.NewRegistry(t, dct.RegistryOptions{})
	ref := harness.NewReferrersRegistry(t)
	tok := harness.NewReferrersRegistry(t)
	tok.RequireBearerToken()
	// The same token registry behind a TCP proxy that delays each request
	// by 5 ms, a nearby cloud registry's round trip.
	far := dct.NewSlowProxy(t, tok.Host())
	far.SetLatency(5 * time.Millisecond)
	ctx := context.Background()
	regs := []benchRegistry{
		{"docker-registry 2.8 (tag index)", real.Host()},
		{"ggcr registry + referrers API", ref.Host()},
		{"ggcr registry + referrers API + token flow (as ACR)", tok.Host()},
		{"the same, 5 ms away (TCP proxy)", far.Addr()},
	}

	var report strings.Builder
	var verdicts []string
	fmt.Fprintf(&report, "| registry | who | n | p50 ms | p90 ms | mean ms | requests per verification | p50 ÷ anchor p50 |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, reg := range regs {
		repo := reg.host + "/bench/app"
		// Three sets of images, each verified once: the anchor's, trustgate
		// with its verifier running (the webhook's cold path), trustgate
		// building a new verifier first (a cold start).
		var sets [3][]string
		for s := range sets {
			for i := range n {
				d, err := harness.PushRandomImage(ctx, repo, fmt.Sprintf("s%d-%d", s, i))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := harness.Sign(ctx, tr.leaf, repo, d, harness.SignOptions{}); err != nil {
					t.Fatal(err)
				}
				sets[s] = append(sets[s], d)
			}
		}
		ct := &counting{base: http.DefaultTransport.(*http.Transport).Clone()}
		deps := verify.Deps{Transport: ct, RequestTimeout: 5 * time.Second}
		running, err := notation.New("bench", &tr.cfg, deps)
		if err != nil {
			t.Fatal(err)
		}
		var anchorS, runningS, startS []sample
		per := n / slices
		for sl := range slices {
			lo, hi := sl*per, (sl+1)*per
			if sl == slices-1 {
				hi = n
			}
			var refs []string
			for _, d := range sets[0][lo:hi] {
				refs = append(refs, repo+"@"+d)
			}
			anchorS = append(anchorS, runAnchor(t, anchor, config, refs)...)
			runtime.GC()
			for _, d := range sets[1][lo:hi] {
				before := ct.n.Load()
				start := time.Now()
				if _, err := running.Verify(ctx, subject(t, repo, d)); err != nil {
					t.Fatalf("trustgate: %v", err)
				}
				runningS = append(runningS, sample{float64(time.Since(start).Microseconds()) / 1000, ct.n.Load() - before})
			}
			for _, d := range sets[2][lo:hi] {
				before := ct.n.Load()
				start := time.Now()
				v, err := notation.New("bench", &tr.cfg, deps)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := v.Verify(ctx, subject(t, repo, d)); err != nil {
					t.Fatalf("trustgate: %v", err)
				}
				startS = append(startS, sample{float64(time.Since(start).Microseconds()) / 1000, ct.n.Load() - before})
			}
		}
		a, r, s := summarize(anchorS), summarize(runningS), summarize(startS)
		for _, row := range []struct {
			who string
			s   summary
		}{
			{"anchor: `notation.Verify`, set up as `notation verify` does", a},
			{"trustgate, verifier running (webhook, image not seen before)", r},
			{"trustgate, new verifier per verification (cold start)", s},
		} {
			fmt.Fprintf(&report, "| %s | %s | %d | %.2f | %.2f | %.2f | %s | %.2f× |\n", reg.name, row.who, row.s.n, row.s.p50, row.s.p90, row.s.mean, reqRange(row.s), row.s.p50/a.p50)
		}
		if r.maxReqs > a.minReqs || s.maxReqs > a.minReqs {
			t.Errorf("%s: trustgate sent up to %d (running) / %d (cold start) requests, the anchor %d: want no more", reg.name, r.maxReqs, s.maxReqs, a.minReqs)
		}
		verdict := "met"
		if r.p50 > 0.5*a.p50 {
			verdict = "**missed**"
		}
		verdicts = append(verdicts, fmt.Sprintf("%s, verifier running: p50 %.2f ms vs %.2f ms = %.3f×, %s requests vs %d: %s", reg.name, r.p50, a.p50, r.p50/a.p50, reqRange(r), a.minReqs, verdict))
		t.Logf("%s: anchor p50 %.2f ms (%d requests), trustgate running p50 %.2f ms = %.2f× (%d requests), cold start p50 %.2f ms = %.2f× (%d requests)",
			reg.name, a.p50, a.minReqs, r.p50, r.p50/a.p50, r.maxReqs, s.p50, s.p50/a.p50, s.maxReqs)
	}
	t.Logf("\n%s", report.String())
	if out := os.Getenv("TRUSTGATE_NOTATION_BENCH"); out != "" {
		if err := writeSection(out, n, slices, report.String(), verdicts); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	sectionBegin = "<!-- notationbench:begin -->"
	sectionEnd   = "<!-- notationbench:end -->"
)

// writeSection puts the comparison into file between its markers,
// replacing an earlier one, or appends it.
func writeSection(file string, n, slices int, table string, verdicts []string) error {
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	load, _ := os.ReadFile("/proc/loadavg")
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n## Notation: cold verification against the anchor (issue 12)\n\n", sectionBegin)
	fmt.Fprintf(&b, "Written by `TRUSTGATE_NOTATION_BENCH=$PWD/BENCHMARKS.md go test -count=1 -run TestColdVsAnchor ./test/integration/notation/`\n")
	fmt.Fprintf(&b, "(`TRUSTGATE_NOTATION_BENCH_N` samples per row, here %d); rerun it rather than editing. %s UTC, commit `%s`,\n", n, time.Now().UTC().Format("2006-01-02 15:04"), strings.TrimSpace(string(commit)))
	fmt.Fprintf(&b, "%d CPUs, %s, load average at the end %s.\n\n", runtime.NumCPU(), runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
	b.WriteString(`The **anchor** is notation-go v1.3.2's ` + "`notation.Verify`" + ` set up as ` + "`notation verify`" + ` does it (` + "`bench/notationanchor`" + `, its own
module): a verifier from the configuration directory (` + "`verifier.NewFromConfig`" + `: trust policy and trust store
files), a new oras remote repository with a fresh auth client, up to 100 signature attempts; it resolves the
digest (HEAD) and lets oras probe the referrers API each time. **trustgate** is ` + "`internal/verify/notation`" + `:
the same notation-go checks, its own fetching. Same trust policy (strict, one CA, one identity), same
registries, one JWS signature per image, every image verified once by one side only (digest references).
Both run on warm keep-alive connections (the anchor gets one untimed verification per process first); the
two sides alternate in 10 slices. Requests are counted by each side's transport.

- *verifier running*: the webhook's cold path, an image it has not seen, verifier instance already built
  (it survives policy reloads). It has learned whether the registry speaks the referrers API, and holds the
  pull token of the repository for the credential that earned it (the first verification in a repository
  of a token registry pays the challenge and the token: the 5 in "3–5").
- *new verifier per verification*: construction included (a restart, a changed policy block).

`)
	b.WriteString(table)
	b.WriteString("\nTarget: p50 ≤ 0.5× the anchor's, and no more requests (asserted by the test, every row).\n\n")
	for _, v := range verdicts {
		b.WriteString("- " + v + "\n")
	}
	b.WriteString(`
Why not lower: three dependent round trips are the floor of a cold Notation verification (list the
signatures, fetch the signature manifest to learn the envelope's digest, fetch the envelope); the anchor
makes four to six. Where the registry's own time per request dominates (Debian's docker-registry spends about
3 ms serving a small blob on this machine) the ratio cannot fall below about 3/5. What trustgate adds on top
of notation-go's cryptography was halved by reading the target descriptor from the signature manifest's
subject (no second parse of the envelope), answering the scope check from a set (notation-go compiles a
regular expression per lookup), and skipping the revocation validator's third chain validation when no
certificate names an OCSP responder or CRL. The warm path does not reach the verifier at all (decisions are
cached by the engine), so it is unchanged.
`)
	b.WriteString(sectionEnd + "\n")
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	if i, j := strings.Index(doc, sectionBegin), strings.Index(doc, sectionEnd); i >= 0 && j > i {
		doc = doc[:i] + b.String() + strings.TrimPrefix(doc[j+len(sectionEnd):], "\n")
	} else {
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc += "\n"
		}
		doc += b.String()
	}
	return os.WriteFile(file, []byte(doc), 0o644)
}
