// Command cosignanchor measures the reference that trustgate's cold cosign
// verification is compared against: cosign's own library path, exactly as
// `cosign verify --key cosign.pub --insecure-ignore-tlog=true IMAGE` runs it
// (cosign v3.1.3's verify.VerifyCommand.Exec, in process: bundle probe
// with GetBundles, then VerifyImageAttestations for the bundle format or
// VerifyImageSignatures for legacy signatures). It lives in its own Go
// module so trustgate's go.mod never carries cosign's dependency tree.
//
//	cosignanchor measure --key cosign.pub --images IMG@sha256:…,IMG2@… [--rounds 1]
//
// Every image is verified "cold": a new command object, as a new cosign
// process would; registry requests are counted by a wrapping transport.
// One keep-alive transport is shared by all lookups, which favours the
// anchor (no new connection per lookup). Output: JSON on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v3/cmd/cosign/cli/options"
	"github.com/sigstore/cosign/v3/cmd/cosign/cli/verify"
)

type counting struct {
	n     atomic.Int64
	inner http.RoundTripper
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.inner.RoundTrip(r)
}

// Lookup is one cold verification.
type Lookup struct {
	Image    string  `json:"image"`
	Millis   float64 `json:"millis"`
	Requests int64   `json:"requests"`
	Error    string  `json:"error,omitempty"`
}

// Report is the tool's output.
type Report struct {
	Lookups     []Lookup `json:"lookups"`
	P50Millis   float64  `json:"p50Millis"`
	P50Requests int64    `json:"p50Requests"`
}

func main() {
	if len(os.Args) < 2 || os.Args[1] != "measure" {
		fmt.Fprintln(os.Stderr, "usage: cosignanchor measure --key PUB --images IMG@DIGEST[,…]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("measure", flag.ExitOnError)
	key := fs.String("key", "", "public key file (cosign.pub)")
	images := fs.String("images", "", "comma-separated image references (by digest)")
	rounds := fs.Int("rounds", 1, "verifications per image")
	_ = fs.Parse(os.Args[2:])
	if *key == "" || *images == "" {
		fs.Usage()
		os.Exit(2)
	}
	rt := &counting{inner: http.DefaultTransport.(*http.Transport).Clone()}
	var rep Report
	// The CLI prints its verification report; keep stdout for ours.
	stdout, stderr := os.Stdout, os.Stderr
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	for range *rounds {
		for _, img := range strings.Split(*images, ",") {
			cmd := verify.VerifyCommand{
				RegistryOptions: options.RegistryOptions{RegistryClientOpts: []remote.Option{remote.WithTransport(rt)}},
				KeyRef:          *key,
				IgnoreTlog:      true,
				CheckClaims:     true,
				NewBundleFormat: true,
				MaxWorkers:      10,
			}
			before := rt.n.Load()
			os.Stdout, os.Stderr = devnull, devnull
			start := time.Now()
			err := cmd.Exec(context.Background(), []string{img})
			el := time.Since(start)
			os.Stdout, os.Stderr = stdout, stderr
			l := Lookup{Image: img, Millis: float64(el.Microseconds()) / 1000, Requests: rt.n.Load() - before}
			if err != nil {
				l.Error = err.Error()
			}
			rep.Lookups = append(rep.Lookups, l)
		}
	}
	ms := make([]float64, len(rep.Lookups))
	rq := make([]int64, len(rep.Lookups))
	for i, l := range rep.Lookups {
		ms[i], rq[i] = l.Millis, l.Requests
	}
	sort.Float64s(ms)
	sort.Slice(rq, func(i, j int) bool { return rq[i] < rq[j] })
	if len(ms) > 0 {
		rep.P50Millis, rep.P50Requests = ms[len(ms)/2], rq[len(rq)/2]
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		fmt.Fprintln(stderr, err)
		os.Exit(1)
	}
}
