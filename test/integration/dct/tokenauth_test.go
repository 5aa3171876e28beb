package dct

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	harness "github.com/trustgate-dev/trustgate/test/harness/dct"
)

// tokenIssuer is a Docker registry token server for notary-server's token
// auth: Basic credentials in, an ES256 JWT with the asked repository's
// access out, its signing certificate in x5c and in notary-server's
// rootcertbundle.
type tokenIssuer struct {
	key      *ecdsa.PrivateKey
	certDER  []byte
	user     string
	pass     string
	requests atomic.Int64
	granted  atomic.Int64
}

func newTokenIssuer(t *testing.T, dir string) (*tokenIssuer, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "trustgate test token issuer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "token-root.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tokenIssuer{key: key, certDER: der, user: "alice", pass: "s3cret"}, bundle
}

func (ti *tokenIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ti.requests.Add(1)
	if u, p, ok := r.BasicAuth(); !ok || u != ti.user || p != ti.pass {
		http.Error(w, "bad credentials", http.StatusUnauthorized)
		return
	}
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	var grants []access
	for _, s := range r.URL.Query()["scope"] {
		parts := strings.Split(s, ":")
		if len(parts) < 3 || parts[0] != "repository" {
			continue
		}
		// The name may hold a registry's host:port.
		name := strings.Join(parts[1:len(parts)-1], ":")
		grants = append(grants, access{Type: "repository", Name: name, Actions: []string{"pull"}})
	}
	now := time.Now()
	header, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ti.certDER)}})
	claims, _ := json.Marshal(map[string]any{
		"iss": "trustgate-test", "sub": u(r), "aud": "notary-server",
		"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(big.NewInt(now.UnixNano()).Bytes()), "access": grants,
	})
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, ti.key, sum[:])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sig := make([]byte, 64)
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	ti.granted.Add(1)
	_ = json.NewEncoder(w).Encode(map[string]any{"token": signing + "." + base64.RawURLEncoding.EncodeToString(sig), "expires_in": 300})
}

func u(r *http.Request) string { user, _, _ := r.BasicAuth(); return user }

// TestTokenAuthRealNotaryServer runs the notaryv1 verifier's credential
// stack (go-containerregistry's token flow) against the real notary-server
// with token auth, whose /v2/ and metadata answer 401 with a Bearer
// challenge naming a token realm on another host: with the right
// credentials the server accepts the token and answers (404: no trust data,
// a definite "not signed"); with a wrong password or none, the answer is
// "access denied", a failure to complete and not a verdict.
func TestTokenAuthRealNotaryServer(t *testing.T) {
	harness.RequireBinaries(t, "notary-server")
	dir := t.TempDir()
	ca, err := harness.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	ti, bundle := newTokenIssuer(t, dir)
	cert, err := ca.IssueTLS("token-issuer")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: ti, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	// The realm is named by host name: go-containerregistry refuses a realm
	// on another host given as a loopback or private IP literal.
	realm := "https://localhost:" + strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:") + "/token"

	srv := harness.NewNotaryServer(t, harness.NotaryOptions{Dir: dir, CA: ca, Auth: map[string]any{
		"type": "token",
		"options": map[string]any{
			"realm": realm, "service": "notary-server", "issuer": "trustgate-test", "rootcertbundle": bundle,
		},
	}})

	// What a registry client's ping sees.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get(srv.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, realm) {
		t.Fatalf("GET /v2/: %s, challenge %q; want 401 with a Bearer challenge naming %s", resp.Status, ch, realm)
	}

	env := map[string]string{"NOTARY_USER": ti.user, "NOTARY_PASS": ti.pass, "WRONG": "nope"}
	newVerifier := func(creds *credentials.Config) *notaryv1.Verifier {
		t.Helper()
		v, err := notaryv1.New("token-auth", notaryv1.Config{
			Server: srv.URL(), CAFile: srv.CAFile(), TrustOnFirstUse: true, Credentials: creds,
		}, verify.Deps{}, notaryv1.WithGetenv(func(k string) string { return env[k] }))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ref := imageref.MustParse("registry.example.com/token/app:v1")

	t.Run("right credentials", func(t *testing.T) {
		before := ti.granted.Load()
		_, err := newVerifier(&credentials.Config{UsernameEnv: "NOTARY_USER", PasswordEnv: "NOTARY_PASS"}).
			Verify(context.Background(), verify.Subject{Ref: ref})
		if !errors.Is(err, verify.ErrUntrusted) || errors.Is(err, verify.ErrUnavailable) {
			t.Fatalf("Verify = %v; want not trusted (no trust data), the token accepted", err)
		}
		t.Logf("Verify: %v", err)
		if ti.granted.Load() == before {
			t.Error("no token was issued")
		}
	})
	for _, tc := range []struct {
		name  string
		creds *credentials.Config
	}{
		{"wrong password", &credentials.Config{UsernameEnv: "NOTARY_USER", PasswordEnv: "WRONG"}},
		{"anonymous", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(tc.creds).Verify(context.Background(), verify.Subject{Ref: ref})
			if !errors.Is(err, verify.ErrUnavailable) || !strings.Contains(err.Error(), "access denied") {
				t.Fatalf("Verify = %v; want unavailable, access denied", err)
			}
		})
	}
}
