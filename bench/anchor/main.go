// Command anchor measures the reference that trustgate's cold Docker Content
// Trust verification is compared against: the notary client library path
// docker/cli and Portieris use — client.NewFileCachedRepository with a
// pinned root, then GetTargetByName(tag, "targets/releases", "targets").
// It lives in its own Go module so trustgate's go.mod never carries the
// notary library.
//
//	anchor measure --server URL --ca CA --repo GUN=ROOTKEYID [--repo …] --tags v1,v2 --cold 30 --warm 100 --json
//	anchor sign    --server URL --ca CA --gun GUN --dir DIR --tags 10000
//
// measure: "cold" is a new repository object over a new, empty cache
// directory for every lookup (what a new docker CLI process or a Portieris
// check without a warm cache does); "warm" repeats lookups on one
// repository object whose cache holds the metadata. Every HTTP request the
// library sends is counted by a wrapping transport. One keep-alive transport
// is shared by all lookups, which favours the anchor (no TLS handshake per
// lookup).
//
// sign: creates GUN with a new root key, a server-managed snapshot key (as
// `docker trust` does) and --tags targets named t00000… with made-up
// digests, all in ONE publish, and prints the root certificate key ID to pin.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/passphrase"
	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf/data"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: anchor measure|sign [flags] (anchor CMD --help)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "measure":
		err = measure(os.Args[2:], os.Stdout)
	case "sign":
		err = sign(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q: want measure or sign", os.Args[1])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "anchor:", err)
		os.Exit(1)
	}
}

// countingTransport counts the requests the notary library sends.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func newTransport(caFile string) (*http.Transport, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		conf.RootCAs = pool
	}
	return &http.Transport{
		TLSClientConfig:     conf,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     60 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}, nil
}

type repoFlag []string

func (r *repoFlag) String() string     { return strings.Join(*r, " ") }
func (r *repoFlag) Set(v string) error { *r = append(*r, v); return nil }

// Sample is one lookup.
type Sample struct {
	Millis   float64 `json:"ms"`
	Requests int64   `json:"requests"`
}

// Summary describes a set of lookups.
type Summary struct {
	N           int     `json:"n"`
	P50Millis   float64 `json:"p50ms"`
	P90Millis   float64 `json:"p90ms"`
	MeanMillis  float64 `json:"meanms"`
	P50Requests int64   `json:"p50Requests"`
	MinRequests int64   `json:"minRequests"`
	MaxRequests int64   `json:"maxRequests"`
}

func summarize(s []Sample) Summary {
	if len(s) == 0 {
		return Summary{}
	}
	ms := make([]float64, len(s))
	reqs := make([]int64, len(s))
	var sum float64
	for i, x := range s {
		ms[i], reqs[i] = x.Millis, x.Requests
		sum += x.Millis
	}
	sort.Float64s(ms)
	sort.Slice(reqs, func(a, b int) bool { return reqs[a] < reqs[b] })
	rank := func(n int, p float64) int { return min(n-1, max(0, int(float64(n)*p+0.999999)-1)) }
	return Summary{
		N: len(s), P50Millis: ms[rank(len(ms), 0.5)], P90Millis: ms[rank(len(ms), 0.9)], MeanMillis: sum / float64(len(s)),
		P50Requests: reqs[rank(len(reqs), 0.5)], MinRequests: reqs[0], MaxRequests: reqs[len(reqs)-1],
	}
}

// Measurement is what `anchor measure --json` prints.
type Measurement struct {
	Cold  Summary `json:"cold"`
	Warm  Summary `json:"warm"`
	Ping  bool    `json:"ping"`
	Notes string  `json:"notes"`
}

func measure(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("measure", flag.ContinueOnError)
	var repos repoFlag
	server := fs.String("server", "", "notary server URL (required)")
	ca := fs.String("ca", "", "PEM CA of the notary server")
	tags := fs.String("tags", "", "comma-separated tags to look up, cycled (required)")
	cold := fs.Int("cold", 30, "cold lookups")
	warm := fs.Int("warm", 100, "warm lookups")
	tofu := fs.Bool("tofu", false, "trust on first use instead of pinning the root certificate IDs")
	ping := fs.Bool("ping", false, "GET /v2/ before each cold lookup, as docker/cli does to find the auth challenge")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Var(&repos, "repo", "GUN=ROOTCERTKEYID, repeatable (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == "" || *tags == "" || len(repos) == 0 {
		return errors.New("measure: --server, --tags and --repo are required")
	}
	type repo struct{ gun, rootID string }
	var rs []repo
	pins := trustpinning.TrustPinConfig{Certs: map[string][]string{}, DisableTOFU: !*tofu}
	for _, r := range repos {
		gun, id, ok := strings.Cut(r, "=")
		if !ok && !*tofu {
			return fmt.Errorf("--repo %q: want GUN=ROOTCERTKEYID (or --tofu)", r)
		}
		rs = append(rs, repo{gun, id})
		if !*tofu {
			pins.Certs[gun] = []string{id}
		}
	}
	tagList := strings.Split(*tags, ",")
	base, err := newTransport(*ca)
	if err != nil {
		return err
	}
	rt := &countingTransport{base: base}
	httpc := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	roles := []data.RoleName{"targets/releases", data.CanonicalTargetsRole}

	tmp, err := os.MkdirTemp("", "anchor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	lookup := func(r client.Repository, tag string) error {
		t, err := r.GetTargetByName(tag, roles...)
		if err != nil {
			return fmt.Errorf("GetTargetByName(%s): %w", tag, err)
		}
		if len(t.Hashes["sha256"]) != sha256.Size {
			return fmt.Errorf("GetTargetByName(%s): no sha256 in %v", tag, t.Hashes)
		}
		return nil
	}

	// One untimed lookup opens the keep-alive connection.
	{
		r, err := client.NewFileCachedRepository(filepath.Join(tmp, "prime"), data.GUN(rs[0].gun), *server, rt, nil, pins)
		if err != nil {
			return err
		}
		if err := lookup(r, tagList[0]); err != nil {
			return fmt.Errorf("prime: %w", err)
		}
	}

	var coldS []Sample
	for i := range *cold {
		rp := rs[i%len(rs)]
		dir := filepath.Join(tmp, fmt.Sprintf("cold-%d", i))
		before := rt.n.Load()
		start := time.Now()
		if *ping {
			resp, err := httpc.Get(strings.TrimRight(*server, "/") + "/v2/")
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
		}
		r, err := client.NewFileCachedRepository(dir, data.GUN(rp.gun), *server, rt, nil, pins)
		if err != nil {
			return fmt.Errorf("new repository %s: %w", rp.gun, err)
		}
		if err := lookup(r, tagList[(i/len(rs))%len(tagList)]); err != nil {
			return fmt.Errorf("cold %s: %w", rp.gun, err)
		}
		coldS = append(coldS, Sample{Millis: ms(time.Since(start)), Requests: rt.n.Load() - before})
		_ = os.RemoveAll(dir)
	}

	var warmS []Sample
	if *warm > 0 {
		r, err := client.NewFileCachedRepository(filepath.Join(tmp, "warm"), data.GUN(rs[0].gun), *server, rt, nil, pins)
		if err != nil {
			return err
		}
		if err := lookup(r, tagList[0]); err != nil {
			return fmt.Errorf("warm first lookup: %w", err)
		}
		for i := range *warm {
			before := rt.n.Load()
			start := time.Now()
			if err := lookup(r, tagList[(i+1)%len(tagList)]); err != nil {
				return fmt.Errorf("warm: %w", err)
			}
			warmS = append(warmS, Sample{Millis: ms(time.Since(start)), Requests: rt.n.Load() - before})
		}
	}
	m := Measurement{Cold: summarize(coldS), Warm: summarize(warmS), Ping: *ping,
		Notes: "cold: new repository object and empty cache dir per lookup; warm: same repository object; one shared keep-alive transport"}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	fmt.Fprintf(stdout, "cold (new repository + cache dir): p50 %.2f ms, p90 %.2f ms, requests p50 %d (min %d, max %d), n=%d\n",
		m.Cold.P50Millis, m.Cold.P90Millis, m.Cold.P50Requests, m.Cold.MinRequests, m.Cold.MaxRequests, m.Cold.N)
	fmt.Fprintf(stdout, "warm (same repository object):     p50 %.2f ms, p90 %.2f ms, requests p50 %d (min %d, max %d), n=%d\n",
		m.Warm.P50Millis, m.Warm.P90Millis, m.Warm.P50Requests, m.Warm.MinRequests, m.Warm.MaxRequests, m.Warm.N)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// SignOutput is what `anchor sign` prints (JSON).
type SignOutput struct {
	GUN       string  `json:"gun"`
	RootKeyID string  `json:"rootKeyID"`
	RootCert  string  `json:"rootCertFile"`
	Tags      int     `json:"tags"`
	Seconds   float64 `json:"seconds"`
}

func sign(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	server := fs.String("server", "", "notary server URL (required)")
	ca := fs.String("ca", "", "PEM CA of the notary server")
	gun := fs.String("gun", "", "repository to create (required)")
	dir := fs.String("dir", "", "trust directory (keys, cache; required)")
	n := fs.Int("tags", 100, "targets to sign, named t00000, t00001, …")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server == "" || *gun == "" || *dir == "" || *n < 1 {
		return errors.New("sign: --server, --gun, --dir and --tags ≥ 1 are required")
	}
	start := time.Now()
	tr, err := newTransport(*ca)
	if err != nil {
		return err
	}
	r, err := client.NewFileCachedRepository(*dir, data.GUN(*gun), *server, tr,
		passphrase.ConstantRetriever("anchor-bench-passphrase"), trustpinning.TrustPinConfig{})
	if err != nil {
		return fmt.Errorf("sign %s: %w", *gun, err)
	}
	rootKey, err := r.GetCryptoService().Create(data.CanonicalRootRole, data.GUN(*gun), data.ECDSAKey)
	if err != nil {
		return fmt.Errorf("sign %s: create root key: %w", *gun, err)
	}
	if err := r.Initialize([]string{rootKey.ID()}, data.CanonicalSnapshotRole); err != nil {
		return fmt.Errorf("sign %s: initialize: %w", *gun, err)
	}
	for i := range *n {
		name := fmt.Sprintf("t%05d", i)
		sum := sha256.Sum256([]byte(*gun + ":" + name))
		t := &client.Target{Name: name, Hashes: data.Hashes{"sha256": sum[:]}, Length: int64(1000 + i)}
		if err := r.AddTarget(t, data.CanonicalTargetsRole); err != nil {
			return fmt.Errorf("sign %s: add %s: %w", *gun, name, err)
		}
	}
	if err := r.Publish(); err != nil {
		return fmt.Errorf("sign %s: publish: %w", *gun, err)
	}
	// The pin is the key ID of the root certificate as root.json lists it.
	raw, err := os.ReadFile(filepath.Join(*dir, "tuf", filepath.FromSlash(*gun), "metadata", "root.json"))
	if err != nil {
		return fmt.Errorf("sign %s: read root.json: %w", *gun, err)
	}
	var root data.Signed
	if err := json.Unmarshal(raw, &root); err != nil {
		return fmt.Errorf("sign %s: decode root.json: %w", *gun, err)
	}
	sr, err := data.RootFromSigned(&root)
	if err != nil {
		return fmt.Errorf("sign %s: decode root.json: %w", *gun, err)
	}
	ids := sr.Signed.Roles[data.CanonicalRootRole].KeyIDs
	if len(ids) != 1 {
		return fmt.Errorf("sign %s: root role has %d keys", *gun, len(ids))
	}
	certFile := filepath.Join(*dir, "root-cert.pem")
	if err := os.WriteFile(certFile, sr.Signed.Keys[ids[0]].Public(), 0o644); err != nil {
		return err
	}
	out := SignOutput{GUN: *gun, RootKeyID: ids[0], RootCert: certFile, Tags: *n, Seconds: time.Since(start).Seconds()}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
