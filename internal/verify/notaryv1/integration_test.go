package notaryv1

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// TestRealNotaryServer signs with the real notary CLI against Debian's
// notary-server and verifies the result: the cross-check that trustgate's
// canonical JSON, key IDs and signature formats match Notary's own, which
// the in-memory fake (sharing trustgate's encoder) cannot provide.
func TestRealNotaryServer(t *testing.T) {
	for _, bin := range []string{"notary-server", "notary"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "" {
				t.Skipf("%s not installed (apt-get install notary)", bin)
			}
			t.Fatalf("%s not installed and CI is set: %v", bin, err)
		}
	}
	if testing.Short() {
		t.Skip("starts notary-server")
	}
	dir := t.TempDir()
	caFile := writeTestPKI(t, dir)
	url := startNotaryServer(t, dir, caFile)

	const gun = "127.0.0.1:5000/demo/app"
	trust := filepath.Join(dir, "trust")
	notaryIn := func(stdin string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "notary", append([]string{"-s", url, "-d", trust, "--tlscacert", caFile}, args...)...)
		cmd.Env = append(os.Environ(), "NOTARY_ROOT_PASSPHRASE=pass", "NOTARY_TARGETS_PASSPHRASE=pass",
			"NOTARY_SNAPSHOT_PASSPHRASE=pass", "NOTARY_DELEGATION_PASSPHRASE=pass")
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("notary %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	notary := func(args ...string) string {
		t.Helper()
		return notaryIn("", args...)
	}
	hexOf := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}

	notary("init", gun)
	notary("key", "rotate", gun, "snapshot", "-r")
	notary("addhash", gun, "v1", "123", "--sha256", hexOf("one"))
	notary("publish", gun)

	// A releases delegation, as `docker trust signer add` makes it.
	keyBase := filepath.Join(dir, "releases")
	notary("key", "generate", "ecdsa", "--role", "releases", "-o", keyBase)
	pubPEM, err := os.ReadFile(keyBase + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pubPEM)
	keyID := tuf.Key{Type: tuf.KeyTypeECDSA, Value: tuf.KeyVal{Public: block.Bytes}}.ID()
	priv, err := os.ReadFile(keyBase + "-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trust, "private", keyID+".key"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	notary("delegation", "add", gun, "targets/releases", keyBase+".pem", "--all-paths")
	notary("addhash", gun, "v2", "321", "--sha256", hexOf("two"), "-r", "targets/releases")
	notary("publish", gun)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keys, err := FetchRootKeys(ctx, url, gun, caFile)
	if err != nil {
		t.Fatalf("FetchRootKeys: %v", err)
	}
	v, err := New("real", Config{Server: url, CAFile: caFile, RootKeys: keys}, verify.Deps{RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref, digest, signer string
	}{
		{gun + ":v1", "sha256:" + hexOf("one"), "targets"},
		{gun + ":v2", "sha256:" + hexOf("two"), "targets/releases"},
	} {
		res, err := verifyRef(t, v, tc.ref)
		if err != nil {
			t.Fatalf("Verify(%s): %v", tc.ref, err)
		}
		if res.Digest != tc.digest || len(res.Signers) != 1 || res.Signers[0] != tc.signer {
			t.Errorf("Verify(%s) = %s by %v, want %s by %s", tc.ref, res.Digest, res.Signers, tc.digest, tc.signer)
		}
	}
	_, err = verifyRef(t, v, gun+":v3")
	wantErr(t, err, verify.ErrUntrusted, "tag v3 of "+gun+" is not signed in targets/releases or targets")

	// Root rotation as the notary CLI does it (new root signed by old and
	// new keys): accepted under trust on first use, refused by the pin.
	tofu, err := New("tofu", Config{Server: url, CAFile: caFile, TrustOnFirstUse: true}, verify.Deps{RequestTimeout: 5 * time.Second}, WithFreshness(0))
	if err != nil {
		t.Fatal(err)
	}
	pin, err := New("pin", Config{Server: url, CAFile: caFile, RootKeys: keys}, verify.Deps{RequestTimeout: 5 * time.Second}, WithFreshness(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []*Verifier{tofu, pin} {
		if _, err := verifyRef(t, v, gun+":v1"); err != nil {
			t.Fatalf("%s: Verify before rotation: %v", v.Name(), err)
		}
	}
	// The CLI asks for confirmation before rotating a root key.
	if out := notaryIn("yes\n", "key", "rotate", gun, "root"); !strings.Contains(out, "Successfully rotated root key") {
		t.Fatalf("notary key rotate root did not rotate:\n%s", out)
	}
	notary("addhash", gun, "v4", "44", "--sha256", hexOf("four"))
	notary("publish", gun)
	if res, err := verifyRef(t, tofu, gun+":v4"); err != nil || res.Digest != "sha256:"+hexOf("four") {
		t.Fatalf("tofu: Verify after root rotation = %v, %v; want sha256:%s", res, err, hexOf("four"))
	}
	_, err = verifyRef(t, pin, gun+":v4")
	wantErr(t, err, verify.ErrUntrusted, "not signed by a key in rootKeys")
}

// writeTestPKI writes a throwaway CA and a server certificate for 127.0.0.1.
func writeTestPKI(t *testing.T, dir string) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trustgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("server.crt", "CERTIFICATE", srvDER)
	write("server.key", "EC PRIVATE KEY", keyDER)
	return write("ca.crt", "CERTIFICATE", caDER)
}

// startNotaryServer runs notary-server with in-memory storage on a free
// loopback port and waits until it is healthy.
func startNotaryServer(t *testing.T, dir, caFile string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`{"server":{"http_addr":%q,"tls_cert_file":%q,"tls_key_file":%q},"trust_service":{"type":"local"},"storage":{"backend":"memory"},"logging":{"level":"error"}}`,
		addr, filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	cfgFile := filepath.Join(dir, "server.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, "notary-server", "-config", cfgFile)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	pem, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + addr
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(url + "/_notary_server/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
	}
	t.Fatalf("notary-server did not become healthy on %s:\n%s", addr, logs.String())
	return ""
}
