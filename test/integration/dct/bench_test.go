package dct

import (
	"sync"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	harness "github.com/trustgate-dev/trustgate/test/harness/dct"
)

// benchRepo is one signed repository shared by the benchmarks, which Go
// calls several times with growing b.N.
var benchRepo struct {
	once    sync.Once
	img     image
	rootKey string
	rc      *harness.RequestCounter
	err     error
}

func benchSetup(b *testing.B) (image, config, *harness.RequestCounter) {
	b.Helper()
	be := env(b)
	benchRepo.once.Do(func() {
		const path = "bench/app"
		gun := be.reg.Repo(path)
		var size int64
		var digest string
		if digest, size, benchRepo.err = be.reg.PushRandomImage(path, "v1"); benchRepo.err != nil {
			return
		}
		benchRepo.img = image{ref: gun + ":v1", digest: digest, size: size}
		if benchRepo.err = be.sg.Init(gun); benchRepo.err != nil {
			return
		}
		if benchRepo.err = be.sg.AddSigner(gun, "ci"); benchRepo.err != nil {
			return
		}
		if benchRepo.err = be.sg.Sign(gun, "v1", digest, size, "targets/releases", "targets/ci"); benchRepo.err != nil {
			return
		}
		if benchRepo.rootKey, benchRepo.err = be.sg.WriteRootKeyPEM(gun); benchRepo.err != nil {
			return
		}
		// Lives until the process exits: benchmarks share it across runs.
		benchRepo.rc, benchRepo.err = harness.StartRequestCounter(be.srv.URL(), be.srv.CA())
	})
	if benchRepo.err != nil {
		b.Fatal(benchRepo.err)
	}
	cfg := config{Server: benchRepo.rc.URL(), CAFile: be.srv.CAFile(), RootKeys: []string{benchRepo.rootKey}}
	return benchRepo.img, cfg, benchRepo.rc
}

// reportRequests reports notary requests per operation since start.
func reportRequests(b *testing.B, rc *harness.RequestCounter, start int64) {
	b.ReportMetric(float64(rc.Count()-start)/float64(b.N), "req/op")
}

// BenchmarkVerifyCold builds a new verifier per operation, so every Verify
// fetches and checks the whole chain (root, timestamp, snapshot, targets,
// targets/releases) from the real notary server.
func BenchmarkVerifyCold(b *testing.B) {
	img, cfg, rc := benchSetup(b)
	want := outcome{digest: img.digest, signers: []string{"targets/releases"}}
	b.ReportAllocs()
	b.ResetTimer()
	start := rc.Count()
	for i := 0; i < b.N; i++ {
		v := newVerifier(b, cfg)
		res, err := verifyRef(b, v, img.ref)
		check(b, img.ref, res, err, want)
	}
	reportRequests(b, rc, start)
}

// BenchmarkVerifyWarm reuses one verifier: within the freshness window a
// Verify is answered from verified metadata in memory.
func BenchmarkVerifyWarm(b *testing.B) {
	benchWarm(b, func(cfg config) verify.Verifier { return newVerifier(b, cfg) })
}

// BenchmarkVerifyWarmRevalidate reuses one verifier without a freshness
// window: each Verify asks for timestamp.json and reuses the rest.
func BenchmarkVerifyWarmRevalidate(b *testing.B) {
	benchWarm(b, func(cfg config) verify.Verifier {
		return newTuned(b, cfg, verify.Deps{RequestTimeout: deps().RequestTimeout}, notaryv1.WithFreshness(0))
	})
}

// benchWarm measures Verify on one verifier from newV, warmed by a first
// Verify outside the timer.
func benchWarm(b *testing.B, newV func(config) verify.Verifier) {
	img, cfg, rc := benchSetup(b)
	want := outcome{digest: img.digest, signers: []string{"targets/releases"}}
	v := newV(cfg)
	res, err := verifyRef(b, v, img.ref)
	check(b, img.ref, res, err, want)
	b.ReportAllocs()
	b.ResetTimer()
	start := rc.Count()
	for i := 0; i < b.N; i++ {
		res, err := verifyRef(b, v, img.ref)
		check(b, img.ref, res, err, want)
	}
	reportRequests(b, rc, start)
}
