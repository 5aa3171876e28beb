package dct

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SlowProxy is a TCP proxy on 127.0.0.1 that delays traffic towards its
// upstream, or swallows it. It works below TLS, so a client talks to the
// upstream's own certificate through it (the SANs cover 127.0.0.1).
//
// Latency applies to every chunk the client sends, so a request on a
// kept-alive connection waits about one latency, and a request on a new TLS
// connection about three (ClientHello, Finished, request).
type SlowProxy struct {
	ln       net.Listener
	upstream string

	latency   atomic.Int64 // time.Duration
	blackhole atomic.Bool
	accepted  atomic.Int64
	forwarded atomic.Int64 // connections dialled upstream

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// StartSlowProxy listens on a free 127.0.0.1 port and forwards to upstream
// ("host:port").
func StartSlowProxy(upstream string) (*SlowProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start slow proxy to %s: %w", upstream, err)
	}
	p := &SlowProxy{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// NewSlowProxy is StartSlowProxy for tests, closed at cleanup.
func NewSlowProxy(t testing.TB, upstream string) *SlowProxy {
	t.Helper()
	p, err := StartSlowProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr is 127.0.0.1:PORT.
func (p *SlowProxy) Addr() string { return p.ln.Addr().String() }

// URL is https://127.0.0.1:PORT, for an HTTPS upstream such as notary-server.
func (p *SlowProxy) URL() string { return "https://" + p.Addr() }

// SetLatency sets the delay added before each chunk is forwarded upstream.
func (p *SlowProxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// SetBlackhole makes the proxy accept connections and never answer them.
// Turning it on also drops open connections, so clients with kept-alive
// connections have to reconnect into the black hole.
func (p *SlowProxy) SetBlackhole(on bool) {
	p.blackhole.Store(on)
	if on {
		p.DropConnections()
	}
}

// Accepted counts client connections accepted so far.
func (p *SlowProxy) Accepted() int64 { return p.accepted.Load() }

// Forwarded counts connections dialled to the upstream so far.
func (p *SlowProxy) Forwarded() int64 { return p.forwarded.Load() }

// DropConnections closes every open connection (both sides).
func (p *SlowProxy) DropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops listening, drops all connections and waits for the goroutines.
func (p *SlowProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	p.ln.Close()
	p.DropConnections()
	p.wg.Wait()
}

// track registers c for DropConnections/Close; false when already closed.
func (p *SlowProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *SlowProxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *SlowProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *SlowProxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	if p.blackhole.Load() {
		// Hold the connection without reading until it is dropped: the client
		// sees a server that accepted and went silent.
		_, _ = io.Copy(io.Discard, &sleepyReader{r: client, p: p, forever: true})
		return
	}
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	up, err := d.DialContext(ctx, "tcp", p.upstream)
	cancel()
	if err != nil {
		return
	}
	p.forwarded.Add(1)
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)

	var inner sync.WaitGroup
	inner.Add(1)
	go func() {
		defer inner.Done()
		_, _ = io.Copy(client, up)
		client.Close()
	}()
	_, _ = io.Copy(up, &sleepyReader{r: client, p: p})
	up.Close()
	inner.Wait()
}

// sleepyReader delays each successful read by the proxy's current latency;
// with forever set (or once the proxy turns into a black hole) it drops data.
type sleepyReader struct {
	r       io.Reader
	p       *SlowProxy
	forever bool
}

func (s *sleepyReader) Read(b []byte) (int, error) {
	for {
		n, err := s.r.Read(b)
		if n > 0 {
			if s.forever || s.p.blackhole.Load() {
				if err != nil {
					return 0, err
				}
				continue
			}
			if d := time.Duration(s.p.latency.Load()); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-s.p.done:
					t.Stop()
					return 0, net.ErrClosed
				}
			}
		}
		return n, err
	}
}

// RequestCounter is a TLS reverse proxy in front of an HTTPS server (the
// notary server) that counts the HTTP requests passing through it, so tests
// and benchmarks can assert how many metadata fetches reach the server. Its
// certificate comes from the same CA, so clients need no extra trust.
type RequestCounter struct {
	srv *http.Server
	ln  net.Listener

	total atomic.Int64
	mu    sync.Mutex
	paths map[string]int64
}

// StartRequestCounter proxies to upstreamURL (https://…) whose certificate
// ca issued, serving its own ca-issued certificate on a free 127.0.0.1 port.
func StartRequestCounter(upstreamURL string, ca *CA) (*RequestCounter, error) {
	u, err := url.Parse(upstreamURL)
	if err != nil {
		return nil, fmt.Errorf("start request counter: %w", err)
	}
	cert, err := ca.IssueTLS("request-counter")
	if err != nil {
		return nil, fmt.Errorf("start request counter: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start request counter: %w", err)
	}
	rc := &RequestCounter{ln: ln, paths: map[string]int64{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
		// An unreachable upstream is a normal test condition, not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	rc.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rc.total.Add(1)
			rc.mu.Lock()
			rc.paths[r.URL.Path]++
			rc.mu.Unlock()
			rp.ServeHTTP(w, r)
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = rc.srv.ServeTLS(ln, "", "") }()
	return rc, nil
}

// NewRequestCounter is StartRequestCounter in front of srv, closed at cleanup.
func NewRequestCounter(t testing.TB, srv *NotaryServer) *RequestCounter {
	t.Helper()
	rc, err := StartRequestCounter(srv.URL(), srv.CA())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	return rc
}

// URL is https://127.0.0.1:PORT.
func (rc *RequestCounter) URL() string { return "https://" + rc.ln.Addr().String() }

// Count is the number of requests received since start or the last Reset.
func (rc *RequestCounter) Count() int64 { return rc.total.Load() }

// Paths returns a copy of the per-path request counts.
func (rc *RequestCounter) Paths() map[string]int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	m := make(map[string]int64, len(rc.paths))
	for k, v := range rc.paths {
		m[k] = v
	}
	return m
}

// Reset sets the counts to zero.
func (rc *RequestCounter) Reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.total.Store(0)
	clear(rc.paths)
}

// Close stops the proxy.
func (rc *RequestCounter) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = rc.srv.Close()
	}
}
