package certwatch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/certs"
)

// writePair generates a serving certificate for 127.0.0.1 into dir and
// returns the CA pool that trusts it.
func writePair(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	b, err := certs.Generate(certs.Options{Service: "tg", Namespace: "ns", DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Write(dir); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CA)
	return pool
}

// handshake dials a TLS listener and returns the certificate the server sent.
func handshake(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile)
	pool1 := writePair(t, dir)

	w, err := New(certFile, keyFile, WithInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: w.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()

	first := handshake(t, ln.Addr().String())
	if _, err := first.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool1}); err != nil {
		t.Fatalf("first certificate does not verify against its CA: %v", err)
	}

	// A broken rotation (key replaced, cert not yet) keeps the old certificate.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := handshake(t, ln.Addr().String()); !got.Equal(first) {
		t.Fatal("certificate changed after a broken rotation")
	}

	pool2 := writePair(t, dir)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := handshake(t, ln.Addr().String())
		if !got.Equal(first) {
			if _, err := got.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool2}); err != nil {
				t.Fatalf("rotated certificate does not verify against the new CA: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new certificate not served within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start returned %v, want nil after cancel", err)
		}
	case <-time.After(time.Second):
		t.Error("Start did not return after cancel")
	}
}

func TestNewFailsEagerly(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir)
	good := filepath.Join(dir, certs.CertFile)
	key := filepath.Join(dir, certs.KeyFile)
	bad := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(bad, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.crt")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", maxFileBytes+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, cert, key, want string }{
		{"missing cert", filepath.Join(dir, "nope.crt"), key, "no such file"},
		{"missing key", good, filepath.Join(dir, "nope.key"), "no such file"},
		{"bad cert", bad, key, "load key pair"},
		{"cert and key swapped", key, good, "load key pair"},
		{"oversized", big, key, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(good, key, WithInterval(0)); err == nil {
		t.Error("zero interval accepted")
	}
}

// TestSecretVolumeSwap rotates the way the kubelet updates a mounted Secret:
// the files are symlinks through "..data", which is atomically re-pointed to
// a new timestamped folder.
func TestSecretVolumeSwap(t *testing.T) {
	mount := t.TempDir()
	v1 := filepath.Join(mount, "..2026_11_29_10_00_00.1")
	v2 := filepath.Join(mount, "..2026_11_29_11_00_00.2")
	writePair(t, v1)
	writePair(t, v2)
	if err := os.Symlink(filepath.Base(v1), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certs.CertFile, certs.KeyFile} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(mount, f)); err != nil {
			t.Fatal(err)
		}
	}
	w, err := New(filepath.Join(mount, certs.CertFile), filepath.Join(mount, certs.KeyFile), WithInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := w.GetCertificate(nil)

	tmp := filepath.Join(mount, "..data_tmp")
	if err := os.Symlink(filepath.Base(v2), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	changed, err := w.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload after swap = %v, %v; want changed", changed, err)
	}
	after, _ := w.GetCertificate(nil)
	if string(after.Certificate[0]) == string(before.Certificate[0]) {
		t.Error("certificate unchanged after the ..data swap")
	}
	if changed, err := w.Reload(); changed || err != nil {
		t.Errorf("second Reload = %v, %v; want no change", changed, err)
	}
}
