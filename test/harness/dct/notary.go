package dct

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

// NotaryOptions configures a notary-server.
type NotaryOptions struct {
	// Dir holds configuration, certificates and logs; required for
	// StartNotaryServer, a t.TempDir() by default for NewNotaryServer.
	Dir string
	// CA signs the server certificate; a new CA is made in Dir when nil.
	CA *CA
	// ECDSAServerKeys runs notary-signer as the remote trust service so the
	// server's own timestamp and snapshot keys are ECDSA (as Docker Hub and
	// ACR have them) instead of the local trust service's ed25519.
	ECDSAServerKeys bool
	// Auth is notary-server's "auth" configuration block (e.g. token auth:
	// {"type":"token","options":{realm, service, issuer, rootcertbundle}});
	// nil serves anonymously.
	Auth map[string]any
}

// NotaryServer is a running Debian notary-server with in-memory storage,
// serving TLS on 127.0.0.1. Memory storage means a restart loses every
// repository: tests of restarts must publish again or expect 404s.
type NotaryServer struct {
	ca     *CA
	port   int
	server *proc.Process
	signer *proc.Process // nil with the local trust service

	mu sync.Mutex // serialises Stop and Start
}

// StartNotaryServer starts notary-server (and notary-signer when asked) and
// waits until its health endpoint answers 200.
func StartNotaryServer(opts NotaryOptions) (*NotaryServer, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("start notary-server: NotaryOptions.Dir is required")
	}
	serverBin, err := LookBinary("notary-server")
	if err != nil {
		return nil, fmt.Errorf("start notary-server: %w", err)
	}
	ca := opts.CA
	if ca == nil {
		if ca, err = NewCA(opts.Dir); err != nil {
			return nil, fmt.Errorf("start notary-server: %w", err)
		}
	}
	cert, err := ca.Issue(opts.Dir, "notary-server")
	if err != nil {
		return nil, fmt.Errorf("start notary-server: %w", err)
	}
	s := &NotaryServer{ca: ca}
	trust := map[string]any{"type": "local"}
	if opts.ECDSAServerKeys {
		signerPort, err := s.startSigner(opts.Dir, ca)
		if err != nil {
			return nil, err
		}
		trust = map[string]any{
			"type":            "remote",
			"hostname":        "127.0.0.1",
			"port":            strconv.Itoa(signerPort),
			"key_algorithm":   "ecdsa",
			"tls_ca_file":     ca.CertFile,
			"tls_client_cert": cert.CertFile,
			"tls_client_key":  cert.KeyFile,
		}
	}
	for attempt := 1; ; attempt++ {
		s.port, err = FreePort()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("start notary-server: %w", err)
		}
		cfg := map[string]any{
			"server": map[string]any{
				"http_addr":     hostPort(s.port),
				"tls_cert_file": cert.CertFile,
				"tls_key_file":  cert.KeyFile,
			},
			"trust_service": trust,
			"storage":       map[string]any{"backend": "memory"},
			"logging":       map[string]any{"level": "info"},
		}
		if opts.Auth != nil {
			cfg["auth"] = opts.Auth
		}
		cfgFile := filepath.Join(opts.Dir, "notary-server.json")
		if err := writeJSON(cfgFile, cfg); err != nil {
			s.Close()
			return nil, fmt.Errorf("start notary-server: %w", err)
		}
		s.server, err = startProcess(proc.Spec{
			Name:    "notary-server",
			Path:    serverBin,
			Args:    []string{"-config", cfgFile, "-logf", "logfmt"},
			LogFile: filepath.Join(opts.Dir, "notary-server.log"),
		}, s.healthy)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, proc.ErrAddrInUse) || attempt == portAttempts {
			s.Close()
			return nil, err
		}
	}
}

// startSigner runs notary-signer with memory storage; notary-server
// authenticates to it with its own (clientAuth-capable) certificate.
func (s *NotaryServer) startSigner(dir string, ca *CA) (int, error) {
	bin, err := LookBinary("notary-signer")
	if err != nil {
		return 0, fmt.Errorf("start notary-signer: %w", err)
	}
	cert, err := ca.Issue(dir, "notary-signer")
	if err != nil {
		return 0, fmt.Errorf("start notary-signer: %w", err)
	}
	for attempt := 1; ; attempt++ {
		grpcPort, err := FreePort()
		if err != nil {
			return 0, fmt.Errorf("start notary-signer: %w", err)
		}
		httpPort, err := FreePort()
		if err != nil {
			return 0, fmt.Errorf("start notary-signer: %w", err)
		}
		cfg := map[string]any{
			"server": map[string]any{
				"grpc_addr":      hostPort(grpcPort),
				"http_addr":      hostPort(httpPort),
				"tls_cert_file":  cert.CertFile,
				"tls_key_file":   cert.KeyFile,
				"client_ca_file": ca.CertFile,
			},
			"storage": map[string]any{"backend": "memory"},
			"logging": map[string]any{"level": "info"},
		}
		cfgFile := filepath.Join(dir, "notary-signer.json")
		if err := writeJSON(cfgFile, cfg); err != nil {
			return 0, fmt.Errorf("start notary-signer: %w", err)
		}
		spec := proc.Spec{
			Name:    "notary-signer",
			Path:    bin,
			Args:    []string{"-config", cfgFile, "-logf", "logfmt"},
			Env:     []string{"NOTARY_SIGNER_DEFAULT_ALIAS=harness", "NOTARY_SIGNER_HARNESS=harness-passphrase"},
			LogFile: filepath.Join(dir, "notary-signer.log"),
		}
		addr := hostPort(grpcPort)
		ready := func(ctx context.Context) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return c.Close()
		}
		s.signer, err = startProcess(spec, ready)
		if err == nil {
			return grpcPort, nil
		}
		if !errors.Is(err, proc.ErrAddrInUse) || attempt == portAttempts {
			return 0, err
		}
	}
}

// healthy is the readiness probe: GET /_notary_server/health over TLS.
func (s *NotaryServer) healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.ca.Pool(), MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
	return proc.CheckHTTP(ctx, client, s.URL()+"/_notary_server/health", nil)
}

// NewNotaryServer is StartNotaryServer for tests: Dir defaults to a temp dir,
// the servers stop at cleanup, and a missing binary skips (or fails under CI).
func NewNotaryServer(t testing.TB, opts NotaryOptions) *NotaryServer {
	t.Helper()
	RequireBinaries(t, "notary-server")
	if opts.ECDSAServerKeys {
		RequireBinaries(t, "notary-signer")
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := StartNotaryServer(opts)
	if err != nil {
		skipOrFatal(t, err)
	}
	t.Cleanup(s.Close)
	return s
}

// URL is the server's base URL, https://127.0.0.1:PORT.
func (s *NotaryServer) URL() string { return "https://" + s.Addr() }

// Addr is 127.0.0.1:PORT.
func (s *NotaryServer) Addr() string { return hostPort(s.port) }

// CAFile is the PEM file of the CA that issued the server certificate.
func (s *NotaryServer) CAFile() string { return s.ca.CertFile }

// CA is the authority that issued the server certificate; proxies in front
// of the server can get certificates from it too.
func (s *NotaryServer) CA() *CA { return s.ca }

// Stop kills notary-server (not notary-signer), as a crash would. The port
// stays reserved in the sense that Start binds it again.
func (s *NotaryServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	stopProcess(s.server)
}

// Start restarts a stopped notary-server on the same port. Memory storage
// starts empty: repositories must be published again.
func (s *NotaryServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server.Running() {
		return nil
	}
	return restartProcess(s.server, s.healthy)
}

// Running reports whether notary-server is up (it may still be starting).
func (s *NotaryServer) Running() bool { return s.server != nil && s.server.Running() }

// Close stops both processes. Files stay in Dir (the caller owns it).
func (s *NotaryServer) Close() {
	stopProcess(s.server)
	stopProcess(s.signer)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
