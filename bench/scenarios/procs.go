package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
	"github.com/trustgate-dev/trustgate/test/harness/dct"
)

// server is a webhook process under test: trustgate or the floor.
type server struct {
	name   string
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:PORT
	caFile string
	log    string
	exited chan struct{}
	// client keeps connections to the server across interleaved runs.
	client *http.Client
	// pprof is the net/http/pprof address of a profiling build, or "".
	pprof string
	env   []string
}

// URL is the /validate endpoint.
func (s *server) URL() string { return "https://" + s.addr + "/validate" }

// PID is the process ID, for /proc sampling.
func (s *server) PID() int { return s.cmd.Process.Pid }

// startTrustgate runs `trustgate serve` with a self-signed certificate
// whose CA is written to a file, and waits until /healthz answers.
func startTrustgate(bin, dir, name, policyFile string, pprof bool) (*server, error) {
	port, err := dct.FreePort()
	if err != nil {
		return nil, err
	}
	s := &server{
		name:   name,
		addr:   fmt.Sprintf("127.0.0.1:%d", port),
		caFile: filepath.Join(dir, name+"-ca.pem"),
		log:    filepath.Join(dir, name+".log"),
	}
	if pprof {
		pp, err := dct.FreePort()
		if err != nil {
			return nil, err
		}
		s.pprof = fmt.Sprintf("127.0.0.1:%d", pp)
		s.env = []string{"TRUSTGATE_PPROF_ADDR=" + s.pprof}
	}
	args := []string{"serve", "--policy", policyFile, "--addr", s.addr, "--ca-out", s.caFile, "--log-level", "warn"}
	if err := s.start(bin, args); err != nil {
		return nil, err
	}
	return s, nil
}

// startFloor runs the floor server on a free port.
func startFloor(bin, dir string) (*server, error) {
	s := &server{name: "floor", caFile: filepath.Join(dir, "floor-ca.pem"), log: filepath.Join(dir, "floor.log")}
	addrFile := filepath.Join(dir, "floor.addr")
	if err := s.start(bin, []string{"--addr", "127.0.0.1:0", "--ca-out", s.caFile, "--addr-out", addrFile}); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *server) start(bin string, args []string) error {
	logf, err := os.Create(s.log)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = append(os.Environ(), s.env...)
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	s.exited = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if err := s.waitReady(20 * time.Second); err != nil {
		s.stop()
		return fmt.Errorf("start %s: %w\n%s", s.name, err, tail(s.log))
	}
	if s.client, err = loadgen.NewClient(s.caFile, 80, false); err != nil {
		s.stop()
		return err
	}
	return nil
}

// waitReady polls until the CA file exists (and, for the floor, its
// address file) and GET /healthz answers over TLS.
func (s *server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for ; time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-s.exited:
			return errors.New("exited before it was ready")
		default:
		}
		if s.addr == "" {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(s.caFile), "floor.addr"))
			if err != nil {
				continue
			}
			s.addr = strings.TrimSpace(string(b))
		}
		pem, err := os.ReadFile(s.caFile)
		if err != nil {
			continue
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			continue
		}
		if healthy(s.addr, pool) {
			return nil
		}
	}
	return fmt.Errorf("not ready after %s", limit)
}

func healthy(addr string, pool *x509.CertPool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	return resp.StatusCode == http.StatusOK
}

// stop sends SIGTERM, then SIGKILL after 5 s.
func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
