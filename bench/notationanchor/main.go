// Command notationanchor measures the reference that trustgate's cold
// Notation verification is compared against: notation-go's notation.Verify
// with an oras remote repository, set up as the notation CLI sets it up for
// `notation verify` — the trust policy and trust store read from the
// configuration directory (verifier.NewFromConfig), an oras auth client with
// a fresh token cache, plain HTTP for a local registry, and up to 100
// signature attempts. It lives in its own Go module so that its setup can
// never borrow from trustgate's.
//
//	notationanchor measure --config DIR --ref HOST/REPO@sha256:… [--ref …] [--warmup N] [--json]
//
// --json prints {"summary": …, "samples": [{"ms", "requests"}, …]}.
//
// Every --ref is verified once, "cold": a new verifier from the
// configuration directory and a new repository object, as one `notation
// verify` process does. One keep-alive transport is shared by all lookups,
// which favours the anchor (no new connection per lookup). Every HTTP
// request is counted by a wrapping transport.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	notation "github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/dir"
	nregistry "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/verifier"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "measure" {
		fmt.Fprintln(os.Stderr, "usage: notationanchor measure --config DIR --ref REF [--ref REF …] [--json]")
		os.Exit(2)
	}
	if err := measure(os.Args[2:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "notationanchor:", err)
		os.Exit(1)
	}
}

type refs []string

func (r *refs) String() string     { return strings.Join(*r, " ") }
func (r *refs) Set(v string) error { *r = append(*r, v); return nil }

// countingTransport counts the requests notation-go and oras send.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// Sample is one verification.
type Sample struct {
	Millis   float64 `json:"ms"`
	Requests int64   `json:"requests"`
}

// Summary describes the samples.
type Summary struct {
	N           int     `json:"n"`
	P50Millis   float64 `json:"p50ms"`
	P90Millis   float64 `json:"p90ms"`
	MeanMillis  float64 `json:"meanms"`
	MinRequests int64   `json:"minRequests"`
	MaxRequests int64   `json:"maxRequests"`
}

func summarize(s []Sample) Summary {
	if len(s) == 0 {
		return Summary{}
	}
	ms := make([]float64, len(s))
	var sum float64
	minR, maxR := s[0].Requests, s[0].Requests
	for i, x := range s {
		ms[i] = x.Millis
		sum += x.Millis
		minR, maxR = min(minR, x.Requests), max(maxR, x.Requests)
	}
	sort.Float64s(ms)
	rank := func(p float64) float64 { return ms[min(len(ms)-1, max(0, int(float64(len(ms))*p+0.999999)-1))] }
	return Summary{N: len(s), P50Millis: rank(0.5), P90Millis: rank(0.9), MeanMillis: sum / float64(len(s)), MinRequests: minR, MaxRequests: maxR}
}

func measure(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("measure", flag.ContinueOnError)
	config := fs.String("config", "", "notation configuration directory (trustpolicy.json, truststore/x509/…)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	warmup := fs.Int("warmup", 0, "verify the first --ref this many times, untimed, first (opens the keep-alive connection; the anchor keeps nothing else between verifications)")
	var rs refs
	fs.Var(&rs, "ref", "HOST/REPO@sha256:… to verify (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *config == "" || len(rs) == 0 {
		return errors.New("--config and at least one --ref are required")
	}
	dir.UserConfigDir = *config
	ct := &countingTransport{base: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 60 * time.Second}}
	httpClient := &http.Client{Transport: ct, Timeout: 10 * time.Second}
	for range *warmup {
		if err := verifyOnce(context.Background(), httpClient, rs[0]); err != nil {
			return fmt.Errorf("warm-up %s: %w", rs[0], err)
		}
	}
	var samples []Sample
	for _, ref := range rs {
		before := ct.n.Load()
		start := time.Now()
		if err := verifyOnce(context.Background(), httpClient, ref); err != nil {
			return fmt.Errorf("verify %s: %w", ref, err)
		}
		samples = append(samples, Sample{Millis: float64(time.Since(start).Microseconds()) / 1000, Requests: ct.n.Load() - before})
	}
	sum := summarize(samples)
	if *asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			Summary Summary  `json:"summary"`
			Samples []Sample `json:"samples"`
		}{sum, samples})
	}
	_, err := fmt.Fprintf(stdout, "n=%d p50=%.2fms p90=%.2fms mean=%.2fms requests=%d..%d\n", sum.N, sum.P50Millis, sum.P90Millis, sum.MeanMillis, sum.MinRequests, sum.MaxRequests)
	return err
}

// verifyOnce is what one `notation verify REF` does after flag parsing.
func verifyOnce(ctx context.Context, httpClient *http.Client, ref string) error {
	v, err := verifier.NewFromConfig()
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return err
	}
	repo.Client = &auth.Client{
		Client:   httpClient,
		Cache:    auth.NewCache(),
		ClientID: "notation",
		Header:   http.Header{"User-Agent": {"notation/anchor"}},
	}
	repo.PlainHTTP = strings.HasPrefix(ref, "127.0.0.1:") || strings.HasPrefix(ref, "localhost:")
	repo.SkipReferrersGC = true
	_, outcomes, err := notation.Verify(ctx, v, nregistry.NewRepository(repo), notation.VerifyOptions{
		ArtifactReference:    ref,
		MaxSignatureAttempts: 100,
	})
	if err != nil {
		return err
	}
	if len(outcomes) != 1 || outcomes[0].Error != nil {
		return fmt.Errorf("unexpected outcomes %v", outcomes)
	}
	return nil
}
