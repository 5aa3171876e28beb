package bench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/testing/policytest"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/acr"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	acrstandin "github.com/trustgate-dev/trustgate/test/harness/acr"
)

// Upstream latencies of the two-verifier benchmark: every notary metadata
// answer and every ACR tag answer is delayed, so a cold verification costs
// what its round trips cost (5 sequential notary requests for a new
// verifier; one ACR request), and the two schemes cost about the same: the
// case where running them one after another would hurt most.
const (
	notaryDelay = 4 * time.Millisecond
	acrDelay    = 20 * time.Millisecond
)

// BenchmarkTwoVerifiersCold measures one admission decision of a rule with
// two verifiers (notaryv1 against an in-memory notary server, acrSignedTag
// against the ACR stand-in), both cold (new verifiers and a new engine per
// iteration: nothing cached, no connection open), against each verifier
// alone. Each iteration times the four cases one after another; the ratio
// metrics compare the rule of two with the slower verifier alone (issue 10:
// at most 1.2×, since the verifiers of a rule run in parallel).
func BenchmarkTwoVerifiersCold(b *testing.B) {
	standIn := acrstandin.Start()
	b.Cleanup(standIn.Close)
	standIn.SetLatency(acrDelay)
	srv := notaryfake.New(b)
	srv.SetDelay(notaryDelay)
	gun := standIn.Host() + "/team/app"
	repo := srv.NewRepo(gun)
	repo.AddTarget("targets", "v1", digest, 1000)
	repo.Publish()
	standIn.SetTag("team/app", "v1", acrstandin.Tag{Digest: digest, Signed: true})
	dctCfg := notaryv1.Config{Server: srv.URL(), CAFile: srv.CAFile(b), RootKeys: []string{repo.RootKey().PublicPEM()}}
	image := gun + ":v1"

	newEngine := func(verifiers, require string) *engine.Engine {
		dct := policytest.Scheme("notaryv1", func(name string, deps verify.Deps) (verify.Verifier, error) {
			return notaryv1.New(name, dctCfg, deps)
		})
		acrScheme := policytest.Scheme("acrSignedTag", func(name string, deps verify.Deps) (verify.Verifier, error) {
			return acr.New(name, acr.Config{Registry: standIn.Host(), InsecureHTTP: true}, deps, nil)
		})
		doc := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
verifiers: [{name: dct, type: notaryv1}, {name: acr, type: acrSignedTag}]
rules: [{name: r, images: ["%s/**"], verify: [%s], require: %s, pinDigest: false}]
`, standIn.Host(), verifiers, require)
		return engine.New(policytest.Parse(b, "bench", doc, dct, acrScheme))
	}
	cases := []struct{ name, verifiers, require string }{
		{"dct", "dct", "all"},
		{"acr", "acr", "all"},
		{"all", "dct, acr", "all"},
		{"any", "dct, acr", "any"},
	}
	total := make([]time.Duration, len(cases))
	notaryBefore, acrBefore := srv.Requests(), standIn.Requests()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, c := range cases {
			b.StopTimer()
			e := newEngine(c.verifiers, c.require)
			b.StartTimer()
			start := time.Now()
			d := e.Evaluate(context.Background(), engine.Request{Namespace: "default", Images: []string{image}}).Decisions[0]
			total[j] += time.Since(start)
			if !d.Allowed || d.Digest != digest {
				b.Fatalf("%s: %+v", c.name, d)
			}
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / float64(time.Millisecond) }
	for j, c := range cases {
		b.ReportMetric(ms(total[j]), "ms/"+c.name)
	}
	slower := max(total[0], total[1])
	b.ReportMetric(float64(total[2])/float64(slower), "all/slower")
	b.ReportMetric(float64(total[3])/float64(slower), "any/slower")
	// Each case verifies once per iteration: dct in three, acr in three
	// (require: any may leave the slower one unawaited, but it still runs).
	b.ReportMetric(float64(srv.Requests()-notaryBefore)/float64(3*b.N), "notary-req/verification")
	b.ReportMetric(float64(standIn.Requests()-acrBefore)/float64(3*b.N), "acr-req/verification")
}
