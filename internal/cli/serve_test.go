package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's log writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServe runs `trustgate serve` in-process: self-signed TLS with the CA
// written out, a decision over HTTPS, policy reload on change, a broken
// policy refused with the old one kept, and a clean exit when stopped.
func TestServe(t *testing.T) {
	f := newFixture(t, "enforce")
	addr := freeAddr(t)
	caFile := filepath.Join(f.dir, "ca.crt")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan int)
	go func() {
		done <- executeContext(ctx, NewRoot(), []string{"serve", "--policy", f.policy, "--addr", addr, "--ca-out", caFile, "--reload-period", "50ms"}, io.Discard, &logs)
	}()

	var client *http.Client
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pem, err := os.ReadFile(caFile); err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
				if resp, err := client.Get("https://" + addr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become ready; logs:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	admit := func() (bool, string) {
		t.Helper()
		// As /mutate pins it for /validate.
		return askPod(t, client, "https://"+addr+"/validate", "reg.test/team/app:v1@"+signedDigest)
	}
	if ok, msg := admit(); !ok {
		t.Fatalf("signed image denied: %s", msg)
	}

	// A new policy that denies the team's images takes effect without a restart.
	old, _ := os.ReadFile(f.policy)
	deny := strings.Replace(string(old), "rules:\n", "rules:\n  - {name: freeze, images: [\"reg.test/team/*\"], action: deny}\n", 1)
	if err := os.WriteFile(f.policy, []byte(deny), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &logs, func() bool { ok, msg := admit(); return !ok && strings.Contains(msg, "rule freeze") })

	// A broken policy is refused and the one in force stays.
	if err := os.WriteFile(f.policy, []byte(deny+"bogus: field\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &logs, func() bool { return strings.Contains(logs.String(), "policy reload refused") })
	if ok, msg := admit(); ok || !strings.Contains(msg, "rule freeze") {
		t.Fatalf("after a broken policy: allowed=%v %q", ok, msg)
	}
	resp, err := client.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`trustgate_policy_reloads_total{result="error"} 1`, `trustgate_policy_reloads_total{result="ok"} 1`, `trustgate_image_decisions_total{decision="deny",rule="freeze"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d; logs:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

func waitFor(t *testing.T, logs *syncBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached; logs:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
