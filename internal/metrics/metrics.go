// Package metrics defines trustgate's Prometheus instruments in one place so
// that names and labels stay consistent across packages.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics holds every instrument. A nil *Metrics is valid and records nothing,
// so library packages and tests need no registry.
type Metrics struct {
	AdmissionRequests *prometheus.CounterVec   // path, outcome (allowed|denied|error)
	AdmissionDuration *prometheus.HistogramVec // path
	Decisions         *prometheus.CounterVec   // rule ("(none)": no rule decided), decision (allow|deny|unavailable); the engine counts
	VerifyDuration    *prometheus.HistogramVec // verifier, result (ok|untrusted|unavailable)
	CacheLookups      *prometheus.CounterVec   // result (hit|miss|shared)
	PolicyReloads     *prometheus.CounterVec   // result (ok|error)
	// DeprecatedAdmissions counts images admitted only through deprecated
	// verifiers, by verifier: what still depends on a scheme going away.
	DeprecatedAdmissions *prometheus.CounterVec // verifier
}

// New creates the instruments and registers them with reg (if not nil).
func New(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		AdmissionRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustgate_admission_requests_total", Help: "AdmissionReview requests by path and outcome.",
		}, []string{"path", "outcome"}),
		AdmissionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trustgate_admission_duration_seconds", Help: "Time to answer an AdmissionReview.", Buckets: buckets,
		}, []string{"path"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustgate_image_decisions_total", Help: "Image decisions, counted once each, by rule (\"(none)\" when no rule decided: unmatched, unparsable, over the image cap) and decision: allow, deny (not trusted), unavailable (denied because a check could not complete).",
		}, []string{"rule", "decision"}),
		VerifyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trustgate_verification_duration_seconds", Help: "Signature verification latency by verifier and result (cache misses only).", Buckets: buckets,
		}, []string{"verifier", "result"}),
		CacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustgate_cache_lookups_total", Help: "Decision cache lookups: hit, miss, or shared (joined an in-flight verification).",
		}, []string{"result"}),
		PolicyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustgate_policy_reloads_total", Help: "Policy file reloads by result.",
		}, []string{"result"}),
		DeprecatedAdmissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustgate_deprecated_admissions_total", Help: "Images admitted only through deprecated verifiers, by verifier.",
		}, []string{"verifier"}),
	}
	if reg != nil {
		reg.MustRegister(m.AdmissionRequests, m.AdmissionDuration, m.Decisions, m.VerifyDuration, m.CacheLookups, m.PolicyReloads, m.DeprecatedAdmissions)
	}
	return m
}
