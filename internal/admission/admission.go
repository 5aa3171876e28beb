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
//     returned by then, every image is judged "timed out" under the mode of
//     the policy in force when the request arrived (PolicySource): denied in
//     enforce mode, admitted with a warning or an audit annotation in warn
//     and audit mode. Without a policy to ask, it is denied (fail closed).
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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
)

// Defaults for Options.
const (
	// DefaultMaxBodyBytes is 7 MiB: what the API server can send. It refuses
	// request bodies over 3 MiB (its maxRequestBodyBytes), so one object
	// is at most about 3 MiB (etcd's 1.5 MiB value limit is the usual
	// ceiling, but the API server's own limit is what bounds the request it
	// admits), and an UPDATE's AdmissionReview carries two objects (object
	// and oldObject) plus the envelope (userInfo, options, field names):
	// 2 × 3 MiB + 1 MiB. controller-runtime's webhooks use the same bound.
	// A smaller limit blocks legitimate updates of large objects under
	// failurePolicy: Fail.
	DefaultMaxBodyBytes = 7 << 20
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

// PolicySource is an Evaluator that can say which policy it applies;
// *engine.Engine satisfies it. The webhook reads the policy when a request
// arrives so that, if the deadline cuts the evaluation off, the "timed out"
// answer follows that policy's mode and exempt namespaces like any other
// answer. An evaluator that is not a PolicySource gets enforce-mode denies.
type PolicySource interface {
	Policy() *policy.Policy
}

// serve passes the engine as the Evaluator: it must stay a PolicySource, or
// a deadline cut would fall back to enforce-mode denies in warn and audit.
var _ PolicySource = (*engine.Engine)(nil)

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
	// MaxBodyBytes caps the request body; default DefaultMaxBodyBytes (7
	// MiB, what the API server can send in an UPDATE). A larger body is
	// refused: with an AdmissionReview that denies it (code 413) when its
	// uid can be read from the first bytes, else with HTTP 413.
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
	var tl *tooLargeError
	if errors.As(err, &tl) && tl.uid != "" {
		// Answered inside an AdmissionReview, so kubectl shows why
		// instead of "failed calling webhook".
		w.log.Warn("admission request refused", "webhook", w.name, "uid", tl.uid, "status", http.StatusRequestEntityTooLarge, "error", tl.Error())
		body, err = tl.review()
	}
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
		return nil, w.tooLarge(nil, r)
	}
	body, err := readAllLimited(rw, r, w.maxBody)
	defer releaseBody(body) // decodeReview keeps no reference to it
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, w.tooLarge(*body, nil)
		}
		return nil, badRequest("read request body: %v", err)
	}
	rv, err := decodeReview(*body)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return rv, nil
}

// tooLargeError refuses a body over the limit. When the body's first bytes
// name the review (apiVersion, kind, request.uid), the refusal is an
// AdmissionReview that denies the request, so the API server shows the
// reason to the user; otherwise it is a plain HTTP 413.
type tooLargeError struct {
	httpError
	typeMeta metav1.TypeMeta
	uid      types.UID
}

// maxReviewHead is how much of an oversized body is read to find the uid:
// the API server writes request.uid before the objects, so it sits in the
// first few hundred bytes; userInfo (groups, extra) may make it a few KiB.
const maxReviewHead = 64 << 10

// tooLarge builds the refusal from head, the bytes already read, or, when
// head is nil, from up to maxReviewHead bytes read from r's body (its
// declared length alone was over the limit).
func (w *Webhook) tooLarge(head []byte, r *http.Request) error {
	e := &tooLargeError{httpError: httpError{
		code: http.StatusRequestEntityTooLarge,
		msg: fmt.Sprintf("AdmissionReview body larger than trustgate's limit of %d bytes (serve --max-body-bytes): not judged, refused",
			w.maxBody),
	}}
	if head == nil && r != nil && r.Body != nil {
		head, _ = io.ReadAll(io.LimitReader(r.Body, maxReviewHead))
	}
	if len(head) > maxReviewHead {
		head = head[:maxReviewHead]
	}
	e.typeMeta, e.uid = reviewHead(head)
	return e
}

// Unwrap lets ServeHTTP answer a plain HTTP 413 when there is no uid.
func (e *tooLargeError) Unwrap() error { return &e.httpError }

// review is the AdmissionReview that refuses the request.
func (e *tooLargeError) review() ([]byte, error) {
	body, err := marshal(admissionv1.AdmissionReview{TypeMeta: e.typeMeta, Response: &admissionv1.AdmissionResponse{
		UID:     e.uid,
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusRequestEntityTooLarge,
			Reason:  metav1.StatusReasonRequestEntityTooLarge,
			Message: "trustgate: " + e.msg,
		},
	}})
	if err != nil {
		return nil, fmt.Errorf("encode AdmissionReview response: %w", err)
	}
	return body, nil
}

// reviewHead reads apiVersion, kind and request.uid from the start of a
// (possibly cut off) AdmissionReview body, token by token, and stops as soon
// as it has all three. It returns an empty uid unless the body is a v1 or
// v1beta1 AdmissionReview whose uid lies within head. The API server writes
// kind, apiVersion, then request with uid first, so the objects (the bulk
// of the body) are never read.
func reviewHead(head []byte) (metav1.TypeMeta, types.UID) {
	var tm metav1.TypeMeta
	var uid types.UID
	dec := json.NewDecoder(bytes.NewReader(head))
	complete := func() bool { return uid != "" && tm.APIVersion != "" && tm.Kind != "" }
	if !nextDelim(dec, '{') {
		return tm, ""
	}
	for !complete() && dec.More() {
		key, ok := nextString(dec)
		if !ok {
			return tm, ""
		}
		switch key {
		case "apiVersion":
			tm.APIVersion, ok = nextString(dec)
		case "kind":
			tm.Kind, ok = nextString(dec)
		case "request":
			if ok = nextDelim(dec, '{'); !ok {
				break
			}
			for ok && dec.More() {
				var k string
				if k, ok = nextString(dec); !ok {
					break
				}
				if k == "uid" {
					var s string
					s, ok = nextString(dec)
					uid = types.UID(s)
					if complete() {
						break
					}
					continue
				}
				ok = skipValue(dec)
			}
			if ok && !complete() {
				ok = nextDelim(dec, '}')
			}
		default:
			ok = skipValue(dec)
		}
		if !ok {
			return tm, ""
		}
	}
	if !complete() || (tm.APIVersion != apiVersionV1 && tm.APIVersion != apiVersionV1beta1) || tm.Kind != kindReview {
		return tm, ""
	}
	return tm, uid
}

func nextDelim(dec *json.Decoder, d json.Delim) bool {
	tok, err := dec.Token()
	return err == nil && tok == d
}

func nextString(dec *json.Decoder) (string, bool) {
	tok, err := dec.Token()
	s, ok := tok.(string)
	return s, err == nil && ok
}

// skipValue reads past the next value, however deep.
func skipValue(dec *json.Decoder) bool {
	var skip json.RawMessage
	return dec.Decode(&skip) == nil
}
