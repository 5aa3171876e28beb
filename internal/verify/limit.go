package verify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// DefaultMaxRequests is how many outbound requests `trustgate serve` lets
// every verifier together have open at once (issue 9, item 4). Verifiers
// fetch several metadata files of one repository in parallel, so the
// engine's bound on verifications in flight does not by itself bound
// requests; this does, and with it the connections and response buffers a
// flood of images can make trustgate hold.
const DefaultMaxRequests = 64

// LimitRequests returns base (http.DefaultTransport when nil) with at most n
// requests open at once through it and every transport NewHTTPClient derives
// from it: a request waits for a slot under its own context and holds the
// slot until its response body is closed or read to the end (or the round
// trip fails). Verifiers keep their own connection pools and CAs; only the
// slots are shared.
func LimitRequests(base http.RoundTripper, n int) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &limitedTransport{next: base, slots: make(chan struct{}, max(n, 1))}
}

// limitedTransport bounds the requests in flight through next.
type limitedTransport struct {
	next  http.RoundTripper
	slots chan struct{}
}

// with returns a transport that sends through next and shares t's slots.
func (t *limitedTransport) with(next http.RoundTripper) *limitedTransport {
	return &limitedTransport{next: next, slots: t.slots}
}

// InFlight is the number of requests holding a slot.
func (t *limitedTransport) InFlight() int { return len(t.slots) }

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		return nil, fmt.Errorf("%s %s: not sent: %w", req.Method, req.URL.Redacted(), err)
	}
	select {
	case t.slots <- struct{}{}:
	case <-req.Context().Done():
		return nil, fmt.Errorf("%s %s: not sent, waiting for one of %d request slots: %w", req.Method, req.URL.Redacted(), cap(t.slots), context.Cause(req.Context()))
	}
	var once sync.Once
	release := func() { once.Do(func() { <-t.slots }) }
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp == nil || resp.Body == nil {
		release()
		return resp, err
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// releasingBody gives the request's slot back when the body is closed or
// read to its end, whichever comes first.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}
