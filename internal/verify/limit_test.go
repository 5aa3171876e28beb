package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// Requests through every client derived from one LimitRequests transport
// share its slots: the server never sees more than the limit at once, a
// slot comes back when the body is closed or read to its end, and a request
// whose context ends while it waits is never sent.
func TestLimitRequests(t *testing.T) {
	const limit, clients, perClient = 3, 2, 10
	release := make(chan struct{})
	arrived := make(chan struct{}, clients*perClient)
	var inFlight, maxSeen, served atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
		}
		served.Add(1)
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	base := srv.Client().Transport.(*http.Transport).Clone()
	limited := LimitRequests(base, limit)
	var cs []*http.Client
	for range clients {
		c, err := NewHTTPClient(limited, pool) // each with its own pool and CA, as verifiers are
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*perClient)
	for _, c := range cs {
		for i := range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(srv.URL)
				if err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					_, _ = io.ReadAll(resp.Body) // read to the end, closed later
				}
				resp.Body.Close()
			}()
		}
	}
	for range limit {
		<-arrived
	}
	// A request whose context ends while every slot is taken is not sent.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if _, err := cs[0].Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
	if got := inFlight.Load(); got != limit {
		t.Fatalf("%d requests at the server with every slot taken, want %d", got, limit)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := maxSeen.Load(); got > limit {
		t.Fatalf("server saw %d requests at once, limit %d", got, limit)
	}
	if got := served.Load(); got != clients*perClient {
		t.Fatalf("server answered %d requests, want %d", got, clients*perClient)
	}
	if n := limited.(*limitedTransport).InFlight(); n != 0 {
		t.Fatalf("%d slots still held after every body was closed", n)
	}
}
