package dct

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSignFlow checks the harness against the notary CLI itself: what it
// signs must come back from `notary list`, in the role it was signed into.
func TestSignFlow(t *testing.T) {
	for _, ecdsa := range []bool{false, true} {
		name := "local-ed25519"
		if ecdsa {
			name = "signer-ecdsa"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := NewNotaryServer(t, NotaryOptions{ECDSAServerKeys: ecdsa})
			reg := NewRegistry(t, RegistryOptions{})
			sg := NewSigner(t, srv)
			gun := reg.Repo("demo/app")

			digest, size, err := reg.PushRandomImage("demo/app", "v1")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(digest, "sha256:") || size <= 0 {
				t.Fatalf("PushRandomImage = %q, %d; want sha256 digest and positive size", digest, size)
			}
			if err := sg.Init(gun); err != nil {
				t.Fatal(err)
			}
			if err := sg.Sign(gun, "v1", digest, size); err != nil {
				t.Fatal(err)
			}
			if err := sg.AddSigner(gun, "alice"); err != nil {
				t.Fatal(err)
			}
			d2, s2, err := reg.PushRandomImage("demo/app", "v2")
			if err != nil {
				t.Fatal(err)
			}
			if err := sg.Sign(gun, "v2", d2, s2, "targets/releases", "targets/alice"); err != nil {
				t.Fatal(err)
			}

			got, err := sg.List(gun)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]Target{
				"v1": {Name: "v1", Digest: digest, Size: size, Role: "targets"},
				"v2": {Name: "v2", Digest: d2, Size: s2, Role: "targets/releases"},
			}
			if len(got) != len(want) {
				t.Fatalf("notary list = %+v, want %d targets", got, len(want))
			}
			for _, g := range got {
				if g != want[g.Name] {
					t.Errorf("notary list target %s = %+v, want %+v", g.Name, g, want[g.Name])
				}
			}
			alice, err := sg.List(gun, "targets/alice")
			if err != nil {
				t.Fatal(err)
			}
			if len(alice) != 1 || alice[0].Digest != d2 {
				t.Errorf("notary list -r targets/alice = %+v, want v2 %s", alice, d2)
			}

			// The computed delegation key ID must be the one in targets.json.
			key, err := sg.DelegationKey("alice")
			if err != nil {
				t.Fatal(err)
			}
			raw, err := sg.FetchMetadata(gun, "targets")
			if err != nil {
				t.Fatal(err)
			}
			var targets struct {
				Signed struct {
					Delegations struct {
						Keys map[string]json.RawMessage `json:"keys"`
					} `json:"delegations"`
				} `json:"signed"`
			}
			if err := json.Unmarshal(raw, &targets); err != nil {
				t.Fatal(err)
			}
			if _, ok := targets.Signed.Delegations.Keys[key.KeyID]; !ok {
				t.Errorf("delegation key %s not in targets.json keys %v", key.KeyID, keysOf(targets.Signed.Delegations.Keys))
			}

			certPEM, keyID, err := sg.RootKeyPEM(gun)
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(certPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != gun || keyID == "" {
				t.Errorf("root cert CN = %q (key %q), want %q", cert.Subject.CommonName, keyID, gun)
			}

			wantKeyType := "ed25519"
			if ecdsa {
				wantKeyType = "ecdsa"
			}
			rootRaw, err := sg.FetchMetadata(gun, "root")
			if err != nil {
				t.Fatal(err)
			}
			var root struct {
				Signed struct {
					Keys map[string]struct {
						KeyType string `json:"keytype"`
					} `json:"keys"`
					Roles map[string]struct {
						KeyIDs []string `json:"keyids"`
					} `json:"roles"`
				} `json:"signed"`
			}
			if err := json.Unmarshal(rootRaw, &root); err != nil {
				t.Fatal(err)
			}
			for _, role := range []string{"timestamp", "snapshot"} {
				ids := root.Signed.Roles[role].KeyIDs
				if len(ids) != 1 {
					t.Fatalf("root.json role %s has keys %v, want one", role, ids)
				}
				if got := root.Signed.Keys[ids[0]].KeyType; got != wantKeyType {
					t.Errorf("%s key type = %q, want %q", role, got, wantKeyType)
				}
			}

			if err := sg.RemoveTarget(gun, "v1"); err != nil {
				t.Fatal(err)
			}
			got, err = sg.List(gun)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Name != "v2" {
				t.Errorf("after RemoveTarget v1: notary list = %+v, want only v2", got)
			}
		})
	}
}

func keysOf(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestNotaryRestart checks Stop/Start on the same port, that memory storage
// forgets repositories, and that Backup/Restore bring one back unchanged.
func TestNotaryRestart(t *testing.T) {
	t.Parallel()
	srv := NewNotaryServer(t, NotaryOptions{ECDSAServerKeys: true})
	sg := NewSigner(t, srv)
	gun := "127.0.0.1:1/restart/app"
	digest := "sha256:" + strings.Repeat("ab", 32)
	if err := sg.Init(gun); err != nil {
		t.Fatal(err)
	}
	if err := sg.Sign(gun, "v1", digest, 100); err != nil {
		t.Fatal(err)
	}
	backup, err := sg.Backup(gun)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL()
	srv.Stop()
	if srv.Running() {
		t.Fatal("Running() = true after Stop")
	}
	if _, err := sg.FetchMetadata(gun, "root"); err == nil {
		t.Fatal("fetch from a stopped server succeeded")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if srv.URL() != url {
		t.Errorf("URL after restart = %s, want %s", srv.URL(), url)
	}
	if _, err := sg.FetchMetadata(gun, "root"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("fetch after restart: err = %v, want HTTP 404 (memory storage is empty)", err)
	}

	if err := sg.Restore(backup); err != nil {
		t.Fatal(err)
	}
	root, err := sg.FetchMetadata(gun, "root")
	if err != nil {
		t.Fatal(err)
	}
	if string(root) != string(backup.Root) {
		t.Error("root.json after Restore differs from the one before the restart")
	}
	v, err := sg.Versions(gun)
	if err != nil {
		t.Fatal(err)
	}
	for role, want := range backup.Versions {
		if v[role] < want {
			t.Errorf("%s version after Restore = %d, want >= %d", role, v[role], want)
		}
	}
	got, err := sg.List(gun)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Digest != digest {
		t.Errorf("notary list after Restore = %+v, want v1 %s", got, digest)
	}
}

func TestProxies(t *testing.T) {
	t.Parallel()
	srv := NewNotaryServer(t, NotaryOptions{})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CA().Pool()}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(base string) error {
		resp, err := client.Get(base + "/_notary_server/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET health via %s: HTTP %d", base, resp.StatusCode)
		}
		return nil
	}

	t.Run("counter", func(t *testing.T) {
		rc := NewRequestCounter(t, srv)
		for i := 0; i < 3; i++ {
			if err := get(rc.URL()); err != nil {
				t.Fatal(err)
			}
		}
		if got := rc.Count(); got != 3 {
			t.Errorf("Count() = %d, want 3", got)
		}
		if got := rc.Paths()["/_notary_server/health"]; got != 3 {
			t.Errorf("Paths()[health] = %d, want 3", got)
		}
		rc.Reset()
		if got := rc.Count(); got != 0 {
			t.Errorf("Count() after Reset = %d, want 0", got)
		}
	})

	t.Run("latency", func(t *testing.T) {
		p := NewSlowProxy(t, srv.Addr())
		p.SetLatency(100 * time.Millisecond)
		start := time.Now()
		if err := get(p.URL()); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Errorf("request through 100ms proxy took %s, want >= 200ms (handshake + request)", el)
		}
		if p.Accepted() < 1 || p.Forwarded() < 1 {
			t.Errorf("Accepted=%d Forwarded=%d, want >= 1", p.Accepted(), p.Forwarded())
		}
	})

	t.Run("blackhole", func(t *testing.T) {
		p := NewSlowProxy(t, srv.Addr())
		p.SetBlackhole(true)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.CA().Pool()}}, Timeout: 300 * time.Millisecond}
		start := time.Now()
		_, err := c.Get(p.URL() + "/_notary_server/health")
		var ne net.Error
		if err == nil || !errorsAs(err, &ne) || !ne.Timeout() {
			t.Errorf("GET through black hole: err = %v, want a timeout", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("black-holed request took %s", el)
		}
		if p.Forwarded() != 0 {
			t.Errorf("Forwarded = %d, want 0", p.Forwarded())
		}
	})
}

func errorsAs(err error, target *net.Error) bool { return errors.As(err, target) }

// TestRegistryResolve checks that pushes are served back as reported and
// that a re-pushed tag moves to the new manifest.
func TestRegistryResolve(t *testing.T) {
	t.Parallel()
	reg := NewRegistry(t, RegistryOptions{})
	d1, s1, err := reg.PushRandomImage("demo/move", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if d, s, err := reg.Resolve("demo/move", "v1"); err != nil || d != d1 || s != s1 {
		t.Fatalf("Resolve = %s, %d, %v; want %s, %d", d, s, err, d1, s1)
	}
	d2, _, err := reg.PushRandomImage("demo/move", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if d2 == d1 {
		t.Fatalf("two random images share digest %s", d1)
	}
	if d, _, err := reg.Resolve("demo/move", "v1"); err != nil || d != d2 {
		t.Errorf("Resolve after re-push = %s, %v; want %s", d, err, d2)
	}
	if _, _, err := reg.Resolve("demo/move", "missing"); err == nil {
		t.Error("Resolve of a missing tag succeeded")
	}
}
