package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trustgate-dev/trustgate/internal/workload"
)

// cluster is the running pods a Reverifier walks, two per page, with UIDs.
type cluster struct {
	pods  []*workload.Object
	walks int
	// gen, when set for "ns/name", is added to that pod's UID: the pod was
	// deleted and created again under the same name.
	gen map[string]int
}

func (c *cluster) walk(ctx context.Context, fn func([]*workload.Object, []string) error) error {
	c.walks++
	for i := 0; i < len(c.pods); i += 2 {
		page := c.pods[i:min(i+2, len(c.pods))]
		var uids []string
		for _, p := range page {
			uids = append(uids, fmt.Sprintf("uid-%s-%s-%s-%d", p.Namespace, p.Name, p.Containers[0].Image, c.gen[p.Namespace+"/"+p.Name]))
		}
		if err := fn(page, uids); err != nil {
			return err
		}
	}
	return nil
}

// replace swaps the pod namespace/name for p (nil removes it).
func (c *cluster) replace(ns, name string, p *workload.Object) {
	c.pods = slices.DeleteFunc(c.pods, func(o *workload.Object) bool { return o.Namespace == ns && o.Name == name })
	if p != nil {
		c.pods = append(c.pods, p)
	}
}

type event struct{ ns, name, uid, reason, message string }

type sink struct {
	got  []event
	fail map[string]bool // pod names whose Event creation fails
}

func (s *sink) record(_ context.Context, ns, name, uid, reason, message string) error {
	if s.fail[name] {
		return errors.New("apiserver said no")
	}
	s.got = append(s.got, event{ns, name, uid, reason, message})
	return nil
}

// imageOf extracts the image an Event message is about.
func imageOf(msg string) string {
	rest, _ := strings.CutPrefix(msg, "trustgate: image ")
	img, _, _ := strings.Cut(rest, " ")
	return img
}

func TestReverifierPass(t *testing.T) {
	f := newFixture(t)
	c := &cluster{pods: []*workload.Object{
		pod("a", "good", "reg.test/team/new:v1"),
		pod("a", "old", "reg.test/team/old:v1"),
		pod("a", "bad1", "reg.test/team/old:v2"),
		pod("b", "bad2", "reg.test/team/old:v2"),
		pod("b", "bad3", "reg.test/gone/app:v1"),
		pod("c", "bad4", "reg.test/team/old:v2", "evil.test/x:1"),
		pod("kube-system", "exempt", "evil.test/x:1"),
	}}
	ev := &sink{}
	r := &Reverifier{Engine: loadEngine(t, f.current), Walk: c.walk, Events: ev.record, EventBurst: 3}
	reg := prometheus.NewPedanticRegistry()
	if err := r.Register(reg); err != nil {
		t.Fatal(err)
	}
	gauge := func(g *prometheus.GaugeVec, labels ...string) float64 {
		return testutil.ToFloat64(g.WithLabelValues(labels...))
	}

	res, err := r.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (PassResult{Pods: 7, Images: 6, Denied: 2, Unavailable: 1, Events: 3}); res != want {
		t.Errorf("first pass %+v, want %+v", res, want)
	}
	// Distinct images by verdict; evil.test/x:1 is denied in namespace c
	// and exempt in kube-system.
	for verdict, want := range map[string]float64{Admit: 2, Deny: 2, Unavailable: 1, Exempt: 1} {
		if got := gauge(r.byVerdict, verdict); got != want {
			t.Errorf("trustgate_running_images{verdict=%q} = %v, want %v", verdict, got, want)
		}
	}
	if got := gauge(r.byVerifier, "dct", "true"); got != 1 {
		t.Errorf("images admitted by deprecated dct = %v, want 1", got)
	}
	if got := gauge(r.byVerifier, "next", "false"); got != 1 {
		t.Errorf("images admitted by next = %v, want 1", got)
	}
	for _, v := range []string{"dct", "next"} {
		// notaryfake's timestamps live 14 days.
		if got := gauge(r.expiresIn, v); got < 13*24*3600 || got > 14*24*3600 {
			t.Errorf("trust data of %s expires in %vs, want about 14 days", v, got)
		}
	}
	if n := testutil.CollectAndCount(r.expiresIn); n != 2 {
		t.Errorf("%d expiry series, want 2 (one per verifier that admitted something)", n)
	}

	// The burst limit spreads the five bad (pod, image) pairs over two
	// passes; a third pass reports nothing new.
	for pass, want := range []int{2, 0} {
		res, err := r.Pass(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.Events != want {
			t.Errorf("pass %d: %d events, want %d", pass+2, res.Events, want)
		}
	}
	var got []string
	for _, e := range ev.got {
		got = append(got, e.ns+"/"+e.name+" "+imageOf(e.message)+" "+e.reason)
		if !strings.HasPrefix(e.uid, "uid-"+e.ns+"-"+e.name+"-") {
			t.Errorf("event %+v carries the wrong UID", e)
		}
		if !strings.Contains(e.message, "/spec/containers/") || !strings.Contains(e.message, "would not be admitted now") {
			t.Errorf("event message %q does not say which container and why", e.message)
		}
	}
	slices.Sort(got)
	want := []string{
		"a/bad1 reg.test/team/old:v2 ImageNoLongerVerified",
		"b/bad2 reg.test/team/old:v2 ImageNoLongerVerified",
		"b/bad3 reg.test/gone/app:v1 ImageVerificationUnavailable",
		"c/bad4 evil.test/x:1 ImageNoLongerVerified",
		"c/bad4 reg.test/team/old:v2 ImageNoLongerVerified",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
	if v := testutil.ToFloat64(r.events); v != 5 {
		t.Errorf("events counter %v, want 5", v)
	}

	// bad1 goes away, bad2 is replaced by a pod of a signed image: both are
	// forgotten, so only the pods still bad stay remembered.
	c.replace("a", "bad1", nil)
	c.replace("b", "bad2", pod("b", "bad2", "reg.test/team/new:v1"))
	if res, err := r.Pass(context.Background()); err != nil || res.Events != 0 || res.Denied != 2 {
		t.Fatalf("after recovery: %+v %v", res, err)
	}
	if len(r.warned) != 3 {
		t.Errorf("%d (pod, image) pairs remembered, want 3: %v", len(r.warned), r.warned)
	}
	// A relapse is news again.
	c.replace("b", "bad2", pod("b", "bad2", "reg.test/team/old:v2"))
	if res, err := r.Pass(context.Background()); err != nil || res.Events != 1 {
		t.Fatalf("relapse: %+v %v, want one event", res, err)
	}
	if last := ev.got[len(ev.got)-1]; last.name != "bad2" || imageOf(last.message) != "reg.test/team/old:v2" {
		t.Errorf("relapse event %+v", last)
	}
	if v := testutil.ToFloat64(r.passes.WithLabelValues("ok")); v != 5 {
		t.Errorf("%v ok passes counted, want 5", v)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metrics lint: %v %v", problems, err)
	}
}

// TestReverifierEventFailure: an Event that could not be created is not
// remembered as sent: the next pass tries again.
func TestReverifierEventFailure(t *testing.T) {
	f := newFixture(t)
	c := &cluster{pods: []*workload.Object{pod("a", "bad", "reg.test/team/old:v2")}}
	ev := &sink{fail: map[string]bool{"bad": true}}
	r := &Reverifier{Engine: loadEngine(t, f.current), Walk: c.walk, Events: ev.record}
	if res, err := r.Pass(context.Background()); err != nil || res.Events != 0 || len(r.warned) != 0 {
		t.Fatalf("failed Event: %+v %v, warned %v", res, err, r.warned)
	}
	ev.fail = nil
	if res, err := r.Pass(context.Background()); err != nil || res.Events != 1 || len(ev.got) != 1 {
		t.Fatalf("retry: %+v %v, events %+v", res, err, ev.got)
	}
}

// TestReverifierRecreatedPod: a pod deleted and created again under the same
// name (a StatefulSet replica) with the same bad image is a new pod: it is
// reported again, once.
func TestReverifierRecreatedPod(t *testing.T) {
	f := newFixture(t)
	c := &cluster{pods: []*workload.Object{pod("a", "web-0", "reg.test/team/old:v2")}, gen: map[string]int{}}
	ev := &sink{}
	r := &Reverifier{Engine: loadEngine(t, f.current), Walk: c.walk, Events: ev.record}
	for i, want := range []int{1, 0} {
		if res, err := r.Pass(context.Background()); err != nil || res.Events != want {
			t.Fatalf("pass %d: %+v %v, want %d events", i, res, err, want)
		}
	}
	c.gen["a/web-0"]++
	if res, err := r.Pass(context.Background()); err != nil || res.Events != 1 {
		t.Fatalf("recreated pod: %+v %v, want one new event", res, err)
	}
	if len(ev.got) != 2 || ev.got[0].uid == ev.got[1].uid {
		t.Errorf("events %+v: want two, for two UIDs", ev.got)
	}
}

// TestReverifierWalkError: a failed list is a failed pass; the gauges keep
// the last complete pass instead of dropping to zero.
func TestReverifierWalkError(t *testing.T) {
	f := newFixture(t)
	c := &cluster{pods: []*workload.Object{pod("a", "good", "reg.test/team/new:v1")}}
	fail := false
	walk := func(ctx context.Context, fn func([]*workload.Object, []string) error) error {
		if fail {
			return fmt.Errorf("list pods: %w", context.DeadlineExceeded)
		}
		return c.walk(ctx, fn)
	}
	r := &Reverifier{Engine: loadEngine(t, f.current), Walk: walk}
	if _, err := r.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	fail = true
	if _, err := r.Pass(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the walk's", err)
	}
	if v := testutil.ToFloat64(r.byVerdict.WithLabelValues(Admit)); v != 1 {
		t.Errorf("admitted images gauge %v after a failed pass, want the last pass's 1", v)
	}
	if v := testutil.ToFloat64(r.passes.WithLabelValues("error")); v != 1 {
		t.Errorf("error passes %v, want 1", v)
	}
}
