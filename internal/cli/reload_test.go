package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
)

// TestServeReloadKeepsVerifiers runs `trustgate serve` in-process through
// policy and key-file changes:
//   - the serve logger reaches verifiers (a first-use root is logged);
//   - a reload that changes only a rule keeps the verifiers: the first-use
//     root is not learned again and no metadata is fetched again;
//   - a changed rootKeys file takes effect like a changed policy, and only
//     the verifier that reads it is rebuilt;
//   - a broken key file is refused and the policy in force stays;
//   - a refused policy's missing key file is watched: creating it reloads;
//   - a changed verifier block rebuilds that verifier (its root is learned
//     again).
func TestServeReloadKeepsVerifiers(t *testing.T) {
	srv := notaryfake.New(t)
	pinnedRepo := srv.NewRepo("reg.test/team/app")
	pinnedRepo.AddTarget("targets", "v1", signedDigest, 500)
	pinnedRepo.Publish()
	tofuRepo := srv.NewRepo("reg.test/team/tofu")
	tofuRepo.AddTarget("targets", "v1", otherDigest, 500)
	tofuRepo.Publish()
	stranger := srv.NewRepo("reg.test/elsewhere/x").RootKey().PublicPEM()

	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.pem")
	// Files are replaced whole (as a ConfigMap update does), so the
	// watcher never reads a half-written one.
	write := func(path, text string) {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(rootFile, pinnedRepo.RootKey().PublicPEM())
	base := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
verifiers:
  - name: dct
    type: notaryv1
    notaryv1: {server: %[1]s, caFile: %[2]s, rootKeys: [root.pem]}
  - name: tofu
    type: notaryv1
    notaryv1: {server: %[1]s, caFile: %[2]s, trustOnFirstUse: true}
rules:
  - {name: team, images: ["reg.test/team/app"], verify: [dct]}
  - {name: tofu, images: ["reg.test/team/tofu"], verify: [tofu]}
`, srv.URL(), srv.CAFile(t))
	policyFile := filepath.Join(dir, "policy.yaml")
	write(policyFile, base)

	s := startServe(t, policyFile)
	tofuRoot := "/v2/reg.test/team/tofu/_trust/tuf/root.json"
	firstUse := func() int { return strings.Count(s.logs.String(), "notary root trusted on first use") }
	reloads := func() int { return strings.Count(s.logs.String(), `"msg":"policy reloaded"`) }

	if ok, msg := s.mutate("reg.test/team/app:v1"); !ok {
		t.Fatalf("signed image denied: %s", msg)
	}
	if ok, msg := s.mutate("reg.test/team/tofu:v1"); !ok {
		t.Fatalf("first-use image denied: %s", msg)
	}
	// Item 7: the verifier's log line reaches the serve log, with its name.
	if firstUse() != 1 || !strings.Contains(s.logs.String(), `"verifier":"tofu","gun":"reg.test/team/tofu"`) {
		t.Fatalf("first-use root logged %d times; logs:\n%s", firstUse(), s.logs.String())
	}
	fetched := srv.RequestsFor(tofuRoot)

	// A rule added: both verifiers kept, state and all.
	write(policyFile, base+`  - {name: banned, images: ["reg.test/banned/*"], action: deny}
`)
	waitFor(t, &s.logs, func() bool { return reloads() == 1 })
	if !strings.Contains(s.logs.String(), `"verifiersKept":2,"verifiersBuilt":0`) {
		t.Fatalf("rule-only reload rebuilt verifiers; logs:\n%s", s.logs.String())
	}
	if ok, msg := s.mutate("reg.test/banned/x:1"); ok || !strings.Contains(msg, "rule banned") {
		t.Fatalf("new rule not in force: allowed=%v %s", ok, msg)
	}
	// A new generation, so the decision cache does not answer: the kept
	// verifier does, from what it already verified.
	if ok, msg := s.mutate("reg.test/team/tofu:v1"); !ok {
		t.Fatalf("first-use image denied after a rule-only reload: %s", msg)
	}
	if firstUse() != 1 || srv.RequestsFor(tofuRoot) != fetched {
		t.Fatalf("after a rule-only reload the first-use root was learned %d times, root fetched %d times (was %d)", firstUse(), srv.RequestsFor(tofuRoot), fetched)
	}

	// The pinned key file now names another key; the policy text is unchanged.
	write(rootFile, stranger)
	waitFor(t, &s.logs, func() bool { ok, _ := s.mutate("reg.test/team/app:v1"); return !ok })
	// The engine has the new policy before the reload is logged.
	waitFor(t, &s.logs, func() bool { return reloads() == 2 })
	_, denied := s.mutate("reg.test/team/app:v1")
	if !strings.Contains(denied, "root") || !strings.Contains(s.logs.String(), `"verifiersKept":1,"verifiersBuilt":1`) {
		t.Fatalf("after the key change: %q; logs:\n%s", denied, s.logs.String())
	}

	// A broken key file: refused, the policy with the other key stays.
	write(rootFile, "not a key\n")
	waitFor(t, &s.logs, func() bool { return strings.Contains(s.logs.String(), "policy reload refused") })
	if !strings.Contains(s.logs.String(), "rootKeys[0]") {
		t.Fatalf("refusal does not name the field; logs:\n%s", s.logs.String())
	}
	if ok, msg := s.mutate("reg.test/team/app:v1"); ok || msg != denied {
		t.Fatalf("after a broken key file: allowed=%v %q, want the previous denial %q", ok, msg, denied)
	}
	if ok, msg := s.mutate("reg.test/team/tofu:v1"); !ok {
		t.Fatalf("first-use image denied after a refused reload: %s", msg)
	}

	// A policy naming a key file that does not exist yet is refused; the
	// file appearing (with the right key) is noticed, though the policy in
	// force never read it.
	write(policyFile, strings.Replace(base, "rootKeys: [root.pem]", "rootKeys: [root2.pem]", 1))
	waitFor(t, &s.logs, func() bool { return strings.Count(s.logs.String(), "policy reload refused") == 2 })
	if !strings.Contains(s.logs.String(), "root2.pem") {
		t.Fatalf("refusal does not name the missing file; logs:\n%s", s.logs.String())
	}
	write(filepath.Join(dir, "root2.pem"), pinnedRepo.RootKey().PublicPEM())
	waitFor(t, &s.logs, func() bool { ok, _ := s.mutate("reg.test/team/app:v1"); return ok })
	waitFor(t, &s.logs, func() bool { return reloads() == 3 })
	// Not read by the policy in force: no reload.
	write(rootFile, pinnedRepo.RootKey().PublicPEM())

	// The first-use verifier's block changes: it is rebuilt and learns the
	// root again.
	write(policyFile, strings.Replace(base, "trustOnFirstUse: true}", "trustOnFirstUse: true, signers: [targets]}", 1))
	waitFor(t, &s.logs, func() bool { return reloads() == 4 })
	if ok, msg := s.mutate("reg.test/team/tofu:v1"); !ok {
		t.Fatalf("first-use image denied after its verifier changed: %s", msg)
	}
	if firstUse() != 2 || srv.RequestsFor(tofuRoot) != fetched+1 {
		t.Fatalf("rebuilt verifier: first-use root learned %d times, root fetched %d times (was %d)", firstUse(), srv.RequestsFor(tofuRoot), fetched)
	}

	metrics := s.get("/metrics")
	for _, want := range []string{`trustgate_policy_reloads_total{result="error"} 2`, `trustgate_policy_reloads_total{result="ok"} 4`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	s.stop()
}

// served is a running in-process `trustgate serve`.
type served struct {
	t      *testing.T
	addr   string
	client *http.Client
	logs   syncBuffer
	cancel context.CancelFunc
	done   chan int
}

func startServe(t *testing.T, policyFile string) *served {
	t.Helper()
	s := &served{t: t, addr: freeAddr(t), done: make(chan int, 1)}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- executeContext(ctx, NewRoot(), []string{"serve", "--policy", policyFile, "--addr", s.addr, "--ca-out", caFile, "--reload-period", "50ms"}, io.Discard, &s.logs)
	}()
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pem, err := os.ReadFile(caFile); err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				s.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
				if resp, err := s.client.Get("https://" + s.addr + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						return s
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become ready; logs:\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mutate asks /mutate about a pod with one container running image.
func (s *served) mutate(image string) (bool, string) {
	s.t.Helper()
	return askPod(s.t, s.client, "https://"+s.addr+"/mutate", image)
}

// askPod posts an AdmissionReview (uid "u") for a pod with one container
// running image to url and returns the answer's verdict and message.
func askPod(t *testing.T, client *http.Client, url, image string) (bool, string) {
	t.Helper()
	body := fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":%q}]}}}}`, image)
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Response struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Status  struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response.UID != "u" {
		t.Fatalf("answer: %v %+v", err, out)
	}
	return out.Response.Allowed, out.Response.Status.Message
}

func (s *served) get(path string) string {
	s.t.Helper()
	resp, err := s.client.Get("https://" + s.addr + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// stop ends serve and checks it exits cleanly; idempotent.
func (s *served) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case code := <-s.done:
		if code != 0 {
			s.t.Errorf("serve exited %d; logs:\n%s", code, s.logs.String())
		}
	case <-time.After(30 * time.Second):
		s.t.Error("serve did not stop")
	}
}
