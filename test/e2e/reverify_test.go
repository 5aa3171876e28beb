package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReverification runs `serve --reverify-interval` against the real API
// server: a running pod whose signature is removed from the notary server
// after it was admitted draws an ImageNoLongerVerified Event, a pod whose
// signature stays draws none, and the gauges say how many running images
// verify and when their trust data expires.
func TestReverification(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)

	digest, size, err := d.Registry.PushRandomImage("e2e/app", "revocable")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Signer.Sign(d.GUN, "revocable", digest, size); err != nil {
		t.Fatal(err)
	}
	revocable := d.GUN + ":revocable"

	// The pods are stored in a namespace no webhook judges; the instance
	// registers no webhook at all: re-verification needs none.
	ns := "e2e-reverify"
	newNamespace(t, c, ns, "")
	if _, stderr, err := c.Kubectl("label", "namespace", ns, "trustgate.dev/exempt=true"); err != nil {
		t.Fatalf("label: %v\n%s", err, stderr)
	}
	for name, img := range map[string]string{"keeps": d.Signed.Ref, "loses": revocable} {
		if _, stderr, err := c.Kubectl("-n", ns, "run", name, "--image="+img, "--restart=Never"); err != nil {
			t.Fatalf("create pod %s: %v\n%s", name, err, stderr)
		}
	}

	dir := t.TempDir()
	pol := strings.Replace(policyText(d, "enforce", "allow"), "exemptNamespaces: [e2e-exempt]",
		"exemptNamespaces: [e2e-exempt]\nsettings: {cacheTTL: 1s, denyCacheTTL: 1s}", 1)
	in, err := newInstance(bin, dir, "reverify", pol, "--reverify-interval=2s", "--kubeconfig", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	defer func() {
		if t.Failed() {
			t.Logf("trustgate log:\n%s", in.LogTail())
		}
	}()

	events := func(pod string) string {
		out, _, err := c.Kubectl("-n", ns, "get", "events", "--field-selector", "involvedObject.name="+pod, "-o", "jsonpath={.items[*].reason}")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	metrics := func() string {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(in.CAPEM)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + in.Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}

	// Both verify at first: a pass has run once the gauges exist.
	waitFor("a re-verification pass", func() bool {
		return strings.Contains(metrics(), `trustgate_reverification_passes_total{result="ok"}`)
	})
	m := metrics()
	if !strings.Contains(m, `trustgate_trust_data_expires_in_seconds{verifier="e2e-dct"}`) {
		t.Errorf("no trust-data expiry gauge for e2e-dct:\n%s", grepLines(m, "trustgate_"))
	}
	if got := events("loses"); got != "" {
		t.Fatalf("events on a pod that still verifies: %q", got)
	}
	const denied = `trustgate_running_images{verdict="deny"}`
	deniedBefore := gauge(t, m, denied)

	if err := d.Signer.RemoveTarget(d.GUN, "revocable"); err != nil {
		t.Fatal(err)
	}
	waitFor("an ImageNoLongerVerified event on the pod whose signature was removed", func() bool {
		return strings.Contains(events("loses"), "ImageNoLongerVerified")
	})
	if got := events("keeps"); got != "" {
		t.Errorf("events on the pod whose signature stayed: %q", got)
	}
	// One Event per pod and image, not one per pass.
	time.Sleep(5 * time.Second)
	if got := strings.Count(events("loses"), "ImageNoLongerVerified"); got != 1 {
		t.Errorf("%d ImageNoLongerVerified events after several passes, want 1", got)
	}
	// The gauge moves by the one image that lost its signature.
	waitFor("the denied running-images gauge to move", func() bool { return gauge(t, metrics(), denied) == deniedBefore+1 })
}

// gauge reads one series' value from a Prometheus text exposition.
func gauge(t *testing.T, exposition, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in:\n%s", series, grepLines(exposition, "trustgate_running"))
	return 0
}
