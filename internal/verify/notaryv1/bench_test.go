package notaryv1

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// benchRepo publishes 100 tags in targets/releases, as a busy repository.
func benchRepo(b *testing.B) (*notaryfake.Server, Config) {
	b.Helper()
	srv := notaryfake.New(b)
	repo := srv.NewRepo(testGUN)
	repo.AddDelegation("targets/releases", "ecdsa", "")
	for i := 0; i < 100; i++ {
		repo.AddTarget("targets/releases", fmt.Sprintf("v%d", i), digestOf(fmt.Sprint(i)), 10)
	}
	repo.Publish()
	return srv, Config{Server: srv.URL(), CAFile: srv.CAFile(b), RootKeys: []string{repo.RootKey().PublicPEM()}}
}

// BenchmarkVerifyWarm measures a lookup answered from verified metadata in
// memory (the steady state within the freshness interval): no request.
func BenchmarkVerifyWarm(b *testing.B) {
	srv, cfg := benchRepo(b)
	v, err := New("bench", cfg, verify.Deps{}, WithFreshness(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	ref := imageref.MustParse(testGUN + ":v42")
	ctx := context.Background()
	if _, err := v.Verify(ctx, verify.Subject{Ref: ref}); err != nil {
		b.Fatal(err)
	}
	srv.ResetCounts()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(ctx, verify.Subject{Ref: ref}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := srv.Requests(); n != 0 {
		b.Fatalf("warm lookups sent %d requests, want 0", n)
	}
}

// BenchmarkVerifyCold measures a first lookup by a new verifier: TLS
// handshake, root, timestamp, snapshot, targets and targets/releases
// fetched and verified. A new verifier knows nothing of the server yet, so
// it fetches one file at a time (see mayParallelize); BenchmarkVerifyColdRepo
// measures the cold lookup of a running verifier.
func BenchmarkVerifyCold(b *testing.B) {
	srv, cfg := benchRepo(b)
	ref := imageref.MustParse(testGUN + ":v42")
	ctx := context.Background()
	srv.ResetCounts()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		v, err := New("bench", cfg, verify.Deps{})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := v.Verify(ctx, verify.Subject{Ref: ref}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := srv.Requests(); n != 5*b.N {
		b.Fatalf("%d cold lookups sent %d requests, want %d", b.N, n, 5*b.N)
	}
}

// BenchmarkVerifyRefresh measures a lookup that re-checks the timestamp
// (freshness 0) against an unchanged repository: one request per lookup.
func BenchmarkVerifyRefresh(b *testing.B) {
	srv, cfg := benchRepo(b)
	v, err := New("bench", cfg, verify.Deps{}, WithFreshness(0))
	if err != nil {
		b.Fatal(err)
	}
	ref := imageref.MustParse(testGUN + ":v42")
	ctx := context.Background()
	if _, err := v.Verify(ctx, verify.Subject{Ref: ref}); err != nil {
		b.Fatal(err)
	}
	srv.ResetCounts()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(ctx, verify.Subject{Ref: ref}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := srv.Requests(); n != b.N {
		b.Fatalf("%d refreshing lookups sent %d requests, want %d", b.N, n, b.N)
	}
}

// BenchmarkVerifyColdRepo measures the first lookup of a repository by a
// running verifier: its connections are open (as in a webhook that has
// verified other images), the repository's metadata is not held. In
// parallel, root, timestamp and snapshot, then targets and
// targets/releases travel together: two round trips for the five
// requests; sequential (the verifier's parallel fetching switched off) is
// the five round trips of before, for comparison in the same run. The rtt
// cases add a server delay per request, as a network would.
func BenchmarkVerifyColdRepo(b *testing.B) {
	for _, rtt := range []time.Duration{0, 2 * time.Millisecond} {
		for _, mode := range []string{"sequential", "parallel"} {
			b.Run(fmt.Sprintf("rtt=%v/%s", rtt, mode), func(b *testing.B) {
				srv, cfg := benchRepo(b)
				v, err := New("bench", cfg, verify.Deps{})
				if err != nil {
					b.Fatal(err)
				}
				if mode == "sequential" {
					v.fetch.seen = nil
				}
				ref := imageref.MustParse(testGUN + ":v42")
				ctx := context.Background()
				// The first refresh of the process, and a second that opens
				// the connections the parallel requests use.
				for i := 0; i < 2; i++ {
					forget(v, testGUN)
					if _, err := v.Verify(ctx, verify.Subject{Ref: ref}); err != nil {
						b.Fatal(err)
					}
				}
				srv.SetDelay(rtt)
				srv.ResetCounts()
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					forget(v, testGUN)
					if _, err := v.Verify(ctx, verify.Subject{Ref: ref}); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if n := srv.Requests(); n != 5*b.N {
					b.Fatalf("%d cold lookups sent %d requests, want %d", b.N, n, 5*b.N)
				}
			})
		}
	}
}
