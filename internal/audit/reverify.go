package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

// Walker lists running pods page by page (inventory.Lister restricted to
// Pods, in production), with their UIDs in the order of objs.
type Walker func(ctx context.Context, fn func(objs []*workload.Object, uids []string) error) error

// EventSink records a Kubernetes Event on a pod whose images no longer
// verify (inventory.EventRecorder in production). The re-verifier
// rate-limits calls.
type EventSink func(ctx context.Context, namespace, name, uid, reason, message string) error

// Reverifier re-judges the images of running pods against the current
// policy on an interval: revoked or expired signatures, removed signers and
// trust servers that went away show up while the pod keeps running and
// restarting, which an admission controller alone never sees. It never
// evicts anything; it reports.
type Reverifier struct {
	// Engine judges; it should be the re-verifier's own (its own cache,
	// no admission metrics), following Policy.
	Engine *engine.Engine
	// Policy, when set, is the policy in force; each pass starts by putting
	// it into Engine, so re-verification follows reloads.
	Policy   func() *policy.Policy
	Walk     Walker
	Events   EventSink // optional
	Interval time.Duration
	// Concurrency bounds pods judged at once (default 2): re-verification
	// is background work and must leave upstream capacity to admissions.
	Concurrency int
	// EventBurst bounds Events per pass (default 20): a revoked base image
	// must not flood the API server with one Event per pod.
	EventBurst int
	Logger     *slog.Logger

	once       sync.Once
	byVerdict  *prometheus.GaugeVec
	byVerifier *prometheus.GaugeVec
	expiresIn  *prometheus.GaugeVec
	passes     *prometheus.CounterVec
	events     prometheus.Counter
	// warned remembers (pod UID-less key, image) pairs already reported, so
	// a pod that stays unverified draws one Event, not one per pass.
	warned map[string]bool
}

// Register creates the re-verification gauges in reg.
func (r *Reverifier) Register(reg prometheus.Registerer) error {
	r.init()
	for _, c := range []prometheus.Collector{r.byVerdict, r.byVerifier, r.expiresIn, r.passes, r.events} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register re-verification metrics: %w", err)
		}
	}
	return nil
}

func (r *Reverifier) init() {
	r.once.Do(func() {
		r.byVerdict = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trustgate_running_images", Help: "Distinct images of running pods by verdict under the current policy (last re-verification pass).",
		}, []string{"verdict"})
		r.byVerifier = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trustgate_running_images_by_verifier", Help: "Distinct admitted images of running pods by verifier that passed (last pass).",
		}, []string{"verifier", "deprecated"})
		r.expiresIn = prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "trustgate_trust_data_expires_in_seconds", Help: "Seconds until the earliest-expiring trust data (DCT timestamp/targets, certificates) that an admitted running image rests on, by verifier.",
		}, []string{"verifier"})
		r.passes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustgate_reverification_passes_total", Help: "Re-verification passes by result.",
		}, []string{"result"})
		r.events = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustgate_reverification_events_total", Help: "Kubernetes Events emitted for running pods whose images no longer verify.",
		})
		r.warned = map[string]bool{}
	})
}

// Run re-verifies every Interval until ctx ends.
func (r *Reverifier) Run(ctx context.Context) {
	r.init()
	interval := r.Interval
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil && r.Logger != nil {
			r.Logger.Warn("re-verification pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// PassResult counts one pass.
type PassResult struct {
	Pods, Images, Denied, Unavailable, Events int
}

// Pass re-judges every running pod once and updates the gauges.
func (r *Reverifier) Pass(ctx context.Context) (PassResult, error) {
	r.init()
	var res PassResult
	if r.Policy != nil {
		if p := r.Policy(); p != nil && p != r.Engine.Policy() {
			r.Engine.SetPolicy(p)
		}
	}
	conc := r.Concurrency
	if conc <= 0 {
		conc = 2
	}
	a := &Auditor{Judges: []Judge{{Name: "current", Engine: r.Engine}}, Concurrency: conc}
	var pods []*workload.Object
	uidOf := map[*workload.Object]string{}
	err := r.Walk(ctx, func(objs []*workload.Object, uids []string) error {
		pods = append(pods, objs...)
		for i, o := range objs {
			if i < len(uids) {
				uidOf[o] = uids[i]
			}
		}
		return a.Add(ctx, objs)
	})
	if err != nil {
		r.passes.WithLabelValues("error").Inc()
		return res, err
	}
	rows, _ := a.Result()
	deprecated := map[string]bool{}
	for name := range r.Engine.Policy().Deprecated {
		deprecated[name] = true
	}
	verdicts := map[string]map[string]bool{} // verdict → images
	verifiers := map[[2]string]map[string]bool{}
	earliest := map[string]time.Time{}
	bad := map[string][]Row{} // namespace/name → rows not admitted
	for _, row := range rows {
		v := row.Verdicts[0]
		if verdicts[v.Verdict] == nil {
			verdicts[v.Verdict] = map[string]bool{}
		}
		verdicts[v.Verdict][row.Image] = true
		switch v.Verdict {
		case Admit:
			for _, name := range v.Verifiers {
				dep := "false"
				if deprecated[name] {
					dep = "true"
				}
				k := [2]string{name, dep}
				if verifiers[k] == nil {
					verifiers[k] = map[string]bool{}
				}
				verifiers[k][row.Image] = true
				if !v.Expires.IsZero() && (earliest[name].IsZero() || v.Expires.Before(earliest[name])) {
					earliest[name] = v.Expires
				}
			}
		case Deny, Unavailable:
			bad[row.Namespace+"/"+row.Name] = append(bad[row.Namespace+"/"+row.Name], row)
		}
	}
	r.byVerdict.Reset()
	for _, verdict := range []string{Admit, Deny, Unavailable, Exempt} {
		r.byVerdict.WithLabelValues(verdict).Set(float64(len(verdicts[verdict])))
	}
	r.byVerifier.Reset()
	for k, imgs := range verifiers {
		r.byVerifier.WithLabelValues(k[0], k[1]).Set(float64(len(imgs)))
	}
	r.expiresIn.Reset()
	for name, at := range earliest {
		r.expiresIn.WithLabelValues(name).Set(time.Until(at).Seconds())
	}
	res.Pods = len(pods)
	res.Images = len(verdicts[Admit]) + len(verdicts[Deny]) + len(verdicts[Unavailable]) + len(verdicts[Exempt])
	res.Denied, res.Unavailable = len(verdicts[Deny]), len(verdicts[Unavailable])
	res.Events = r.emit(ctx, pods, uidOf, bad)
	r.passes.WithLabelValues("ok").Inc()
	if r.Logger != nil {
		r.Logger.Info("re-verification pass", "pods", res.Pods, "images", res.Images, "denied", res.Denied, "unavailable", res.Unavailable, "events", res.Events)
	}
	return res, nil
}

func (r *Reverifier) emit(ctx context.Context, pods []*workload.Object, uidOf map[*workload.Object]string, bad map[string][]Row) int {
	if r.Events == nil {
		return 0
	}
	burst := r.EventBurst
	if burst <= 0 {
		burst = 20
	}
	still := map[string]bool{}
	n := 0
	for _, pod := range pods {
		rows := bad[pod.Namespace+"/"+pod.Name]
		for _, row := range rows {
			v := row.Verdicts[0]
			// The UID is part of the key: a pod recreated under the same name (a
			// StatefulSet replica) is a new pod and is reported again.
			key := pod.Namespace + "/" + pod.Name + "|" + uidOf[pod] + "|" + row.Image + "|" + v.Verdict
			still[key] = true
			if r.warned[key] || n >= burst {
				continue
			}
			reason := "ImageNoLongerVerified"
			if v.Verdict == Unavailable {
				reason = "ImageVerificationUnavailable"
			}
			msg := fmt.Sprintf("trustgate: image %s (%s) would not be admitted now: %s", row.Image, joinPaths(row.Paths), v.Reason)
			if err := r.Events(ctx, pod.Namespace, pod.Name, uidOf[pod], reason, msg); err != nil {
				if r.Logger != nil {
					r.Logger.Warn("emit event", "pod", pod.Namespace+"/"+pod.Name, "err", err)
				}
				continue
			}
			r.warned[key] = true
			r.events.Inc()
			n++
		}
	}
	// Forget pods that recovered or went away, so a relapse is reported again
	// and the map stays as small as the set of bad pods.
	for k := range r.warned {
		if !still[k] {
			delete(r.warned, k)
		}
	}
	return n
}

func joinPaths(ps []string) string {
	if len(ps) == 0 {
		return "-"
	}
	s := ps[0]
	for _, p := range ps[1:] {
		s += ", " + p
	}
	return s
}
