package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

const (
	dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	dC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// fixture is a policy over two in-memory notary servers: "dct" (deprecated)
// trusts the roots of reg.test/team/old and reg.test/team/both, "next"
// trusts reg.test/team/both and reg.test/team/new, and "gone" points at a
// server that answers 503 to everything (a retired trust server).
type fixture struct {
	srv, down *notaryfake.Server
	current   string // policy text
	candidate string // the same without the deprecated verifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := notaryfake.New(t)
	old := srv.NewRepo("reg.test/team/old")
	old.AddTarget("targets", "v1", dA, 500)
	old.Publish()
	both := srv.NewRepo("reg.test/team/both")
	both.AddTarget("targets", "v1", dB, 500)
	both.Publish()
	nw := srv.NewRepo("reg.test/team/new")
	nw.AddTarget("targets", "v1", dC, 500)
	nw.Publish()
	down := notaryfake.New(t)
	gone := down.NewRepo("reg.test/gone/app")
	gone.AddTarget("targets", "v1", dA, 500)
	gone.Publish()
	down.SetStatus(503)

	pem := func(r *notaryfake.Repo) string {
		b, _ := json.Marshal(r.RootKey().PublicPEM()) // a JSON string is a YAML double-quoted scalar
		return string(b)
	}
	head := `apiVersion: trustgate.dev/v1alpha1
kind: Policy
unmatched: deny
exemptNamespaces: [kube-system]
settings: {deadline: 5s, requestTimeout: 2s}
`
	dct := fmt.Sprintf(`  - name: dct
    type: notaryv1
    deprecated: DCT is being retired
    notaryv1: {server: %q, caFile: %q, rootKeys: [%s, %s]}
`, srv.URL(), srv.CAFile(t), pem(old), pem(both))
	rest := fmt.Sprintf(`  - name: next
    type: notaryv1
    notaryv1: {server: %q, caFile: %q, rootKeys: [%s, %s]}
  - name: gone
    type: notaryv1
    notaryv1: {server: %q, caFile: %q, rootKeys: [%s]}
`, srv.URL(), srv.CAFile(t), pem(both), pem(nw), down.URL(), down.CAFile(t), pem(gone))
	rules := func(team string) string {
		return `rules:
  - {name: base, images: ["docker.io/library/*"], action: allow, pinDigest: false}
  - {name: banned, images: ["reg.test/banned/**"], action: deny}
  - {name: gone, images: ["reg.test/gone/**"], verify: [gone]}
  - {name: team, images: ["reg.test/team/**"], verify: [` + team + `], require: any}
`
	}
	return &fixture{
		srv: srv, down: down,
		current:   head + "verifiers:\n" + dct + rest + rules("dct, next"),
		candidate: head + "verifiers:\n" + rest + rules("next"),
	}
}

// counted wraps a verifier and counts its calls: a verification, whether
// or not it needs the network (notaryv1 answers a new tag of a repository
// it holds from memory).
type counted struct {
	verify.Verifier
	calls *atomic.Int64
}

func (c counted) BindsTags() bool { return verify.BindsTags(c.Verifier) }

func (c counted) Verify(ctx context.Context, s verify.Subject) (*verify.Result, error) {
	c.calls.Add(1)
	return c.Verifier.Verify(ctx, s)
}

func loadEngine(t *testing.T, text string) *engine.Engine {
	t.Helper()
	return loadCounted(t, text, nil)
}

// loadCounted loads a policy whose notaryv1 verifiers count their calls in
// calls (when not nil).
func loadCounted(t *testing.T, text string, calls *atomic.Int64) *engine.Engine {
	t.Helper()
	scheme := notaryv1.Scheme
	if calls != nil {
		scheme.New = func(name string, cfg any, deps verify.Deps) (verify.Verifier, error) {
			v, err := notaryv1.Scheme.New(name, cfg, deps)
			if err != nil {
				return nil, err
			}
			return counted{v, calls}, nil
		}
	}
	schemes, err := verify.NewRegistry(scheme)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.NewLoader(schemes, verify.Deps{}).Parse([]byte(text), "policy.yaml")
	if err != nil {
		t.Fatalf("load policy: %v\n%s", err, text)
	}
	return engine.New(p)
}

func pod(ns, name string, images ...string) *workload.Object {
	o := &workload.Object{Kind: schema.GroupKind{Kind: "Pod"}, Namespace: ns, Name: name}
	for i, img := range images {
		o.Containers = append(o.Containers, workload.Container{
			Image: img, Path: fmt.Sprintf("/spec/containers/%d/image", i), Kind: workload.KindContainer, Name: fmt.Sprintf("c%d", i),
		})
	}
	return o
}

func TestAuditVerdicts(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, ns, image string
		verdict, rule   string
		digest          string
		verifiers       []string
		deprecated      []string
		reason          string
	}{
		{name: "allow rule", image: "nginx:1", verdict: Admit, rule: "base", reason: "allow"},
		{name: "deny rule", image: "reg.test/banned/x:1", verdict: Deny, rule: "banned", reason: "the rule denies"},
		{name: "unmatched", image: "evil.test/x:1", verdict: Deny, reason: "no rule matches"},
		{name: "exempt namespace", ns: "kube-system", image: "evil.test/x:1", verdict: Exempt, reason: "exempt"},
		{name: "deprecated verifier only", image: "reg.test/team/old:v1", verdict: Admit, rule: "team", digest: dA,
			verifiers: []string{"dct"}, deprecated: []string{"dct"}},
		{name: "new verifier only", image: "reg.test/team/new:v1", verdict: Admit, rule: "team", digest: dC, verifiers: []string{"next"}},
		{name: "unsigned tag", image: "reg.test/team/old:v2", verdict: Deny, rule: "team", reason: "no verifier passed"},
		{name: "trust server gone", image: "reg.test/gone/app:v1", verdict: Unavailable, rule: "gone", reason: "503"},
		{name: "invalid reference", image: "reg.test/team/UPPER:v1", verdict: Deny, reason: "invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &Auditor{Judges: []Judge{{Name: "current", Engine: loadEngine(t, f.current)}}}
			ns := tc.ns
			if ns == "" {
				ns = "default"
			}
			if err := a.Add(context.Background(), []*workload.Object{pod(ns, "p", tc.image)}); err != nil {
				t.Fatal(err)
			}
			rows, _ := a.Result()
			if len(rows) != 1 || len(rows[0].Verdicts) != 1 {
				t.Fatalf("got rows %+v, want one row with one verdict", rows)
			}
			r, v := rows[0], rows[0].Verdicts[0]
			if r.Namespace != ns || r.Kind != "Pod" || r.Name != "p" || r.Image != tc.image || !slices.Equal(r.Paths, []string{"/spec/containers/0/image"}) {
				t.Errorf("row %+v does not name the object", r)
			}
			if v.Verdict != tc.verdict || v.Rule != tc.rule || v.Digest != tc.digest {
				t.Errorf("verdict %q rule %q digest %q; want %q %q %q (reason %q)", v.Verdict, v.Rule, v.Digest, tc.verdict, tc.rule, tc.digest, v.Reason)
			}
			if !slices.Equal(v.Verifiers, tc.verifiers) || !slices.Equal(v.Deprecated, tc.deprecated) {
				t.Errorf("verifiers %v deprecated %v; want %v %v", v.Verifiers, v.Deprecated, tc.verifiers, tc.deprecated)
			}
			if !strings.Contains(strings.ToLower(v.Reason), tc.reason) {
				t.Errorf("reason %q does not contain %q", v.Reason, tc.reason)
			}
			if v.Verdict == Admit && len(tc.verifiers) > 0 && v.Expires.IsZero() {
				t.Errorf("admitted through DCT but no expiry: %+v", v)
			}
		})
	}
}

// TestAuditSignedTwiceIsNotDeprecatedOnly: an image the new verifier also
// signs does not depend on the deprecated one, whichever answers first
// under require: any.
func TestAuditSignedTwiceIsNotDeprecatedOnly(t *testing.T) {
	f := newFixture(t)
	for i := range 10 {
		a := &Auditor{Judges: []Judge{{Name: "current", Engine: loadEngine(t, f.current)}}}
		if err := a.Add(context.Background(), []*workload.Object{pod("default", "p", "reg.test/team/both:v1")}); err != nil {
			t.Fatal(err)
		}
		rows, sums := a.Result()
		v := rows[0].Verdicts[0]
		if v.Verdict != Admit || v.Digest != dB {
			t.Fatalf("round %d: %+v", i, v)
		}
		if len(v.Deprecated) > 0 || sums[0].DeprecatedOnlyObjects != 0 {
			t.Fatalf("round %d: signed by both verifiers, reported as resting on deprecated ones only: verifiers %v deprecated %v", i, v.Verifiers, v.Deprecated)
		}
	}
}

// TestAuditMemo: many objects running the same image in several
// namespaces, with several service accounts, cost one verification: one
// verifier call, and the notary server sees no more requests than a single
// cold verification sends.
func TestAuditMemo(t *testing.T) {
	// The candidate policy: one verifier for the image (under require: any
	// both run, and the slower one may be cut off mid-request, which makes
	// request counts vary).
	const image = "reg.test/team/new:v1"
	one := newFixture(t)
	var calls atomic.Int64
	a := &Auditor{Judges: []Judge{{Name: "current", Engine: loadCounted(t, one.candidate, &calls)}}}
	if err := a.Add(context.Background(), []*workload.Object{pod("ns0", "p", image)}); err != nil {
		t.Fatal(err)
	}
	single := one.srv.Requests()
	if single == 0 || calls.Load() != 1 {
		t.Fatalf("a cold verification: %d verifier calls, %d requests to the notary server", calls.Load(), single)
	}

	many := newFixture(t)
	calls.Store(0)
	a = &Auditor{Judges: []Judge{{Name: "current", Engine: loadCounted(t, many.candidate, &calls)}}, Concurrency: 16}
	var objs []*workload.Object
	for i := range 200 {
		o := pod(fmt.Sprintf("ns%d", i%5), fmt.Sprintf("p%d", i), image, image)
		o.ServiceAccount = fmt.Sprintf("sa%d", i%3)
		objs = append(objs, o)
	}
	// Two pages, as a paginated walk hands them over.
	for _, page := range [][]*workload.Object{objs[:120], objs[120:]} {
		if err := a.Add(context.Background(), page); err != nil {
			t.Fatal(err)
		}
	}
	rows, sums := a.Result()
	if n := calls.Load(); n != 1 {
		t.Errorf("200 objects of one image: %d verifier calls, want 1", n)
	}
	if got := many.srv.Requests(); got != single {
		t.Errorf("200 objects of one image sent %d requests to the notary server; one verification sends %d", got, single)
	}
	if len(rows) != 200 || sums[0].Objects != 200 || sums[0].Images != 1 {
		t.Errorf("%d rows, summary %+v; want 200 rows, 200 objects, 1 image", len(rows), sums[0])
	}
	for _, r := range rows {
		if r.Verdicts[0].Verdict != Admit || len(r.Paths) != 2 {
			t.Fatalf("row %+v: want admitted with both paths", r)
		}
	}
}

// auditMix audits one object of each kind of outcome with the current
// policy and the candidate (no DCT).
func auditMix(t *testing.T) ([]Row, []Summary) {
	t.Helper()
	f := newFixture(t)
	a := &Auditor{Judges: []Judge{
		{Name: "current", Engine: loadEngine(t, f.current)},
		{Name: "candidate.yaml", Engine: loadEngine(t, f.candidate)},
	}}
	objs := []*workload.Object{
		pod("apps", "dct-only", "reg.test/team/old:v1"),
		pod("apps", "dct-only-2", "reg.test/team/old:v1", "nginx:1"),
		pod("apps", "new", "reg.test/team/new:v1"),
		pod("apps", "both", "reg.test/team/both:v1"),
		pod("apps", "mixed", "reg.test/team/new:v1", "reg.test/team/old:v2"), // one bad image: one denied object
		pod("apps", "gone", "reg.test/gone/app:v1", "nginx:1"),
		pod("kube-system", "exempt", "evil.test/x:1"),
		{Kind: schema.GroupKind{Group: "apps", Kind: "Deployment"}, Namespace: "apps", Name: "web",
			Containers: []workload.Container{{Image: "nginx:1", Path: "/spec/template/spec/containers/0/image", Kind: workload.KindContainer, Name: "web"}}},
	}
	if err := a.Add(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	return a.Result()
}

func TestAuditSummaries(t *testing.T) {
	rows, sums := auditMix(t)
	want := []Summary{
		// dct-only and dct-only-2 rest on DCT alone; mixed is denied; gone
		// could not be checked.
		{Policy: "current", Objects: 8, Images: 6, DeniedObjects: 1, UnavailableObjects: 1, DeprecatedOnlyObjects: 2, ExemptObjects: 1},
		// Without DCT, the DCT-only objects are denied, exactly those.
		{Policy: "candidate.yaml", Objects: 8, Images: 6, DeniedObjects: 3, UnavailableObjects: 1, ExemptObjects: 1},
	}
	if !slices.Equal(sums, want) {
		t.Errorf("summaries\n got %+v\nwant %+v", sums, want)
	}
	if len(rows) != 11 {
		t.Fatalf("%d rows, want 11 (one per image of each object)", len(rows))
	}
	// Sorted by namespace, kind, name, image.
	key := func(r Row) []string { return []string{r.Namespace, r.Kind, r.Name, r.Image} }
	if !slices.IsSortedFunc(rows, func(x, y Row) int { return slices.Compare(key(x), key(y)) }) {
		t.Errorf("rows not sorted: %+v", rows)
	}
	var newlyDenied []string
	for _, r := range rows {
		if len(r.Verdicts) != 2 {
			t.Fatalf("row %+v has %d verdicts, want 2", r, len(r.Verdicts))
		}
		if r.Verdicts[0].Verdict == Admit && r.Verdicts[1].Verdict == Deny {
			newlyDenied = append(newlyDenied, r.Name+" "+r.Image)
		}
	}
	wantDenied := []string{"dct-only reg.test/team/old:v1", "dct-only-2 reg.test/team/old:v1"}
	if !slices.Equal(newlyDenied, wantDenied) {
		t.Errorf("candidate denies %v of what the current policy admits; want exactly the DCT-only %v", newlyDenied, wantDenied)
	}
	if !Denied(rows) {
		t.Error("Denied: false with a denied row")
	}
}

func TestDenied(t *testing.T) {
	row := func(verdicts ...string) Row {
		r := Row{Image: "x"}
		for _, v := range verdicts {
			r.Verdicts = append(r.Verdicts, Verdict{Verdict: v})
		}
		return r
	}
	tests := []struct {
		name string
		rows []Row
		want bool
	}{
		{"no rows", nil, false},
		{"all admitted or exempt", []Row{row(Admit), row(Exempt)}, false},
		{"one denied", []Row{row(Admit), row(Deny)}, true},
		{"one unavailable", []Row{row(Unavailable)}, true},
		{"only the candidate denies", []Row{row(Admit, Deny)}, false},
		{"row without verdicts", []Row{{Image: "x"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Denied(tc.rows); got != tc.want {
				t.Errorf("Denied = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	rows, sums := auditMix(t)
	t.Run("table", func(t *testing.T) {
		var b bytes.Buffer
		if err := Write(&b, "table", rows, sums); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
		// Header, 11 rows, a blank line, 2 summaries.
		if len(lines) != 15 {
			t.Fatalf("%d lines, want 15:\n%s", len(lines), b.String())
		}
		if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"NAMESPACE", "OBJECT", "IMAGE", "VERDICT", "(current)", "VERDICT", "(candidate.yaml)", "VERIFIERS", "WHY"}) {
			t.Errorf("header %q", lines[0])
		}
		for _, want := range []string{
			"current: 8 objects, 6 distinct images, 1 would be denied, 1 could not be checked, 2 admitted only through deprecated verifiers, 1 in exempt namespaces",
			"candidate.yaml: 8 objects, 6 distinct images, 3 would be denied",
		} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("table lacks %q:\n%s", want, b.String())
			}
		}
		// The DCT-only row: deprecated only now, denied by the candidate,
		// and why the candidate denies it.
		var dctOnly string
		for _, l := range lines[1:12] {
			if strings.HasPrefix(l, "apps") && strings.Contains(l, " Pod/dct-only ") {
				dctOnly = strings.Join(strings.Fields(l), " ")
			}
		}
		if !strings.HasPrefix(dctOnly, "apps Pod/dct-only reg.test/team/old:v1 admit (deprecated only) deny dct dct: tag v1 signed by targets | candidate.yaml: notaryv1 next: ") {
			t.Errorf("dct-only line %q", dctOnly)
		}
		for _, l := range lines[1:12] {
			if strings.Contains(l, "\t") || len(strings.Fields(l)) < 6 {
				t.Errorf("row line %q is not aligned in columns", l)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		var b bytes.Buffer
		if err := Write(&b, "json", rows, sums); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Rows    []Row     `json:"rows"`
			Summary []Summary `json:"summary"`
		}
		dec := json.NewDecoder(&b)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if len(got.Rows) != len(rows) || !slices.Equal(got.Summary, sums) {
			t.Fatalf("round trip: %d rows, %+v", len(got.Rows), got.Summary)
		}
		for i := range rows {
			g, w := got.Rows[i], rows[i]
			if g.Name != w.Name || g.Image != w.Image || len(g.Verdicts) != 2 || g.Verdicts[1].Verdict != w.Verdicts[1].Verdict ||
				!slices.Equal(g.Verdicts[0].Deprecated, w.Verdicts[0].Deprecated) || !g.Verdicts[0].Expires.Equal(w.Verdicts[0].Expires) {
				t.Errorf("row %d: got %+v, want %+v", i, g, w)
			}
		}
		// Written row by row, the document is byte for byte what encoding
		// the whole at once gives.
		for _, tc := range []struct {
			name string
			rows []Row
			sums []Summary
		}{{"mix", rows, sums}, {"one row", rows[:1], sums[:1]}, {"no rows", nil, sums}, {"nothing", nil, nil}} {
			var streamed, whole bytes.Buffer
			if err := Write(&streamed, "json", tc.rows, tc.sums); err != nil {
				t.Fatal(err)
			}
			enc := json.NewEncoder(&whole)
			enc.SetIndent("", "  ")
			all := tc.rows
			if all == nil {
				all = []Row{}
			}
			if err := enc.Encode(struct {
				Rows    []Row     `json:"rows"`
				Summary []Summary `json:"summary"`
			}{all, tc.sums}); err != nil {
				t.Fatal(err)
			}
			if streamed.String() != whole.String() {
				t.Errorf("%s: streamed JSON differs from the encoder's:\n%s\nwant:\n%s", tc.name, streamed.String(), whole.String())
			}
		}
	})
	t.Run("csv", func(t *testing.T) {
		var b bytes.Buffer
		if err := Write(&b, "csv", rows, sums); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		// A header, then one record per row and policy.
		if len(recs) != 1+2*len(rows) {
			t.Fatalf("%d records, want %d", len(recs), 1+2*len(rows))
		}
		if !slices.Equal(recs[0], []string{"policy", "namespace", "kind", "name", "image", "paths", "verdict", "rule", "digest", "verifiers", "deprecated", "reason"}) {
			t.Errorf("header %v", recs[0])
		}
		found := false
		for _, rec := range recs[1:] {
			if len(rec) != 12 {
				t.Fatalf("record %v has %d fields", rec, len(rec))
			}
			if rec[0] == "current" && rec[3] == "dct-only" {
				found = true
				if rec[6] != Admit || rec[8] != dA || rec[9] != "dct" || rec[10] != "dct" {
					t.Errorf("dct-only record %v", rec)
				}
			}
			if strings.ContainsAny(rec[11], "\n\t") {
				t.Errorf("reason %q spans lines", rec[11])
			}
		}
		if !found {
			t.Error("no current-policy record for dct-only")
		}
	})
	t.Run("unknown format", func(t *testing.T) {
		err := Write(&bytes.Buffer{}, "yaml", rows, sums)
		if err == nil || !strings.Contains(err.Error(), `"yaml"`) {
			t.Errorf("err = %v, want one naming the format", err)
		}
	})
}

// TestAuditCancelled: an audit whose context ends returns its error, and
// what it could not judge is not remembered as judged.
func TestAuditCancelled(t *testing.T) {
	f := newFixture(t)
	f.srv.SetDelay(time.Minute)
	a := &Auditor{Judges: []Judge{{Name: "current", Engine: loadEngine(t, f.current)}}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := a.Add(ctx, []*workload.Object{pod("a", "p", "reg.test/team/new:v1"), pod("b", "q", "nginx:1")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if n := len(a.memo[0]); n > 1 {
		t.Errorf("%d decisions remembered after the deadline; only the allow rule's may be", n)
	}
	rows, _ := a.Result()
	if len(rows) != 2 {
		t.Fatalf("%d rows, want both objects' (judged as far as they got)", len(rows))
	}
	for _, r := range rows {
		if r.Image == "reg.test/team/new:v1" && r.Verdicts[0].Verdict != Unavailable {
			t.Errorf("verdict %+v for a check that never completed, want %s", r.Verdicts[0], Unavailable)
		}
	}
}
