// Command load sends real AdmissionReview v1 requests to an admission
// webhook over HTTPS with keep-alive and reports latency, answers and the
// target's CPU and memory. Run `go run ./bench/load --help` for the flags.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
)

const usage = `load: drive an admission webhook with AdmissionReview v1 requests.

Usage:
  go run ./bench/load --url https://127.0.0.1:8443/validate --ca ca.pem [flags]

Modes (--mode):
  open    a fixed --rate of requests per second for --duration, whatever the
          answers do. Latency is measured from each request's SCHEDULED send
          time, so a stall of the target shows up as latency instead of
          silently slowing the sender.
  closed  --workers requests in flight, each sent when the previous answer
          came: the saturation throughput.
  burst   --requests requests released at the same instant on as many
          kept-alive connections, as a rollout of many pods does.

Bodies (--kind): pod (a typical Pod of about 3 KB: init container, app,
sidecar), deployment (a Deployment with that Pod as template), bigpod (a Pod
with 30 containers). Containers take the --image values in turn. With
--images-file and --new-image-per-request, request i carries only line i of
the file (a new image per request; the file is cycled when shorter than the
run).

Before measuring, the tool opens its connections (GET /healthz) so the run
sees warm keep-alive connections as an API server has them; --warmup then
sends at the same pace without recording.

Reported: throughput, p50/p90/p99/p99.9/max latency, errors (transport,
HTTP status other than 200, answers that are not an AdmissionReview or echo
another uid), answers that did not allow, answers slower than --late-after,
the reasons given for not allowing (quoted names elided, so reasons that differ
only in the image group together), and with --pid the target's CPU seconds
(utime+stime from /proc/PID/stat) and peak RSS (VmRSS sampled every 100 ms,
VmHWM reset at start when permitted).

With --floor-url the same run is repeated against the floor server
(go run ./bench/floor) and the report shows target ÷ floor for each figure.

Flags:
`

type imageList []string

func (l *imageList) String() string { return strings.Join(*l, ",") }
func (l *imageList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func main() {
	if err := runWithOutput(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// runWithOutput parses args, runs the load and writes the report (and
// --help) to stdout.
func runWithOutput(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	var (
		images     imageList
		url        = fs.String("url", "", "webhook URL, e.g. https://127.0.0.1:8443/validate (required)")
		ca         = fs.String("ca", "", "PEM CA bundle of the webhook's serving certificate")
		pid        = fs.Int("pid", 0, "PID of the webhook process, for CPU seconds and peak RSS")
		mode       = fs.String("mode", "open", "open, closed or burst")
		rate       = fs.Float64("rate", 1000, "open: requests per second")
		duration   = fs.Duration("duration", 10*time.Second, "open/closed: measured time")
		warmup     = fs.Duration("warmup", time.Second, "open/closed: unmeasured lead-in at the same pace")
		requests   = fs.Int("requests", 0, "burst: how many at once; open/closed: stop after this many (0: by --duration)")
		workers    = fs.Int("workers", 32, "closed: concurrent requests; open: most in flight")
		kind       = fs.String("kind", "pod", "pod, deployment or bigpod")
		imagesFile = fs.String("images-file", "", "file with one image per line (see --new-image-per-request)")
		perRequest = fs.Bool("new-image-per-request", false, "request i carries only image i of --image/--images-file")
		namespace  = fs.String("namespace", "default", "namespace of the objects")
		lateAfter  = fs.Duration("late-after", 10*time.Second, "count answers slower than this as late (the API server's timeout)")
		timeout    = fs.Duration("timeout", 30*time.Second, "give up on one request after this")
		http2      = fs.Bool("http2", false, "negotiate HTTP/2 instead of HTTP/1.1 keep-alive")
		jsonOut    = fs.String("json", "", "also write the results as JSON to this file (- for stdout instead of text)")
		floorURL   = fs.String("floor-url", "", "floor server URL: run the same load against it and compare")
		floorCA    = fs.String("floor-ca", "", "PEM CA of the floor server")
		floorPID   = fs.Int("floor-pid", 0, "PID of the floor server")
	)
	fs.Var(&images, "image", "image for the containers (repeatable, or comma-separated); default nginx:1.27")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		fs.Usage()
		return errors.New("--url is required")
	}
	k, err := loadgen.ParseKind(*kind)
	if err != nil {
		return err
	}
	if *imagesFile != "" {
		lines, err := readLines(*imagesFile)
		if err != nil {
			return err
		}
		images = append(images, lines...)
	}
	if len(images) == 0 {
		images = imageList{"nginx:1.27"}
	}
	bodies, err := loadgen.Prepare(k, images, *perRequest, 0, *namespace)
	if err != nil {
		return err
	}
	cfg := loadgen.Config{
		Name: "target", URL: *url, CAFile: *ca, Mode: loadgen.Mode(*mode), Rate: *rate,
		Duration: *duration, Warmup: *warmup, Requests: *requests, Workers: *workers,
		Bodies: bodies, LateAfter: *lateAfter, Timeout: *timeout, PID: *pid, HTTP2: *http2,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	out := struct {
		Target *loadgen.Result `json:"target"`
		Floor  *loadgen.Result `json:"floor,omitempty"`
	}{}
	if out.Target, err = loadgen.Run(ctx, cfg); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if *floorURL != "" {
		fcfg := cfg
		fcfg.Name, fcfg.URL, fcfg.CAFile, fcfg.PID = "floor", *floorURL, *floorCA, *floorPID
		if out.Floor, err = loadgen.Run(ctx, fcfg); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
	}
	if *jsonOut != "" {
		data, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		if *jsonOut == "-" {
			_, err = stdout.Write(data)
			return err
		}
		if err := os.WriteFile(*jsonOut, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *jsonOut, err)
		}
	}
	fmt.Fprint(stdout, out.Target.Text())
	if out.Floor != nil {
		fmt.Fprint(stdout, out.Floor.Text())
		fmt.Fprintln(stdout, "target ÷ floor:")
		fmt.Fprint(stdout, loadgen.CompareText(out.Target, out.Floor))
	}
	return nil
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read images: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read images %s: %w", path, err)
	}
	return out, nil
}
