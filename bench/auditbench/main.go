// Command auditbench is the benchmark of `trustgate audit` (issue 13): it
// starts a real kube-apiserver (test/harness/kube) and a real notary-server
// (test/harness/dct) behind a request-counting proxy, signs the images with
// the notary client library (bench/anchor sign: one publish per repository),
// stores thousands of pods through client-go, and audits them twice:
//
//  1. the real binary, `trustgate audit -o json`, as a process: wall time,
//     peak RSS (rusage ru_maxrss), API pages (its summary line), notary
//     requests by path (each repository's root.json fetched once means each
//     repository verified once);
//  2. the same audit in this process (internal/inventory + internal/audit,
//     the code the binary runs) with every verifier wrapped in a call
//     counter: verifier calls must equal the distinct (image, verifier)
//     pairs, whether or not a call needed the network.
//
// No webhook is registered in the cluster, so the pods are stored as
// written. The registry is not started: a notaryv1-only policy binds tags
// to digests from the notary server and the audit does not pin, so nothing
// would contact it.
//
//	go build -o /tmp/trustgate ./cmd/trustgate
//	(cd bench/anchor && go build -o /tmp/anchor .)
//	go run ./bench/auditbench --trustgate /tmp/trustgate --anchor /tmp/anchor --out BENCHMARKS.md
//
// `make bench-audit` does the same. With --out, the section between the
// auditbench markers in that file is replaced (appended when missing).
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trustgate-dev/trustgate/internal/audit"
	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/inventory"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	"github.com/trustgate-dev/trustgate/test/harness/dct"
	"github.com/trustgate-dev/trustgate/test/harness/kube"
)

type options struct {
	trustgate, anchor string
	pods, namespaces  int
	repos, tags       int
	pageSize          int
	createWorkers     int
	signWorkers       int
	out, jsonOut      string
	command, work     string
	keep              bool
	maxRSSMiB         float64
	memProfile        string
}

const (
	beginMarker = "<!-- auditbench:begin -->"
	endMarker   = "<!-- auditbench:end -->"
	registry    = "127.0.0.1:5000/bench/" // a host for the GUNs; never contacted
)

func main() {
	var o options
	flag.StringVar(&o.trustgate, "trustgate", "", "trustgate binary (go build ./cmd/trustgate)")
	flag.StringVar(&o.anchor, "anchor", "", "anchor binary (cd bench/anchor && go build), used to sign every tag of a repository in one publish; without it the notary CLI signs, a process per step")
	flag.IntVar(&o.pods, "pods", 10000, "pods to store")
	flag.IntVar(&o.namespaces, "namespaces", 100, "namespaces the pods are spread over")
	flag.IntVar(&o.repos, "repos", 300, "signed repositories")
	flag.IntVar(&o.tags, "tags", 1, "signed tags per repository (distinct images = repos × tags)")
	flag.IntVar(&o.pageSize, "page-size", 500, "trustgate audit --page-size")
	flag.IntVar(&o.createWorkers, "create-workers", 16, "concurrent pod creations")
	flag.IntVar(&o.signWorkers, "sign-workers", 2, "concurrent signing processes")
	flag.StringVar(&o.out, "out", "", "Markdown file whose auditbench section to replace (empty: print the section)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the raw results as JSON here")
	flag.StringVar(&o.command, "command", "", "the command to quote in the report (default: this invocation)")
	flag.StringVar(&o.work, "work", "", "working directory (default: a new temp dir, removed unless --keep)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory")
	flag.Float64Var(&o.maxRSSMiB, "max-rss-mib", 150, "fail when the audit's peak RSS exceeds this")
	flag.StringVar(&o.memProfile, "memprofile", "", "write a heap profile (allocations included) of the in-process audit here")
	flag.Parse()
	if o.command == "" {
		o.command = "go run ./bench/auditbench " + strings.Join(os.Args[1:], " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "auditbench: %v\n", err)
		os.Exit(1)
	}
	if len(res.Problems) > 0 {
		fmt.Fprintf(os.Stderr, "auditbench: %d problem(s):\n  %s\n", len(res.Problems), strings.Join(res.Problems, "\n  "))
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "auditbench: "+format+"\n", args...)
}

// Result is everything measured.
type Result struct {
	Date, Commit, Command, Machine, Go string
	Pods, Namespaces, Images, Repos    int
	SignSeconds, CreateSeconds         float64
	CreatePodsPerSecond                float64
	Binary                             BinaryRun
	Scaling                            []ScalingRun
	InProcess                          InProcessRun
	Problems                           []string
}

// BinaryRun is the `trustgate audit` process.
type BinaryRun struct {
	WallSeconds    float64          `json:"wallSeconds"`
	MaxRSSMiB      float64          `json:"maxRSSMiB"`
	CPUSeconds     float64          `json:"cpuSeconds"`
	ExitCode       int              `json:"exitCode"`
	Objects        int              `json:"objects"`
	Pages          int              `json:"pages"`
	Rows           int              `json:"rows"`
	Summary        audit.Summary    `json:"summary"`
	NotaryRequests int64            `json:"notaryRequests"`
	ByFile         map[string]int64 `json:"byFile"` // root.json → requests over every repository
	MaxPerPath     int64            `json:"maxPerPath"`
	OutputBytes    int              `json:"outputBytes"`
}

// ScalingRun is the binary over part of the cluster, or another format.
type ScalingRun struct {
	Format     string `json:"format"`
	Namespaces int    `json:"namespaces"` // 0: all
	BinaryRun
}

// InProcessRun is the same audit with counted verifier calls.
type InProcessRun struct {
	WallSeconds     float64       `json:"wallSeconds"`
	VerifierCalls   int64         `json:"verifierCalls"`
	DistinctPairs   int           `json:"distinctPairs"`
	Pages           int           `json:"pages"`
	Objects         int           `json:"objects"`
	NotaryRequests  int64         `json:"notaryRequests"`
	Summary         audit.Summary `json:"summary"`
	HeapInUseMiB    float64       `json:"heapInUseMiB"`
	TotalAllocMiB   float64       `json:"totalAllocMiB"`
	VerdictsByImage int           `json:"admittedImages"`
}

func run(ctx context.Context, o options) (*Result, error) {
	if o.trustgate == "" {
		return nil, errors.New("--trustgate is required")
	}
	if o.pods < 1 || o.namespaces < 1 || o.repos < 1 || o.tags < 1 {
		return nil, errors.New("--pods, --namespaces, --repos and --tags must be positive")
	}
	for _, p := range []*string{&o.trustgate, &o.anchor} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	work := o.work
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "trustgate-auditbench-"); err != nil {
			return nil, err
		}
		if !o.keep {
			defer os.RemoveAll(work)
		}
	}
	res := &Result{
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Command: o.command, Go: runtime.Version(),
		Pods: o.pods, Namespaces: o.namespaces, Repos: o.repos, Images: o.repos * o.tags,
		Commit: gitCommit(), Machine: machine(),
	}

	// The trust server, behind a proxy that counts every request.
	if err := os.MkdirAll(filepath.Join(work, "notary"), 0o755); err != nil {
		return nil, err
	}
	notary, err := dct.StartNotaryServer(dct.NotaryOptions{Dir: filepath.Join(work, "notary")})
	if err != nil {
		return nil, err
	}
	defer notary.Close()
	counter, err := dct.StartRequestCounter(notary.URL(), notary.CA())
	if err != nil {
		return nil, err
	}
	defer counter.Close()

	// Sign: one anchor process per repository, every tag in one publish.
	t0 := time.Now()
	images, roots, err := signAll(ctx, o, notary, filepath.Join(work, "sign"))
	if err != nil {
		return nil, err
	}
	res.SignSeconds = time.Since(t0).Seconds()
	logf("signed %d tags in %d repositories in %s", len(images), o.repos, time.Since(t0).Round(time.Millisecond))

	cluster, err := kube.New(ctx, kube.Options{Progress: os.Stderr})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			logf("stop cluster: %v", err)
		}
	}()
	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 2000, 2000
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	t0 = time.Now()
	if err := createPods(ctx, o, client, images); err != nil {
		return nil, err
	}
	res.CreateSeconds = time.Since(t0).Seconds()
	res.CreatePodsPerSecond = float64(o.pods) / res.CreateSeconds
	logf("stored %d pods in %d namespaces in %s (%.0f pods/s)", o.pods, o.namespaces, time.Since(t0).Round(time.Millisecond), res.CreatePodsPerSecond)

	pol := filepath.Join(work, "policy.yaml")
	if err := writePolicy(pol, counter.URL(), notary.CAFile(), roots); err != nil {
		return nil, err
	}

	if res.Binary, err = runBinary(ctx, o, cluster.Kubeconfig, pol, "json", nil, counter); err != nil {
		return nil, err
	}
	logf("trustgate audit: %d objects, %d pages, %.2fs, peak RSS %.1f MiB, %d notary requests",
		res.Binary.Objects, res.Binary.Pages, res.Binary.WallSeconds, res.Binary.MaxRSSMiB, res.Binary.NotaryRequests)
	// How memory grows with the cluster: the same audit over a tenth and
	// half of the namespaces, and over all of them with the default table.
	for _, run := range []struct {
		format string
		share  int // namespaces, in percent
	}{{"json", 10}, {"json", 50}, {"table", 100}} {
		var nss []string
		if run.share < 100 {
			for n := range max(1, o.namespaces*run.share/100) {
				nss = append(nss, nsName(n))
			}
		}
		b, err := runBinary(ctx, o, cluster.Kubeconfig, pol, run.format, nss, counter)
		if err != nil {
			return nil, err
		}
		res.Scaling = append(res.Scaling, ScalingRun{Format: run.format, Namespaces: len(nss), BinaryRun: b})
		logf("trustgate audit -o %s over %d%% of the namespaces: %d objects, %.2fs, peak RSS %.1f MiB", run.format, run.share, b.Objects, b.WallSeconds, b.MaxRSSMiB)
	}

	counter.Reset()
	if err := runInProcess(ctx, o, client, pol, counter, res); err != nil {
		return nil, err
	}
	logf("in process: %d verifier calls for %d distinct (image, verifier) pairs, %d notary requests",
		res.InProcess.VerifierCalls, res.InProcess.DistinctPairs, res.InProcess.NotaryRequests)

	check(o, res)
	section := report(o, res)
	if o.out == "" {
		fmt.Print(section)
	} else if err := replaceSection(o.out, section); err != nil {
		return nil, err
	}
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func signAll(ctx context.Context, o options, notary *dct.NotaryServer, dir string) (images, roots []string, err error) {
	roots = make([]string, o.repos)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, o.signWorkers))
	// Without the anchor, the notary CLI signs (slower: a process per
	// step), one signer (trust directory) per worker.
	var signers chan *dct.Signer
	if o.anchor == "" {
		signers = make(chan *dct.Signer, max(1, o.signWorkers))
		for w := range cap(signers) {
			s, err := dct.NewSignerAt(notary.URL(), notary.CAFile(), filepath.Join(dir, "cli-"+strconv.Itoa(w)))
			if err != nil {
				return nil, nil, err
			}
			signers <- s
		}
	}
	for i := range o.repos {
		g.Go(func() error {
			gun := fmt.Sprintf("%saudit-%03d", registry, i)
			if signers != nil {
				s := <-signers
				defer func() { signers <- s }()
				if err := s.Init(gun); err != nil {
					return err
				}
				for t := range o.tags {
					tag := fmt.Sprintf("t%05d", t)
					sum := sha256.Sum256([]byte(gun + ":" + tag))
					if err := s.Sign(gun, tag, "sha256:"+hex.EncodeToString(sum[:]), int64(1000+t)); err != nil {
						return err
					}
				}
				f, err := s.WriteRootKeyPEM(gun)
				roots[i] = f
				return err
			}
			cmd := exec.CommandContext(gctx, o.anchor, "sign", "--server", notary.URL(), "--ca", notary.CAFile(),
				"--gun", gun, "--dir", filepath.Join(dir, strconv.Itoa(i)), "--tags", strconv.Itoa(o.tags))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("sign %s: %w: %s", gun, err, bytes.TrimSpace(stderr.Bytes()))
			}
			var signed struct {
				RootCert string `json:"rootCertFile"`
			}
			if err := json.Unmarshal(out, &signed); err != nil || signed.RootCert == "" {
				return fmt.Errorf("sign %s: output %q: %v", gun, out, err)
			}
			roots[i] = signed.RootCert
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for i := range o.repos {
		for t := range o.tags {
			images = append(images, fmt.Sprintf("%saudit-%03d:t%05d", registry, i, t))
		}
	}
	return images, roots, nil
}

// createPods stores o.pods pods: the first len(images) use each image once,
// the rest pick images at random (fixed seed), so every namespace holds a
// mix and the audit's per-namespace memo misses as it would in a cluster.
func createPods(ctx context.Context, o options, client kubernetes.Interface, images []string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.createWorkers)
	for n := range o.namespaces {
		g.Go(func() error {
			ns := nsName(n)
			if _, err := client.CoreV1().Namespaces().Create(gctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create namespace %s: %w", ns, err)
			}
			// No controller-manager creates it; the ServiceAccount admission
			// plugin needs it.
			if _, err := client.CoreV1().ServiceAccounts(ns).Create(gctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create service account in %s: %w", ns, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(13, 13))
	pick := make([]string, o.pods)
	for i := range pick {
		if i < len(images) {
			pick[i] = images[i]
		} else {
			pick[i] = images[rng.IntN(len(images))]
		}
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(o.createWorkers)
	var done atomic.Int64
	for i := range o.pods {
		g.Go(func() error {
			ns := nsName(i % o.namespaces)
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%05d", i), Namespace: ns, Labels: map[string]string{"app": "auditbench"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: pick[i],
				}}},
			}
			if _, err := client.CoreV1().Pods(ns).Create(gctx, p, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create pod %s/%s: %w", ns, p.Name, err)
			}
			if n := done.Add(1); n%2000 == 0 {
				logf("%d pods stored", n)
			}
			return nil
		})
	}
	return g.Wait()
}

func nsName(n int) string { return fmt.Sprintf("audit-%03d", n) }

func writePolicy(path, server, caFile string, roots []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: trustgate.dev/v1alpha1
kind: Policy
unmatched: deny
exemptNamespaces: [kube-system]
verifiers:
  - name: dct
    type: notaryv1
    notaryv1:
      server: %s
      caFile: %s
      rootKeys:
`, server, caFile)
	for _, r := range roots {
		fmt.Fprintf(&b, "        - %s\n", r)
	}
	fmt.Fprintf(&b, `rules:
  - name: bench
    images: ["%s**"]
    verify: [dct]
`, registry)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

var summaryLine = regexp.MustCompile(`audit: (\d+) objects in (\d+) API pages`)

// runBinary runs `trustgate audit` over namespaces (nil: all) with output
// format, from a cold start (a new process: nothing cached).
func runBinary(ctx context.Context, o options, kubeconfig, pol, format string, namespaces []string, counter *dct.RequestCounter) (BinaryRun, error) {
	var b BinaryRun
	counter.Reset()
	args := []string{"audit", "--kubeconfig", kubeconfig, "--policy", pol, "-o", format, "--page-size", strconv.Itoa(o.pageSize)}
	for _, ns := range namespaces {
		args = append(args, "-n", ns)
	}
	cmd := exec.CommandContext(ctx, o.trustgate, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// An empty environment but for what Go and client-go need: no
	// KUBECONFIG or proxies from the caller.
	cmd.Env = []string{"HOME=" + os.Getenv("HOME"), "PATH=" + os.Getenv("PATH")}
	t0 := time.Now()
	err := cmd.Run()
	b.WallSeconds = time.Since(t0).Seconds()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		b.ExitCode = ee.ExitCode()
	case err != nil:
		return b, fmt.Errorf("trustgate audit: %w", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		b.MaxRSSMiB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	b.CPUSeconds = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	if b.ExitCode > 1 {
		return b, fmt.Errorf("trustgate audit: exit %d:\n%s", b.ExitCode, stderr.String())
	}
	m := summaryLine.FindStringSubmatch(stderr.String())
	if m == nil {
		return b, fmt.Errorf("trustgate audit: no summary line in stderr:\n%s", stderr.String())
	}
	b.Objects, _ = strconv.Atoi(m[1])
	b.Pages, _ = strconv.Atoi(m[2])
	b.OutputBytes = stdout.Len()
	b.NotaryRequests = counter.Count()
	b.ByFile = map[string]int64{}
	for path, n := range counter.Paths() {
		b.ByFile[filepath.Base(path)] += n
		b.MaxPerPath = max(b.MaxPerPath, n)
	}
	if format != "json" {
		return b, nil
	}
	var out struct {
		Rows    []json.RawMessage `json:"rows"`
		Summary []audit.Summary   `json:"summary"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return b, fmt.Errorf("trustgate audit -o json: %w", err)
	}
	if len(out.Summary) != 1 {
		return b, fmt.Errorf("trustgate audit: %d summaries, want 1", len(out.Summary))
	}
	b.Rows, b.Summary = len(out.Rows), out.Summary[0]
	return b, nil
}

// countedVerifier counts calls to a verifier: each is one verification of
// one (image, verifier) pair, served from the network or from what the
// verifier holds.
type countedVerifier struct {
	verify.Verifier
	calls *atomic.Int64
	mu    *sync.Mutex
	pairs map[string]bool
}

func (c countedVerifier) BindsTags() bool { return verify.BindsTags(c.Verifier) }

func (c countedVerifier) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	c.calls.Add(1)
	c.mu.Lock()
	c.pairs[c.Name()+" "+s.Reference().String()] = true
	c.mu.Unlock()
	return c.Verifier.Verify(ctx, s)
}

func runInProcess(ctx context.Context, o options, client kubernetes.Interface, pol string, counter *dct.RequestCounter, res *Result) error {
	var calls atomic.Int64
	var mu sync.Mutex
	pairs := map[string]bool{}
	scheme := notaryv1.Scheme
	scheme.New = func(name string, cfg any, deps verify.Deps) (verify.Verifier, error) {
		v, err := notaryv1.Scheme.New(name, cfg, deps)
		if err != nil {
			return nil, err
		}
		return countedVerifier{Verifier: v, calls: &calls, mu: &mu, pairs: pairs}, nil
	}
	schemes, err := verify.NewRegistry(scheme)
	if err != nil {
		return err
	}
	p, err := policy.NewLoader(schemes, verify.Deps{}).Load(pol)
	if err != nil {
		return err
	}
	runtime.MemProfileRate = 64 << 10
	// The same settings as the command's defaults.
	a := &audit.Auditor{Judges: []audit.Judge{{Name: "current", Engine: engine.New(p)}}, Concurrency: 8}
	l := &inventory.Lister{Client: client, PageSize: int64(o.pageSize)}
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	st, err := l.Walk(ctx, func(pg inventory.Page) error { return a.Add(ctx, pg.Objects) })
	if err != nil {
		return err
	}
	rows, sums := a.Result()
	if o.memProfile != "" {
		f, err := os.Create(o.memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	ip := &res.InProcess
	ip.WallSeconds = time.Since(t0).Seconds()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ip.HeapInUseMiB = float64(ms.HeapInuse) / (1 << 20)
	ip.TotalAllocMiB = float64(ms.TotalAlloc-before.TotalAlloc) / (1 << 20)
	ip.VerifierCalls, ip.DistinctPairs = calls.Load(), len(pairs)
	ip.Pages, ip.Objects = st.Pages, st.Objects
	ip.NotaryRequests = counter.Count()
	ip.Summary = sums[0]
	admitted := map[string]bool{}
	for _, r := range rows {
		if r.Verdicts[0].Verdict == audit.Admit {
			admitted[r.Image] = true
		}
	}
	ip.VerdictsByImage = len(admitted)
	return nil
}

// check compares what was measured with what must hold.
func check(o options, res *Result) {
	b, ip := res.Binary, res.InProcess
	fail := func(format string, args ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, args...)) }
	if b.ExitCode != 0 {
		fail("trustgate audit exited %d, want 0 (every image is signed)", b.ExitCode)
	}
	if b.Objects != o.pods || b.Rows != o.pods || b.Summary.Objects != o.pods || b.Summary.Images != res.Images {
		fail("binary: %d objects, %d rows, summary %+v; want %d pods and %d images", b.Objects, b.Rows, b.Summary, o.pods, res.Images)
	}
	if b.Summary.DeniedObjects != 0 || b.Summary.UnavailableObjects != 0 {
		fail("binary: %d denied, %d unavailable; want none", b.Summary.DeniedObjects, b.Summary.UnavailableObjects)
	}
	if b.ByFile["root.json"] != int64(o.repos) || b.MaxPerPath != 1 {
		fail("binary: root.json fetched %d times for %d repositories, at most %d times per path; want each once", b.ByFile["root.json"], o.repos, b.MaxPerPath)
	}
	if ip.VerifierCalls != int64(res.Images) || ip.DistinctPairs != res.Images {
		fail("in process: %d verifier calls, %d distinct pairs; want %d (one per image and verifier)", ip.VerifierCalls, ip.DistinctPairs, res.Images)
	}
	if ip.Summary != b.Summary {
		fail("in process summary %+v differs from the binary's %+v", ip.Summary, b.Summary)
	}
	if ip.Pages != b.Pages || ip.NotaryRequests != b.NotaryRequests {
		fail("in process: %d pages, %d notary requests; the binary %d, %d", ip.Pages, ip.NotaryRequests, b.Pages, b.NotaryRequests)
	}
	if b.MaxRSSMiB >= o.maxRSSMiB {
		fail("peak RSS %.1f MiB, want < %.0f MiB", b.MaxRSSMiB, o.maxRSSMiB)
	}
}

func report(o options, res *Result) string {
	b, ip := res.Binary, res.InProcess
	var w strings.Builder
	fmt.Fprintf(&w, "%s\n## Cluster audit (issue 13)\n\n", beginMarker)
	fmt.Fprintf(&w, "Written by `bench/auditbench` (`make bench-audit`); rerun it rather than editing. Command: `%s`;\n", res.Command)
	fmt.Fprintf(&w, "%s, commit `%s`, %s, %s.\n\n", res.Date, res.Commit, res.Machine, res.Go)
	fmt.Fprintf(&w, "%d pods (one container each) stored through client-go in %d namespaces of a real kube-apiserver\n", res.Pods, res.Namespaces)
	how := "the notary client library (`bench/anchor sign`, one publish per repository)"
	if o.anchor == "" {
		how = "the notary CLI"
	}
	fmt.Fprintf(&w, "(etcd, no webhook registered), using %d distinct images: %d repositories × %d tag(s), signed with\n", res.Images, res.Repos, o.tags)
	fmt.Fprintf(&w, "%s on a real notary-server, each image in at least one pod, the rest\n", how)
	fmt.Fprintf(&w, "spread at random. The policy has one `notaryv1` verifier pinned to every repository's root certificate.\n")
	fmt.Fprintf(&w, "The registry is not started: a notaryv1-only audit reads digests from the notary server and does not pin.\n\n")
	fmt.Fprintf(&w, "| | |\n|---|---|\n")
	fmt.Fprintf(&w, "| `trustgate audit -o json --page-size %d`, wall time | **%.2f s** (%.2f CPU s) |\n", o.pageSize, b.WallSeconds, b.CPUSeconds)
	fmt.Fprintf(&w, "| peak RSS (ru_maxrss of the process) | **%.1f MiB** (target < %.0f MiB) |\n", b.MaxRSSMiB, o.maxRSSMiB)
	fmt.Fprintf(&w, "| API pages (every judged kind, all namespaces) | %d, for %d objects |\n", b.Pages, b.Objects)
	fmt.Fprintf(&w, "| rows / distinct images / denied / unavailable | %d / %d / %d / %d (exit code %d) |\n", b.Rows, b.Summary.Images, b.Summary.DeniedObjects, b.Summary.UnavailableObjects, b.ExitCode)
	fmt.Fprintf(&w, "| requests to the notary server | %d: %s; at most %d per path |\n", b.NotaryRequests, byFile(b.ByFile), b.MaxPerPath)
	fmt.Fprintf(&w, "| verifier calls (same audit in process, calls counted) | **%d** for %d distinct (image, verifier) pairs |\n", ip.VerifierCalls, ip.DistinctPairs)
	fmt.Fprintf(&w, "| in-process audit: wall time; heap in use after; allocated during it (the counting proxy, in the same process, included) | %.2f s; %.1f MiB; %.0f MiB |\n", ip.WallSeconds, ip.HeapInUseMiB, ip.TotalAllocMiB)
	fmt.Fprintf(&w, "| JSON output | %.1f MiB |\n", float64(b.OutputBytes)/(1<<20))
	fmt.Fprintf(&w, "| setup: signing, storing the pods | %.1f s; %.1f s (%.0f pods/s) |\n\n", res.SignSeconds, res.CreateSeconds, res.CreatePodsPerSecond)
	fmt.Fprintf(&w, "Peak RSS against cluster size (the same binary, a new process each time; `-n` selects namespaces):\n\n")
	fmt.Fprintf(&w, "| output | namespaces | objects | API pages | wall s | peak RSS MiB |\n|---|---:|---:|---:|---:|---:|\n")
	all := append([]ScalingRun{{Format: "json", BinaryRun: b}}, res.Scaling...)
	slices.SortStableFunc(all, func(x, y ScalingRun) int { return x.Objects - y.Objects })
	for _, r := range all {
		ns := strconv.Itoa(r.Namespaces)
		if r.Namespaces == 0 {
			ns = "all " + strconv.Itoa(res.Namespaces)
		}
		fmt.Fprintf(&w, "| %s | %s | %d | %d | %.2f | %.1f |\n", r.Format, ns, r.Objects, r.Pages, r.WallSeconds, r.MaxRSSMiB)
	}
	fmt.Fprintf(&w, "\nWith `-n`, each of the 8 judged kinds is listed per namespace (8 × namespaces calls at least), and the\n")
	fmt.Fprintf(&w, "command's Kubernetes client allows 50 requests/s (burst 100), so many `-n` flags cost wall time, not memory.\n")
	fmt.Fprintf(&w, "Peak RSS grows with the rows kept for the sorted output (about 600 bytes of heap per row, plus the\n")
	fmt.Fprintf(&w, "garbage collector's headroom); the listing itself is paged and does not accumulate.\n\n")
	if len(res.Problems) == 0 {
		fmt.Fprintf(&w, "Checks passed: every pod listed and admitted; each repository's `root.json` fetched exactly once (one cold\n")
		fmt.Fprintf(&w, "verification per repository, no repeat for the other %d pods); verifier calls equal the distinct pairs; the\n", res.Pods-res.Images)
		fmt.Fprintf(&w, "in-process audit agrees with the binary on summary, pages and notary requests; peak RSS under the target.\n")
	} else {
		fmt.Fprintf(&w, "**Checks failed:**\n\n")
		for _, p := range res.Problems {
			fmt.Fprintf(&w, "- %s\n", p)
		}
	}
	fmt.Fprintf(&w, "%s\n", endMarker)
	return w.String()
}

func byFile(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("`%s` %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// replaceSection puts section between the markers of path, or appends it.
func replaceSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + section + strings.TrimPrefix(s[j+len(endMarker):], "\n")
	default:
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func machine() string {
	return fmt.Sprintf("%d CPUs, %s/%s", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
}
