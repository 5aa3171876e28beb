// Command scenarios is the benchmark harness behind `make bench`: it starts
// a real notary-server (test/harness/dct) with a counting proxy and a
// slowing proxy in front of it, signs repositories, starts trustgate and the
// floor server as processes, drives them with the load generator
// (bench/loadgen, in this process), measures the anchor (bench/anchor, the
// notary client library path) side by side, and writes BENCHMARKS.md.
//
//	go run ./bench/scenarios --trustgate bin/trustgate --floor FLOOR --anchor ANCHOR --out BENCHMARKS.md
//
// hack/bench.sh builds the binaries and runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
	"github.com/trustgate-dev/trustgate/test/harness/dct"
)

type options struct {
	trustgate, floor, anchor string
	out, jsonOut, micro      string
	analysis                 string
	command                  string
	work                     string
	keep                     bool
	// Scale knobs; the defaults are `make bench`'s short run.
	warmRate     float64
	bigRate      float64
	slices       int
	profile      string
	warmDuration time.Duration
	satDuration  time.Duration
	satWorkers   int
	coldRepos    int
	newTags      int
	anchorCold   int
	anchorWarm   int
	burst        int
	many         int
	slowBurst    int
	slowDeadline time.Duration
	slowLatency  time.Duration
	timeLimit    time.Duration
	only         string
}

func main() {
	var o options
	flag.StringVar(&o.trustgate, "trustgate", "bin/trustgate", "trustgate binary")
	flag.StringVar(&o.floor, "floor", "", "floor server binary (go build ./bench/floor)")
	flag.StringVar(&o.anchor, "anchor", "", "anchor binary (cd bench/anchor && go build)")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "Markdown report to write")
	flag.StringVar(&o.jsonOut, "json", "", "also write every raw result as JSON here")
	flag.StringVar(&o.micro, "micro", "", "file with `go test -bench` output of the hot-path micro-benchmarks, embedded in the report")
	flag.StringVar(&o.analysis, "analysis", "", "Markdown file with the profile findings, embedded at the end of the report")
	flag.StringVar(&o.command, "command", "make bench", "the command to quote in the report")
	flag.StringVar(&o.work, "work", "", "working directory (default: a new temp dir, removed unless --keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (logs, policies, keys)")
	flag.Float64Var(&o.warmRate, "warm-rate", 1000, "(a) open-loop rate, requests/s")
	flag.Float64Var(&o.bigRate, "big-rate", 200, "(a) open-loop rate for the 30-container Pod")
	flag.IntVar(&o.slices, "slices", 6, "(a) interleaved slices per trustgate/floor pair")
	flag.StringVar(&o.profile, "profile", "", "write CPU profiles of trustgate's warm path here (needs a --trustgate built with bench/profile's overlay)")
	flag.DurationVar(&o.warmDuration, "warm-duration", 12*time.Second, "(a) open-loop measured time per target and body kind (pod; the other kinds get half)")
	flag.DurationVar(&o.satDuration, "sat-duration", 9*time.Second, "(a) closed-loop measured time per target")
	flag.IntVar(&o.satWorkers, "sat-workers", 32, "(a) closed-loop workers")
	flag.IntVar(&o.coldRepos, "cold-repos", 24, "(b) repositories verified for the first time, one request each")
	flag.IntVar(&o.newTags, "new-tags", 200, "(b) new tags of a repository trustgate already holds")
	flag.IntVar(&o.anchorCold, "anchor-cold", 48, "(b) anchor cold lookups")
	flag.IntVar(&o.anchorWarm, "anchor-warm", 100, "(b) anchor warm lookups")
	flag.IntVar(&o.burst, "burst", 500, "(c) concurrent requests for one new image")
	flag.IntVar(&o.many, "many", 10000, "(d) distinct cached images")
	flag.IntVar(&o.slowBurst, "slow-burst", 200, "(e) concurrent requests while the notary server is slow")
	flag.DurationVar(&o.slowDeadline, "slow-deadline", time.Second, "(e) settings.deadline of the slow run's policy")
	flag.DurationVar(&o.slowLatency, "slow-latency", 2*time.Second, "(e) latency the TCP proxy adds")
	flag.DurationVar(&o.timeLimit, "time-limit", 170*time.Second, "give up after this long")
	flag.StringVar(&o.only, "only", "", "run only these scenarios, by letter (e.g. \"f\" or \"abf\"); default all")
	flag.Parse()
	if o.floor == "" || o.anchor == "" {
		fmt.Fprintln(os.Stderr, "scenarios: --floor and --anchor are required (see hack/bench.sh)")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "scenarios:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// env is everything the scenarios share.
type env struct {
	o       options
	dir     string
	notary  *dct.NotaryServer
	counter *dct.RequestCounter
	slow    *dct.SlowProxy
	// conns is a zero-latency TCP proxy in front of the counter: its
	// Accepted count is the number of connections a client opened.
	conns  *dct.SlowProxy
	signer *dct.Signer

	hotImage     string   // (a) the warm image
	rolloutImage string   // (c) the burst's one new image
	coldImages   []string // (b) one per repository
	coldRoots    []string // (b) GUN=ROOTCERTKEYID for the anchor
	bulkGUN      string   // (b) new tags, (d) many images, (e) slow
	rootFiles    []string // every root certificate to pin

	servers  []*server
	main     *server // trustgate of (a), (b), (c)
	floorSrv *server
}

func run(o options) (err error) {
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeLimit)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	e := &env{o: o}
	if e.dir = o.work; e.dir == "" {
		if e.dir, err = os.MkdirTemp("", "trustgate-bench-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(e.dir)
		}
	} else {
		// A new folder inside --work every run: keys and TUF caches of an
		// earlier run would not match the new (memory-backed) notary server.
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			return err
		}
		if e.dir, err = os.MkdirTemp(e.dir, "run-"); err != nil {
			return err
		}
		logf("working directory %s", e.dir)
	}
	defer e.close()
	if err := e.setup(); err != nil {
		return err
	}
	rep := &report{Command: o.command, Options: o}
	rep.Machine = describeMachine()
	rep.Commit = gitCommit()
	rep.Date = time.Now().UTC().Format("2006-01-02 15:04 UTC")
	if o.analysis != "" {
		if b, err := os.ReadFile(o.analysis); err == nil {
			rep.Analysis = string(b)
		}
	}
	if o.micro != "" {
		if b, err := os.ReadFile(o.micro); err == nil {
			rep.Micro = string(b)
		}
	}

	steps := []struct {
		name string
		fn   func(context.Context, *report) error
	}{
		{"(a) warm cache", e.warm},
		{"(b) cold verification", e.cold},
		{"(c) rollout burst", e.rollout},
		{"(d) many cached images", e.manyImages},
		{"(e) slow notary", e.slowNotary},
		{"(f) one pod naming 5,000 repositories", e.flood},
	}
	for _, s := range steps {
		if o.only != "" && !strings.Contains(o.only, s.name[1:2]) {
			continue
		}
		if ctx.Err() != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: not run, time limit reached", s.name))
			continue
		}
		logf("%s …", s.name)
		if err := s.fn(ctx, rep); err != nil {
			logf("%s failed: %v", s.name, err)
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s failed: %v", s.name, err))
		}
	}
	rep.Elapsed = time.Since(started)
	rep.evaluate()
	md := rep.markdown()
	// Other benchmarks (cluster audit, cosign, notation, verifier
	// combinations) write their own sections between markers; a rerun of
	// the scenarios keeps them.
	if old, err := os.ReadFile(o.out); err == nil {
		md = keepMarkedSections(string(old), md)
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", o.out, err)
	}
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.jsonOut, err)
		}
	}
	fmt.Print(rep.summary())
	logf("wrote %s in %s", o.out, rep.Elapsed.Round(time.Second))
	if len(rep.Notes) > 0 {
		return fmt.Errorf("%d scenario(s) did not complete; see %s", len(rep.Notes), o.out)
	}
	return nil
}

func (e *env) close() {
	for _, s := range slices.Backward(e.servers) {
		s.stop()
	}
	if e.slow != nil {
		e.slow.Close()
	}
	if e.conns != nil {
		e.conns.Close()
	}
	if e.counter != nil {
		e.counter.Close()
	}
	if e.notary != nil {
		e.notary.Close()
	}
}

// setup starts notary-server and its proxies and signs the repositories.
func (e *env) setup() error {
	t0 := time.Now()
	notaryDir := filepath.Join(e.dir, "notary")
	if err := os.MkdirAll(notaryDir, 0o755); err != nil {
		return err
	}
	var err error
	if e.notary, err = dct.StartNotaryServer(dct.NotaryOptions{Dir: notaryDir}); err != nil {
		return err
	}
	if e.counter, err = dct.StartRequestCounter(e.notary.URL(), e.notary.CA()); err != nil {
		return err
	}
	if e.slow, err = dct.StartSlowProxy(e.notary.Addr()); err != nil {
		return err
	}
	if e.conns, err = dct.StartSlowProxy(strings.TrimPrefix(e.counter.URL(), "https://")); err != nil {
		return err
	}
	if e.signer, err = dct.NewSignerAt(e.notary.URL(), e.notary.CAFile(), filepath.Join(e.dir, "signer")); err != nil {
		return err
	}
	// Image names only need a registry host for the GUN; /validate never
	// pulls, so no registry runs.
	const reg = "127.0.0.1:5000/bench/"
	signOne := func(repo, tag string) (string, error) {
		gun := reg + repo
		if err := e.signer.Init(gun); err != nil {
			return "", err
		}
		// As `docker trust signer add ci REPO` + `docker trust sign`: the
		// tag lives in targets/releases (and targets/ci), so a lookup
		// walks root → timestamp → snapshot → targets → targets/releases.
		if err := e.signer.AddSigner(gun, "ci"); err != nil {
			return "", err
		}
		if err := e.signer.Sign(gun, tag, fakeDigest(gun+":"+tag), 1234, "targets/releases", "targets/ci"); err != nil {
			return "", err
		}
		f, err := e.signer.WriteRootKeyPEM(gun)
		if err != nil {
			return "", err
		}
		e.rootFiles = append(e.rootFiles, f)
		_, id, err := e.signer.RootKeyPEM(gun)
		return id, err
	}
	if _, err := signOne("app", "v1"); err != nil {
		return err
	}
	e.hotImage = reg + "app:v1"
	if _, err := signOne("rollout", "v1"); err != nil {
		return err
	}
	e.rolloutImage = reg + "rollout:v1"
	for i := range e.o.coldRepos {
		repo := fmt.Sprintf("cold-%02d", i)
		id, err := signOne(repo, "v1")
		if err != nil {
			return err
		}
		e.coldImages = append(e.coldImages, reg+repo+":v1")
		e.coldRoots = append(e.coldRoots, reg+repo+"="+id)
	}
	logf("signed %d repositories (docker trust style, targets/releases) with the notary CLI in %s", 2+e.o.coldRepos, time.Since(t0).Round(time.Millisecond))

	// The bulk repository: every tag in one publish, through the notary
	// library (the CLI would need a process per tag).
	t1 := time.Now()
	e.bulkGUN = reg + "many"
	n := max(e.o.many, e.o.newTags+1, e.o.slowBurst)
	out, err := exec.Command(e.o.anchor, "sign", "--server", e.notary.URL(), "--ca", e.notary.CAFile(),
		"--gun", e.bulkGUN, "--dir", filepath.Join(e.dir, "bulk"), "--tags", fmt.Sprint(n)).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return fmt.Errorf("sign %d tags of %s: %w", n, e.bulkGUN, err)
	}
	var signed struct {
		RootCert string `json:"rootCertFile"`
	}
	if err := json.Unmarshal(out, &signed); err != nil {
		return fmt.Errorf("anchor sign output: %w", err)
	}
	e.rootFiles = append(e.rootFiles, signed.RootCert)
	logf("signed %d tags of %s in one publish in %s", n, e.bulkGUN, time.Since(t1).Round(time.Millisecond))
	return nil
}

func bulkTag(i int) string { return fmt.Sprintf("t%05d", i) }

func (e *env) bulkImages(from, n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = e.bulkGUN + ":" + bulkTag(from+i)
	}
	return out
}

func fakeDigest(s string) string {
	return "sha256:" + fmt.Sprintf("%x", sha256Sum(s))
}

// writePolicy writes a policy that verifies every bench image with one
// notaryv1 verifier pinned to every repository's root certificate.
func (e *env) writePolicy(name, server string, deadline time.Duration) (string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "apiVersion: trustgate.dev/v1alpha1\nkind: Policy\nmode: enforce\nunmatched: deny\n")
	// The load generator sends tags to /validate, as a cluster that runs
	// only /validate does (with /mutate, /validate sees tag@digest).
	fmt.Fprintf(&b, "settings:\n  deadline: %s\n  validateRequiresDigest: false\n", deadline)
	fmt.Fprintf(&b, "verifiers:\n  - name: dct\n    type: notaryv1\n    notaryv1:\n")
	fmt.Fprintf(&b, "      server: %s\n      caFile: %s\n      rootKeys:\n", server, e.notary.CAFile())
	for _, f := range e.rootFiles {
		fmt.Fprintf(&b, "        - %s\n", f)
	}
	fmt.Fprintf(&b, "rules:\n  - name: bench\n    images: [\"127.0.0.1:5000/bench/**\"]\n    verify: [dct]\n")
	path := filepath.Join(e.dir, name+"-policy.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

func (e *env) startTrustgate(name, server string, deadline time.Duration) (*server, error) {
	p, err := e.writePolicy(name, server, deadline)
	if err != nil {
		return nil, err
	}
	s, err := startTrustgate(e.o.trustgate, e.dir, name, p, e.o.profile != "" && name == "trustgate")
	if err != nil {
		return nil, err
	}
	e.servers = append(e.servers, s)
	return s, nil
}

func (e *env) startFloor() (*server, error) {
	s, err := startFloor(e.o.floor, e.dir)
	if err != nil {
		return nil, err
	}
	e.servers = append(e.servers, s)
	return s, nil
}

func cfgFor(s *server, mode loadgen.Mode, bodies []loadgen.Body) loadgen.Config {
	return loadgen.Config{
		Name: s.name, URL: s.URL(), CAFile: s.caFile, Mode: mode, Bodies: bodies,
		PID: s.PID(), LateAfter: 10 * time.Second, Timeout: 30 * time.Second,
	}
}

func mustBodies(k loadgen.Kind, images []string, perRequest bool) []loadgen.Body {
	b, err := loadgen.Prepare(k, images, perRequest, 0, "default")
	if err != nil {
		panic(err) // the templates are ours; a failure is a bug here
	}
	return b
}

func allowedAll(r *loadgen.Result) error {
	if r.Errors > 0 || r.NotAllowed > 0 {
		return fmt.Errorf("%s: %d errors, %d not allowed (%v %v)", r.Name, r.Errors, r.NotAllowed, r.ErrSamples, r.Reasons)
	}
	return nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
