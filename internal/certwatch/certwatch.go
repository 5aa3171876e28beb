// Package certwatch serves a TLS certificate from files and picks up new
// files without a restart, as cert-manager or a rotated Secret replaces them.
// It polls: mounted Secrets change by an atomic symlink swap that file-event
// watchers easily miss, and a few seconds of delay is harmless for rotation.
package certwatch

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultInterval is how often the files are re-read.
const DefaultInterval = 5 * time.Second

// maxFileBytes caps each file read; certificate chains and keys are small.
const maxFileBytes = 1 << 20

// Watcher holds the current certificate.
type Watcher struct {
	certFile, keyFile string
	interval          time.Duration

	// Logger receives reload reports; nil discards them. Set it before Start.
	Logger *slog.Logger

	mu      sync.RWMutex
	cert    *tls.Certificate
	certPEM []byte
	keyPEM  []byte
}

// Option configures a Watcher.
type Option func(*Watcher)

// WithInterval sets the poll interval (default DefaultInterval).
func WithInterval(d time.Duration) Option { return func(w *Watcher) { w.interval = d } }

// New reads the key pair at once, so a missing or bad certificate fails at
// start rather than at the first handshake.
func New(certFile, keyFile string, opts ...Option) (*Watcher, error) {
	w := &Watcher{certFile: certFile, keyFile: keyFile, interval: DefaultInterval}
	for _, o := range opts {
		o(w)
	}
	if w.interval <= 0 {
		return nil, fmt.Errorf("certwatch: interval must be positive, got %v", w.interval)
	}
	if _, err := w.Reload(); err != nil {
		return nil, err
	}
	return w, nil
}

// GetCertificate returns the current certificate; use it as
// tls.Config.GetCertificate.
func (w *Watcher) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.cert, nil
}

// Reload reads the files and swaps the certificate in if they changed and
// form a valid pair. It reports whether the certificate changed. On error
// the previous certificate stays in use.
func (w *Watcher) Reload() (bool, error) {
	certPEM, err := readCapped(w.certFile)
	if err != nil {
		return false, err
	}
	keyPEM, err := readCapped(w.keyFile)
	if err != nil {
		return false, err
	}
	w.mu.RLock()
	same := bytes.Equal(certPEM, w.certPEM) && bytes.Equal(keyPEM, w.keyPEM)
	w.mu.RUnlock()
	if same {
		return false, nil
	}
	// Both files are not replaced at the same instant: between the two
	// writes they do not pair, which fails here and is retried next poll.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("certwatch: load key pair %s, %s: %w", w.certFile, w.keyFile, err)
	}
	w.mu.Lock()
	w.cert, w.certPEM, w.keyPEM = &cert, certPEM, keyPEM
	w.mu.Unlock()
	return true, nil
}

// Start polls the files until ctx ends; it returns nil then.
func (w *Watcher) Start(ctx context.Context) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			changed, err := w.Reload()
			switch {
			case err != nil:
				log.Warn("serving certificate not reloaded; keeping the current one", "error", err)
			case changed:
				log.Info("serving certificate reloaded", "cert", w.certFile)
			}
		}
	}
}

func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("certwatch: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("certwatch: read %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("certwatch: %s is larger than %d bytes", path, maxFileBytes)
	}
	return data, nil
}
