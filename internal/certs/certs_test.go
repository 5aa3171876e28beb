package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func parseCert(t *testing.T, pemBytes []byte) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("not a single PEM certificate: %q", pemBytes)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateAndWrite(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	b, err := Generate(Options{
		Service: "trustgate", Namespace: "trustgate-system",
		DNSNames: []string{"webhook.example"}, IPs: []string{"127.0.0.1"},
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tls.key mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("dir has %d entries, want exactly ca.crt, tls.crt, tls.key (no temp files)", len(entries))
	}

	ca := parseCert(t, read(CAFile))
	leaf := parseCert(t, read(CertFile))
	if !ca.IsCA || leaf.IsCA {
		t.Errorf("IsCA: ca=%v leaf=%v", ca.IsCA, leaf.IsCA)
	}
	for _, c := range []*x509.Certificate{ca, leaf} {
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s key is %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	wantDNS := []string{"trustgate", "trustgate.trustgate-system", "trustgate.trustgate-system.svc", "trustgate.trustgate-system.svc.cluster.local", "webhook.example"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNS SANs = %v, want %v", leaf.DNSNames, wantDNS)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("IP SANs = %v", leaf.IPAddresses)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, host := range append(wantDNS, "127.0.0.1") {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, CurrentTime: now.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	for _, bad := range []struct {
		host string
		at   time.Time
	}{
		{"other.trustgate-system.svc", now.Add(time.Hour)},
		{"trustgate", now.Add(DefaultValidity + time.Hour)},
	} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: bad.host, Roots: pool, CurrentTime: bad.at}); err == nil {
			t.Errorf("verify for %s at %v succeeded, want failure", bad.host, bad.at)
		}
	}
	// The key matches the certificate.
	if _, err := tls.X509KeyPair(read(CertFile), read(KeyFile)); err != nil {
		t.Errorf("tls.crt and tls.key do not pair: %v", err)
	}
	// A leaf from another generation does not verify against this CA.
	other, _ := Generate(Options{Service: "trustgate", Namespace: "trustgate-system"})
	if _, err := parseCert(t, other.Cert).Verify(x509.VerifyOptions{DNSName: "trustgate", Roots: pool}); err == nil {
		t.Error("a certificate from another CA verified")
	}
}

func TestGenerateRejects(t *testing.T) {
	for _, o := range []Options{
		{}, {Service: "a"}, {Namespace: "b"}, {Service: "a.b", Namespace: "c"},
		{Service: "a", Namespace: "b", IPs: []string{"not-an-ip"}},
		{Service: "a", Namespace: "b", DNSNames: []string{"10.0.0.1"}},
	} {
		if _, err := Generate(o); err == nil {
			t.Errorf("Generate(%+v) succeeded", o)
		}
	}
	if _, _, err := SelfSigned(nil); err == nil {
		t.Error("SelfSigned(nil) succeeded")
	}
}

func TestWriteGeneratesFiles(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, Options{Service: "tg", Namespace: "ns"}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, CAFile))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "tg.ns.svc", Roots: pool}); err != nil {
		t.Errorf("written certificate does not verify for tg.ns.svc: %v", err)
	}
	if err := Write(dir, Options{}); err == nil {
		t.Error("Write with empty options succeeded")
	}
}

func TestSelfSignedServesTLS(t *testing.T) {
	caPEM, cert, err := SelfSigned([]string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA PEM does not parse")
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake trusting only the returned CA: %v", err)
	}
	conn.Close()
}

func TestCAIssuesSeveralLeaves(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, tc := range []struct {
		name   string
		usages []x509.ExtKeyUsage
	}{
		{"server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"both", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	} {
		certPEM, keyPEM, err := ca.Issue(tc.name, []string{"127.0.0.1", "localhost", "localhost"}, tc.usages...)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(leaf.DNSNames) != 1 || len(leaf.IPAddresses) != 1 {
			t.Fatalf("%s: SANs %v %v", tc.name, leaf.DNSNames, leaf.IPAddresses)
		}
		for _, u := range tc.usages {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Fatalf("%s: usage %v: %v", tc.name, u, err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err == nil {
			t.Fatalf("%s: verifies for code signing", tc.name)
		}
	}
}
