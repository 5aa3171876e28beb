// Package server runs trustgate's HTTPS endpoint: the two admission webhooks,
// health and readiness probes and metrics, with graceful shutdown so that a
// rolling restart never drops an admission request in flight.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	DefaultShutdownTimeout = 25 * time.Second
	maxClientCABytes       = 1 << 20
)

// Options configure a Server.
type Options struct {
	// Addr is the TLS listen address, e.g. ":8443" or "127.0.0.1:0".
	Addr string
	// GetCertificate supplies the serving certificate (certwatch.Watcher's
	// method, or a func returning a fixed one). Required.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAFile, if set, enables mutual TLS: /validate and /mutate then
	// answer only clients presenting a certificate that verifies against
	// these CAs (the API server's client certificate, configured through its
	// admission control config). Probes and metrics stay reachable without
	// one, because kubelet probes never present client certificates; a
	// certificate that is presented but does not verify fails the handshake.
	ClientCAFile string
	// Validate and Mutate are the admission handlers. Required.
	Validate, Mutate http.Handler
	// Ready reports readiness (policy loaded, …); nil means ready once
	// serving. /readyz answers 503 until it is true and again once shutdown
	// starts, so endpoints drop the pod before it stops listening.
	Ready func() bool
	// Metrics serves /metrics (on the TLS port, unauthenticated like the
	// probes); nil disables it.
	Metrics http.Handler
	// MetricsAddr, if set, also serves /metrics over plain HTTP there, for
	// scrapers that do not speak TLS to the pod.
	MetricsAddr string
	Logger      *slog.Logger
	// ShutdownTimeout bounds the drain of in-flight requests; default 25s
	// (below Kubernetes' default 30s termination grace period).
	ShutdownTimeout time.Duration
}

// Server is trustgate's HTTP(S) server.
type Server struct {
	opts      Options
	log       *slog.Logger
	tlsConfig *tls.Config
	main      *http.Server
	metrics   *http.Server // nil without MetricsAddr

	mu        sync.Mutex
	ln, mln   net.Listener
	stopping  atomic.Bool
	listening atomic.Bool
}

// New checks opts and builds the server; nothing listens until Listen or Run.
func New(opts Options) (*Server, error) {
	if opts.GetCertificate == nil {
		return nil, errors.New("server: Options.GetCertificate is required")
	}
	if opts.Validate == nil || opts.Mutate == nil {
		return nil, errors.New("server: Options.Validate and Options.Mutate are required")
	}
	if opts.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("server: negative ShutdownTimeout %v", opts.ShutdownTimeout)
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{opts: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.tlsConfig = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: opts.GetCertificate,
	}
	requireClient := false
	if opts.ClientCAFile != "" {
		pool, err := loadPool(opts.ClientCAFile)
		if err != nil {
			return nil, err
		}
		s.tlsConfig.ClientCAs = pool
		s.tlsConfig.ClientAuth = tls.VerifyClientCertIfGiven
		requireClient = true
	}

	admit := func(h http.Handler) http.Handler {
		if requireClient {
			return requireClientCert(h)
		}
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("POST /validate", admit(opts.Validate))
	mux.Handle("POST /mutate", admit(opts.Mutate))
	s.probes(mux)
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	s.main = s.httpServer(mux)
	s.main.TLSConfig = s.tlsConfig

	if opts.MetricsAddr != "" {
		if opts.Metrics == nil {
			return nil, errors.New("server: MetricsAddr needs a Metrics handler")
		}
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", opts.Metrics)
		s.metrics = s.httpServer(mmux)
	}
	return s, nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		// An admission call is bounded by the webhook's timeoutSeconds (at
		// most 30s); nothing legitimate takes longer to write.
		WriteTimeout:   35 * time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 64 << 10,
		// Handshake failures from probes and scanners are routine: debug.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

func (s *Server) probes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.stopping.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case !s.listening.Load() || (s.opts.Ready != nil && !s.opts.Ready()):
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		default:
			_, _ = io.WriteString(w, "ok\n")
		}
	})
}

// requireClientCert admits only requests whose TLS client certificate was
// verified (the handshake already rejected unverifiable ones).
func requireClientCert(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "a verified client certificate is required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func loadPool(file string) (*x509.CertPool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("server: client CA: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxClientCABytes+1))
	if err != nil {
		return nil, fmt.Errorf("server: read client CA %s: %w", file, err)
	}
	if len(data) > maxClientCABytes {
		return nil, fmt.Errorf("server: client CA %s is larger than %d bytes", file, maxClientCABytes)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("server: client CA %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Listen binds the listeners, so that Addr and MetricsAddr are known before
// Run (useful with port 0). Run calls it if it has not been called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", s.opts.Addr, err)
	}
	if s.metrics != nil {
		mln, err := net.Listen("tcp", s.opts.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("server: listen for metrics on %s: %w", s.opts.MetricsAddr, err)
		}
		s.mln = mln
	}
	s.ln = ln
	return nil
}

// Addr is the bound TLS address (nil before Listen).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// MetricsAddr is the bound plain-HTTP metrics address (nil if none).
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mln == nil {
		return nil
	}
	return s.mln.Addr()
}

// Run serves until ctx ends, then stops accepting connections and waits up
// to ShutdownTimeout for requests in flight to be answered. It returns nil
// after a clean drain, or the error that stopped it.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln, mln := s.ln, s.mln
	s.mu.Unlock()

	errc := make(chan error, 2)
	s.listening.Store(true)
	s.log.Info("serving", "addr", ln.Addr().String(), "mtls", s.opts.ClientCAFile != "")
	// ServeTLS (not Serve on a tls listener) so that HTTP/2 is offered too.
	go func() { errc <- s.main.ServeTLS(ln, "", "") }()
	if s.metrics != nil {
		s.log.Info("serving metrics", "addr", mln.Addr().String())
		go func() { errc <- s.metrics.Serve(mln) }()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		// A listener failed: shut the rest down and report it.
	}
	s.stopping.Store(true)
	s.log.Info("shutting down; draining requests in flight", "timeout", s.opts.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	var errs []error
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("server: serve: %w", serveErr))
	}
	servers := []*http.Server{s.main}
	if s.metrics != nil {
		servers = append(servers, s.metrics)
	}
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Shutdown(sctx); err != nil {
				// Drain took too long: cut the remaining connections.
				_ = srv.Close()
				emu.Lock()
				errs = append(errs, fmt.Errorf("server: shutdown: %w", err))
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
