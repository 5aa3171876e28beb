package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/certs"
)

// env is a running server plus a client that trusts it.
type env struct {
	srv    *Server
	client *http.Client
	base   string
	cancel context.CancelFunc
	done   chan error
}

func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name+" "+r.Proto)
	})
}

// start runs a server with opts (Addr, certificate and handlers defaulted)
// and returns a client trusting its self-signed CA.
func start(t *testing.T, opts Options) *env {
	t.Helper()
	caPEM, cert, err := certs.SelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	opts.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	if opts.Validate == nil {
		opts.Validate = echo("validate")
	}
	if opts.Mutate == nil {
		opts.Mutate = echo("mutate")
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{
		srv:    srv,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}},
		base:   "https://" + srv.Addr().String(),
		cancel: cancel,
		done:   make(chan error, 1),
	}
	go func() { e.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	waitReady(t, e.client, e.base+"/healthz")
	return e
}

func waitReady(t *testing.T, c *http.Client, url string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

func do(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRoutes(t *testing.T) {
	var ready atomic.Bool
	e := start(t, Options{
		Ready:   ready.Load,
		Metrics: echo("metrics"),
	})
	tests := []struct {
		method, path string
		wantCode     int
		wantBody     string
	}{
		{"POST", "/validate", 200, "validate HTTP/2.0"},
		{"POST", "/mutate", 200, "mutate HTTP/2.0"},
		{"GET", "/validate", 405, ""},
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/readyz", 503, "not ready"},
		{"GET", "/metrics", 200, "metrics"},
		{"GET", "/nope", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, body := do(t, e.client, tc.method, e.base+tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	ready.Store(true)
	if code, _ := do(t, e.client, "GET", e.base+"/readyz"); code != 200 {
		t.Errorf("/readyz after Ready = %d, want 200", code)
	}
}

func TestTLSMinimumVersion(t *testing.T) {
	e := start(t, Options{})
	_, err := tls.Dial("tcp", e.srv.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if err == nil {
		t.Fatal("TLS 1.1 handshake succeeded, want refusal")
	}
	conn, err := tls.Dial("tcp", e.srv.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 handshake: %v", err)
	}
	conn.Close()
	// Plain HTTP on the TLS port gets no answer from the admission handlers.
	resp, err := http.Post("http://"+e.srv.Addr().String()+"/validate", "application/json", strings.NewReader("{}"))
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "validate") {
			t.Error("plain HTTP reached the validate handler")
		}
	}
}

// clientCA makes a CA and a client certificate signed by it, writing the CA
// PEM to a file.
func clientCA(t *testing.T, dir, name string) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, name+"-ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, good := clientCA(t, dir, "apiserver")
	_, stranger := clientCA(t, dir, "stranger")
	e := start(t, Options{ClientCAFile: caFile})
	base := e.client.Transport.(*http.Transport).TLSClientConfig

	withCert := func(c *tls.Certificate) *http.Client {
		cfg := base.Clone()
		if c != nil {
			cfg.Certificates = []tls.Certificate{*c}
		}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	}

	if code, body := do(t, withCert(&good), "POST", e.base+"/validate"); code != 200 || !strings.Contains(body, "validate") {
		t.Errorf("verified client: %d %q, want 200", code, body)
	}
	if code, _ := do(t, withCert(nil), "POST", e.base+"/mutate"); code != http.StatusUnauthorized {
		t.Errorf("no client certificate on /mutate: %d, want 401", code)
	}
	if code, _ := do(t, withCert(nil), "GET", e.base+"/healthz"); code != 200 {
		t.Errorf("no client certificate on /healthz: %d, want 200 (kubelet probes have none)", code)
	}
	// Go's client withholds a certificate the server's CA list does not
	// name, so force it: a presented, unverifiable certificate must fail
	// the handshake.
	forced := withCert(nil)
	forced.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &stranger, nil
	}
	req, _ := http.NewRequest("POST", e.base+"/validate", strings.NewReader("{}"))
	if resp, err := forced.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("client certificate from another CA got HTTP %d, want a failed handshake", resp.StatusCode)
	}
	if code, _ := do(t, withCert(&stranger), "POST", e.base+"/validate"); code != http.StatusUnauthorized {
		t.Errorf("certificate from another CA (withheld by the client): %d, want 401", code)
	}
}

func TestNewRejects(t *testing.T) {
	cert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o644)
	for name, o := range map[string]Options{
		"no certificate":                  {Validate: echo("v"), Mutate: echo("m")},
		"no handlers":                     {GetCertificate: cert},
		"missing client CA":               {GetCertificate: cert, Validate: echo("v"), Mutate: echo("m"), ClientCAFile: filepath.Join(dir, "nope")},
		"client CA not PEM":               {GetCertificate: cert, Validate: echo("v"), Mutate: echo("m"), ClientCAFile: notPEM},
		"metrics address without handler": {GetCertificate: cert, Validate: echo("v"), Mutate: echo("m"), MetricsAddr: "127.0.0.1:0"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestSeparateMetricsAddress(t *testing.T) {
	e := start(t, Options{Metrics: echo("metrics"), MetricsAddr: "127.0.0.1:0"})
	plain := "http://" + e.srv.MetricsAddr().String()
	c := &http.Client{Timeout: 5 * time.Second}
	if code, body := do(t, c, "GET", plain+"/metrics"); code != 200 || body != "metrics HTTP/1.1" {
		t.Errorf("plain /metrics: %d %q", code, body)
	}
	for _, path := range []string{"/validate", "/mutate", "/healthz"} {
		if code, _ := do(t, c, "POST", plain+path); code != 404 && code != 405 {
			t.Errorf("plain %s: %d, want not served", path, code)
		}
	}
	if code, _ := do(t, e.client, "GET", e.base+"/metrics"); code != 200 {
		t.Errorf("TLS /metrics with a metrics address too: %d, want 200", code)
	}
}

func TestGracefulShutdownDrainsInFlight(t *testing.T) {
	started := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(700 * time.Millisecond)
		_, _ = io.WriteString(w, "slow answer")
	})
	e := start(t, Options{Validate: slow, ShutdownTimeout: 5 * time.Second})

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.base+"/validate", strings.NewReader("{}"))
		resp, err := e.client.Do(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-started
	e.cancel()

	r := <-res
	if r.err != nil || r.code != 200 || r.body != "slow answer" {
		t.Fatalf("in-flight request: %+v, want 200 slow answer", r)
	}
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("Run returned %v after a clean drain", err)
		}
		e.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after draining")
	}
	fresh := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if _, err := fresh.Get(e.base + "/healthz"); err == nil {
		t.Error("new connection accepted after shutdown")
	}
}

func TestShutdownIsBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	started := make(chan struct{})
	stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-block
	})
	e := start(t, Options{Validate: stuck, ShutdownTimeout: 300 * time.Millisecond})
	go func() {
		req, _ := http.NewRequest("POST", e.base+"/validate", strings.NewReader("{}"))
		if resp, err := e.client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	begin := time.Now()
	e.cancel()
	select {
	case err := <-e.done:
		if took := time.Since(begin); took > 2*time.Second {
			t.Errorf("shutdown took %v with a 300ms bound", took)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run returned %v, want a deadline error", err)
		}
		e.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
