// Package admission is trustgate's Kubernetes face: it turns AdmissionReview
// requests into engine requests and engine reports into AdmissionReview
// responses, for the validating (/validate) and the digest-pinning mutating
// (/mutate) webhook. It is the only package that knows the admission API.
//
// Design choices worth knowing:
//   - Bodies that are not a usable AdmissionReview get a plain HTTP 4xx, so the
//     API server applies the webhook's failurePolicy; everything that could be
//     judged gets an AdmissionReview answer in the apiVersion that came in.
//   - The answer is guaranteed by the deadline: if the evaluator has not
//     returned by then, every image is denied with "timed out" (fail closed,
//     whatever the policy mode, since the mode is part of the missing report).
//     An evaluator that can answer without blocking (CachedEvaluator, e.g.
//     when every decision is cached) is asked first, on the request's own
//     goroutine, which spares the hot path the goroutine and timers.
//   - Each body is parsed once: the AdmissionReview and the parts of its
//     objects trustgate reads (workload.Fields) in one strict pass
//     (case-sensitive, duplicate fields refused). Objects that do not fit
//     that shape are decoded again by kind (workload.Extract), which is also
//     what decides the error message.
//   - /mutate denies exactly as /validate would in enforce mode (the mutating
//     webhook runs first, so the user sees the reason once); in warn and audit
//     mode it only pins, and leaves warnings and audit annotations to /validate.
package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
)

// Defaults for Options.
const (
	DefaultMaxBodyBytes = 3 << 20
	DefaultDeadline     = policy.DefaultDeadline
)

// Evaluator decides on a set of images; *engine.Engine satisfies it. It must
// honour ctx: when ctx ends it should return denies that say "timed out".
type Evaluator interface {
	Evaluate(ctx context.Context, req engine.Request) engine.Report
}

// CachedEvaluator is an Evaluator that can sometimes decide at once, e.g.
// when every image's decision is cached. The webhook asks it first, on the
// request's own goroutine; only when it declines (ok false) does the webhook
// start the goroutine and timer that enforce the deadline around Evaluate.
// EvaluateCached must therefore never block: no network, no waiting for a
// verification in flight, no lock held across either. Its report is used
// exactly as Evaluate's would be.
type CachedEvaluator interface {
	Evaluator
	EvaluateCached(req engine.Request) (report engine.Report, ok bool)
}

// EvaluatorFunc adapts a function to Evaluator.
type EvaluatorFunc func(ctx context.Context, req engine.Request) engine.Report

// Evaluate calls f.
func (f EvaluatorFunc) Evaluate(ctx context.Context, req engine.Request) engine.Report {
	return f(ctx, req)
}

// Options configure a Webhook.
type Options struct {
	Evaluator Evaluator        // required
	Logger    *slog.Logger     // nil: discard
	Metrics   *metrics.Metrics // nil: record nothing
	// Deadline bounds one admission decision, evaluation included; default 8s.
	// Keep it below the webhook configuration's timeoutSeconds.
	Deadline time.Duration
	// DeadlineFunc, if set, is asked for the deadline of each request (so a
	// reloaded policy's settings.deadline applies at once); a result <= 0
	// falls back to Deadline.
	DeadlineFunc func() time.Duration
	// MaxBodyBytes caps the request body; default 3 MiB (the API server's own
	// request limit), larger bodies get 413.
	MaxBodyBytes int64
}

// Webhook is the http.Handler for one of the two admission endpoints.
type Webhook struct {
	mutate   bool
	name     string // "validate" or "mutate": metrics label and log field
	eval     Evaluator
	log      *slog.Logger
	metrics  *metrics.Metrics
	deadline time.Duration
	maxBody  int64

	deadlineFunc func() time.Duration
}

// NewValidating returns the handler for /validate.
func NewValidating(opts Options) (*Webhook, error) { return newWebhook(opts, false) }

// NewMutating returns the handler for /mutate, which pins images to digests.
func NewMutating(opts Options) (*Webhook, error) { return newWebhook(opts, true) }

func newWebhook(opts Options, mutate bool) (*Webhook, error) {
	if opts.Evaluator == nil {
		return nil, errors.New("admission: Options.Evaluator is required")
	}
	if opts.Deadline < 0 || opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("admission: negative Deadline (%v) or MaxBodyBytes (%d)", opts.Deadline, opts.MaxBodyBytes)
	}
	w := &Webhook{
		mutate:   mutate,
		name:     "validate",
		eval:     opts.Evaluator,
		log:      opts.Logger,
		metrics:  opts.Metrics,
		deadline: opts.Deadline,
		maxBody:  opts.MaxBodyBytes,

		deadlineFunc: opts.DeadlineFunc,
	}
	if mutate {
		w.name = "mutate"
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.deadline == 0 {
		w.deadline = DefaultDeadline
	}
	if w.maxBody == 0 {
		w.maxBody = DefaultMaxBodyBytes
	}
	return w, nil
}

// httpError is a failure answered with a plain HTTP status instead of an
// AdmissionReview.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP checks the HTTP envelope, decodes the AdmissionReview, judges it
// and writes the answer. It never lets a panic escape: that becomes a 500.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	outcome := "error"
	defer func() {
		if w.metrics != nil {
			w.metrics.AdmissionRequests.WithLabelValues(w.name, outcome).Inc()
			w.metrics.AdmissionDuration.WithLabelValues(w.name).Observe(time.Since(start).Seconds())
		}
	}()
	written := false
	defer func() {
		if p := recover(); p != nil {
			outcome = "error"
			w.log.Error("panic while handling admission request", "webhook", w.name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !written {
				http.Error(rw, "internal error", http.StatusInternalServerError)
			}
		}
	}()

	body, allowed, err := w.serve(rw, r)
	if err == nil {
		outcome = "denied"
		if allowed {
			outcome = "allowed"
		}
		rw.Header().Set("Content-Type", "application/json")
		written = true
		_, _ = rw.Write(body)
		return
	}
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{code: http.StatusInternalServerError, msg: err.Error()}
	}
	w.log.Warn("admission request refused", "webhook", w.name, "status", he.code, "error", he.msg)
	if he.code == http.StatusMethodNotAllowed {
		rw.Header().Set("Allow", http.MethodPost)
	}
	written = true
	http.Error(rw, he.msg, he.code)
}

// serve reads and judges one AdmissionReview and encodes the answer.
func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) (body []byte, allowed bool, err error) {
	rv, err := w.readReview(rw, r)
	if err != nil {
		return nil, false, err
	}
	resp, err := w.review(r.Context(), rv)
	if err != nil {
		return nil, false, err
	}
	resp.UID = rv.UID
	body, err = marshal(admissionv1.AdmissionReview{TypeMeta: rv.typeMeta, Response: resp})
	if err != nil {
		return nil, false, fmt.Errorf("encode AdmissionReview response: %w", err)
	}
	return body, resp.Allowed, nil
}

// readReview enforces method, content type and size, then decodes the body.
func (w *Webhook) readReview(rw http.ResponseWriter, r *http.Request) (*decodedReview, error) {
	if r.Method != http.MethodPost {
		return nil, &httpError{code: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s not allowed, use POST", r.Method)}
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return nil, &httpError{code: http.StatusUnsupportedMediaType, msg: fmt.Sprintf("content type %q not supported, send application/json", ct)}
	}
	if r.ContentLength > w.maxBody {
		return nil, tooLarge(w.maxBody)
	}
	body, err := readAllLimited(rw, r, w.maxBody)
	defer releaseBody(body) // decodeReview keeps no reference to it
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(w.maxBody)
		}
		return nil, badRequest("read request body: %v", err)
	}
	rv, err := decodeReview(*body)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return rv, nil
}

func tooLarge(limit int64) error {
	return &httpError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than %d bytes", limit)}
}
