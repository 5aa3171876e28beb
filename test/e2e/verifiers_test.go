package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/test/harness/acr"
	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

// TestVerifierCombinations: one image judged by the two schemes that exist
// today, notaryv1 (the real notary server) and acrSignedTag (a stand-in of
// ACR's tag API whose host is the images' registry), combined as all, any
// and 2 of 3, through the real API server and kubectl. A definite no is
// refused as Forbidden, a check that could not complete as
// ServiceUnavailable saying so, and an image admitted only through the
// deprecated DCT verifier comes with kubectl's Warning and a metric.
func TestVerifierCombinations(t *testing.T) {
	c := requireCluster(t)
	d := requireDCT(t)
	bin := requireTrustgate(t)

	standIn := acr.Start()
	t.Cleanup(standIn.Close)
	host := standIn.Host()
	const repo = "e2e/combo"
	gun := host + "/" + repo
	if err := d.Signer.Init(gun); err != nil {
		t.Fatal(err)
	}
	rootPEM, err := d.Signer.WriteRootKeyPEM(gun)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(b byte) string { return "sha256:" + strings.Repeat(string(b), 64) }
	// tag → (DCT signs it with, ACR says signed with; "" = not signed)
	tags := []struct{ tag, dct, acr string }{
		{"both", digest('a'), digest('a')},
		{"dct-only", digest('b'), ""},
		{"acr-only", "", digest('c')},
		{"neither", "", ""},
		{"disagree", digest('d'), digest('e')},
		{"acr-down", digest('f'), digest('f')},
	}
	for _, tg := range tags {
		if tg.dct != "" {
			if err := d.Signer.Sign(gun, tg.tag, tg.dct, 1234); err != nil {
				t.Fatal(err)
			}
		}
		standIn.SetTag(repo, tg.tag, acr.Tag{Digest: tg.acr, Signed: tg.acr != ""})
	}
	// Every tag lookup of this repository answers 503 while down is set; the
	// acr-down tag is only asked for while it is.
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := "127.0.0.1:" + strconv.Itoa(port)
	policy := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
mode: enforce
unmatched: deny
verifiers:
- name: dct
  type: notaryv1
  deprecated: "DCT ends on Docker Hub on 2026-12-08"
  notaryv1: {server: %[1]s, caFile: %[2]s, rootKeys: [%[3]s]}
- name: dct-again
  type: notaryv1
  notaryv1: {server: %[1]s, caFile: %[2]s, rootKeys: [%[3]s]}
- name: acr
  type: acrSignedTag
  acrSignedTag: {registry: "%[4]s", insecureHTTP: true}
rules:
- {name: all, images: ["%[4]s/e2e/**"], namespaces: [e2e-verifiers-all], verify: [dct, acr]}
- {name: any, images: ["%[4]s/e2e/**"], namespaces: [e2e-verifiers-any], verify: [dct, acr], require: any}
- {name: two-of-three, images: ["%[4]s/e2e/**"], namespaces: [e2e-verifiers-k], verify: [dct, acr, dct-again], require: 2}
`, d.Notary.URL(), d.Notary.CAFile(), rootPEM, host)
	s, err := startStack(t, c, d, bin, stackSpec{
		name: "verifiers", policy: policy, selector: ownNamespaces("verifiers"),
		serveArgs: []string{"--metrics-addr", metricsAddr},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns := map[string]string{}
	for _, rule := range []string{"all", "any", "k"} {
		ns[rule] = s.judgedNamespace(t, "e2e-verifiers-"+rule)
		waitJudged(t, c, ns[rule], "registry.unmatched.example/app:v1", deniedResult)
	}

	type want int
	const (
		admitted want = iota
		forbidden
		unavailable
	)
	for _, tc := range []struct {
		rule, tag string
		want      want
		stderr    []string
	}{
		{"all", "both", admitted, nil},
		{"all", "dct-only", forbidden, []string{"acrSignedTag acr", "is not signed according to the registry"}},
		{"all", "acr-only", forbidden, []string{"notaryv1 dct"}},
		{"all", "neither", forbidden, nil},
		{"all", "disagree", forbidden, []string{"verifiers disagree", "dct proved " + digest('d'), "acr proved " + digest('e')}},
		{"all", "acr-down", unavailable, []string{"could not complete", "503"}},
		{"any", "both", admitted, nil},
		// Admitted through the deprecated DCT verifier alone: a warning.
		// /validate names the image as /mutate pinned it.
		{"any", "dct-only", admitted, []string{`Warning: trustgate admitted "` + gun + `:dct-only@` + digest('b') + `" only through deprecated verifier(s) dct (DCT ends on Docker Hub on 2026-12-08)`}},
		{"any", "acr-only", admitted, nil},
		{"any", "neither", forbidden, []string{"no verifier passed (one of 2 needed)"}},
		{"any", "acr-down", admitted, []string{"Warning: trustgate admitted", "deprecated verifier(s) dct"}},
		{"k", "both", admitted, nil},
		{"k", "dct-only", admitted, nil}, // dct and dct-again: two of three, one not deprecated
		{"k", "acr-only", forbidden, nil},
		{"k", "neither", forbidden, nil},
	} {
		t.Run(tc.rule+"/"+tc.tag, func(t *testing.T) {
			if tc.tag == "acr-down" {
				standIn.SetDown(repo, true)
				defer standIn.SetDown(repo, false)
			}
			img := gun + ":" + tc.tag
			_, stderr, err := runPod(s, ns[tc.rule], "p-"+tc.tag, img)
			switch tc.want {
			case admitted:
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, stderr)
				}
				if len(tc.stderr) == 0 && strings.Contains(stderr, "Warning:") {
					t.Errorf("unexpected warning:\n%s", stderr)
				}
			case forbidden:
				if err == nil || !strings.Contains(stderr, "Error from server (Forbidden)") || !strings.Contains(stderr, "denied the request") {
					t.Fatalf("err %v, stderr %q; want a Forbidden denial", err, stderr)
				}
			case unavailable:
				if err == nil || !strings.Contains(stderr, "Error from server (ServiceUnavailable)") || !strings.Contains(stderr, "trustgate could not complete the check") {
					t.Fatalf("err %v, stderr %q; want a ServiceUnavailable denial that says the check could not complete", err, stderr)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("kubectl output does not contain %q:\n%s", w, stderr)
				}
			}
		})
	}

	// The unavailable answer was not cached: with ACR back, the same pod
	// is admitted.
	if _, stderr, err := runPod(s, ns["all"], "p-acr-down-again", gun+":acr-down"); err != nil {
		t.Errorf("refused once the registry answers again: %v\n%s", err, stderr)
	}

	m := scrape(t, "http://"+metricsAddr+"/metrics")
	for _, w := range []string{
		`trustgate_deprecated_admissions_total{verifier="dct"} 2`,
		`trustgate_image_decisions_total{decision="unavailable",rule="all"}`,
	} {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %s:\n%s", w, grepLines(m, "trustgate_deprecated_admissions_total", "trustgate_image_decisions_total"))
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
