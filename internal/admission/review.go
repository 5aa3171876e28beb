package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

// Limits that keep responses readable and within what the API server keeps.
const (
	maxReasonLen     = 512 // one image's reason in a message or warning
	maxWarningLen    = 256 // the API server may truncate longer warnings
	maxWarnings      = 10  // it ignores warnings past 4 KiB in total
	maxListed        = 20  // denied images named in one message
	maxPathsListed   = 3   // JSON paths named for one denied image
	maxAnnotationLen = 512 // one audit annotation value
)

// errEvaluatorPanic reports a panic inside the evaluator's goroutine, which
// ServeHTTP's recover cannot see.
var errEvaluatorPanic = errors.New("evaluator panicked")

// review judges one admission request.
func (w *Webhook) review(ctx context.Context, req *decodedReview) (*admissionv1.AdmissionResponse, error) {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allow, nil
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	if !workload.Judged(gk, req.SubResource) {
		return allow, nil
	}
	if !req.object.present() {
		return nil, badRequest("%s %s request without an object", req.Operation, gk.String())
	}
	obj, err := req.object.extract(gk, req.SubResource)
	if err != nil {
		return nil, badRequest("request.object: %v", err)
	}
	judged := obj.Containers
	if req.Operation == admissionv1.Update {
		if req.oldObject.present() {
			old, err := req.oldObject.extract(gk, req.SubResource)
			if err != nil {
				return nil, badRequest("request.oldObject: %v", err)
			}
			// Finalizer removal and other updates that change no image are
			// never blocked, also for objects on their way out; an image
			// changed on a terminating object is still judged.
			judged = changedContainers(obj.Containers, old.Containers)
		} else if obj.Deleting() {
			return allow, nil
		}
	}
	if len(judged) == 0 {
		return allow, nil
	}

	images := workload.Images(judged)
	start := time.Now()
	report, err := w.evaluate(ctx, engine.Request{
		Namespace: req.Namespace, Images: images, Pin: w.mutate,
		// /validate refuses a tag that a pinning rule should have had pinned.
		RequireDigest:  !w.mutate,
		ServiceAccount: obj.ServiceAccount, PullSecrets: obj.PullSecrets,
	})
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	decisions := decisionsFor(images, report)
	w.record(req, obj, report, decisions, elapsed)

	if report.Exempt {
		return allow, nil
	}
	var denied []engine.Decision
	for _, d := range decisions {
		if !d.Allowed {
			denied = append(denied, d)
		}
	}
	mode := report.Mode
	if len(denied) > 0 && mode != policy.Warn && mode != policy.Audit {
		// Enforce, or an unknown mode: fail closed.
		resp := &admissionv1.AdmissionResponse{
			Allowed: false,
			// 403 for a definite no, 503 when only checks that could
			// not complete stand in the way (verdict.go).
			Result: denyStatus(denied, denyMessage(denied, judged)),
		}
		if !w.mutate {
			// Recorded for rejected requests too; /mutate leaves them to
			// /validate so each decision is audited once.
			resp.AuditAnnotations = auditAnnotations(decisions)
		}
		return resp, nil
	}
	if w.mutate {
		// Through pods/ephemeralcontainers the API server keeps only the
		// ephemeral containers of the update, so an annotation would be
		// dropped silently: pin without recording the originals there.
		return w.pinResponse(obj, judged, decisions, req.SubResource == "")
	}
	resp := &admissionv1.AdmissionResponse{Allowed: true, AuditAnnotations: auditAnnotations(decisions)}
	resp.Warnings = w.deprecationWarnings(decisions)
	if mode == policy.Warn {
		for i, d := range denied {
			if i == maxWarnings {
				resp.Warnings = append(resp.Warnings, fmt.Sprintf("trustgate would deny %d more image(s)", len(denied)-i))
				break
			}
			resp.Warnings = append(resp.Warnings, truncate(fmt.Sprintf("trustgate would deny %q (%s): %s", d.Image, ruleText(d), d.Reason), maxWarningLen))
		}
	}
	return resp, nil
}

// changedContainers returns the containers of cur whose image is new: no
// container of the same kind and name had exactly this image in old. Keying
// by name rather than index means reordering alone judges nothing anew, while
// an image that changed is always judged.
func changedContainers(cur, old []workload.Container) []workload.Container {
	before := make(map[[2]string]string, len(old))
	for _, c := range old {
		before[[2]string{c.Kind, c.Name}] = c.Image
	}
	var out []workload.Container
	for _, c := range cur {
		if img, ok := before[[2]string{c.Kind, c.Name}]; ok && img == c.Image && c.Name != "" {
			continue
		}
		out = append(out, c)
	}
	return out
}

// decisionsFor returns one decision per image, in the order of images. An
// image the report does not cover is denied: an incomplete answer from the
// evaluator must not admit anything.
func decisionsFor(images []string, report engine.Report) []engine.Decision {
	if report.Exempt {
		return report.Decisions
	}
	byImage := make(map[string]engine.Decision, len(report.Decisions))
	for _, d := range report.Decisions {
		if _, dup := byImage[d.Image]; !dup {
			byImage[d.Image] = d
		}
	}
	out := make([]engine.Decision, 0, len(images))
	for _, img := range images {
		d, ok := byImage[img]
		if !ok {
			d = engine.Decision{Image: img, Action: "deny", Reason: "no decision returned by the engine"}
		}
		out = append(out, d)
	}
	return out
}

type evalResult struct {
	report engine.Report
	err    error
}

// evaluate runs the evaluator under the deadline. A CachedEvaluator is first
// asked to answer at once, on this goroutine (it promises not to block);
// otherwise, or when it declines, Evaluate runs on its own goroutine. The
// evaluator gets a slightly shorter context so that, if it honours ctx, its
// own "timed out" denies (which respect the policy mode) arrive before the
// hard cut-off; an evaluator that ignores ctx is abandoned at the deadline
// and every image is denied (fail closed).
func (w *Webhook) evaluate(ctx context.Context, req engine.Request) (engine.Report, error) {
	if ce, ok := w.eval.(CachedEvaluator); ok {
		if report, ok, err := w.evaluateCached(ce, req); ok || err != nil {
			return report, err
		}
	}
	// The answer if the deadline cuts the evaluator off follows the policy
	// in force now, as the evaluator's own answer would.
	cutMode, cutExempt := policy.Enforce, false
	if ps, ok := w.eval.(PolicySource); ok {
		if p := ps.Policy(); p != nil {
			cutMode, cutExempt = p.Mode, p.Exempt(req.Namespace)
		}
	}
	deadline := w.deadline
	if w.deadlineFunc != nil {
		if d := w.deadlineFunc(); d > 0 {
			deadline = d
		}
	}
	grace := min(deadline/10, 500*time.Millisecond)
	ectx, cancel := context.WithTimeout(ctx, deadline-grace)
	defer cancel()
	hard := time.NewTimer(deadline)
	defer hard.Stop()

	done := make(chan evalResult, 1) // buffered: an abandoned evaluator must not block forever
	go func() {
		defer func() {
			if p := recover(); p != nil {
				w.log.Error("panic in evaluator", "panic", fmt.Sprint(p))
				done <- evalResult{err: fmt.Errorf("%w: %v", errEvaluatorPanic, p)}
			}
		}()
		done <- evalResult{report: w.eval.Evaluate(ectx, req)}
	}()
	select {
	case res := <-done:
		return res.report, res.err
	case <-hard.C:
		return timedOut(req.Images, cutMode, cutExempt, fmt.Sprintf("timed out: no decision within %v", deadline)), nil
	case <-ctx.Done():
		// The caller is gone; the answer will not be read, but stay closed.
		return timedOut(req.Images, cutMode, cutExempt, fmt.Sprintf("timed out: request ended (%v)", context.Cause(ctx))), nil
	}
}

// evaluateCached is the fast path: no goroutine, no timer. A panic is
// reported as Evaluate's would be.
func (w *Webhook) evaluateCached(ce CachedEvaluator, req engine.Request) (report engine.Report, ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("panic in evaluator", "panic", fmt.Sprint(p))
			report, ok, err = engine.Report{}, false, fmt.Errorf("%w: %v", errEvaluatorPanic, p)
		}
	}()
	report, ok = ce.EvaluateCached(req)
	return report, ok, nil
}

// timedOut is the report for images the evaluator did not decide in time:
// each is denied with reason, and the report carries the policy's mode, so
// that warn and audit mode admit (with a warning or an audit annotation)
// and only enforce mode refuses. An exempt namespace is not judged at all.
func timedOut(images []string, mode policy.Mode, exempt bool, reason string) engine.Report {
	if mode == "" {
		mode = policy.Enforce
	}
	r := engine.Report{Mode: mode, Exempt: exempt}
	if exempt {
		return r
	}
	for _, img := range images {
		r.Decisions = append(r.Decisions, engine.Decision{Image: img, Action: "deny", Reason: reason, Unavailable: true})
	}
	return r
}

// denyMessage names every denied image with the JSON path(s) where it
// occurs among judged, its rule and reason, e.g.
// `trustgate denied 2 image(s): "nginx:1" at /spec/containers/0/image (rule public): …;
// "x" at /spec/volumes/1/image/reference (no rule matched): …`.
// The path tells a user which field to fix: an image volume or an init
// container is easy to overlook.
func denyMessage(denied []engine.Decision, judged []workload.Container) string {
	paths := make(map[string][]string, len(denied))
	for _, c := range judged {
		paths[c.Image] = append(paths[c.Image], c.Path)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "trustgate denied %d image(s): ", len(denied))
	for i, d := range denied {
		if i > 0 {
			b.WriteString("; ")
		}
		if i == maxListed {
			fmt.Fprintf(&b, "and %d more", len(denied)-i)
			break
		}
		fmt.Fprintf(&b, "%q", d.Image)
		if ps := paths[d.Image]; len(ps) > 0 {
			b.WriteString(" at ")
			for j, p := range ps {
				if j > 0 {
					b.WriteString(", ")
				}
				if j == maxPathsListed {
					fmt.Fprintf(&b, "and %d more", len(ps)-j)
					break
				}
				b.WriteString(p)
			}
		}
		fmt.Fprintf(&b, " (%s): %s", ruleText(d), truncate(d.Reason, maxReasonLen))
	}
	return b.String()
}

func ruleText(d engine.Decision) string {
	switch {
	case d.Rule != "":
		return "rule " + d.Rule
	case d.Action == "unmatched":
		return "no rule matched"
	default:
		// Denied before any rule applied: an unparsable reference, a request
		// over the image cap, the deadline reached before its turn.
		return "not judged"
	}
}

// auditAnnotations gives one entry per image. The API server prefixes each
// key with the webhook's name and requires a qualified name, so keys carry no
// "/" of their own: "image-0" becomes "<webhook name>/image-0".
func auditAnnotations(ds []engine.Decision) map[string]string {
	if len(ds) == 0 {
		return nil
	}
	out := make(map[string]string, len(ds))
	for i, d := range ds {
		decision := d.Verdict()
		rule := d.Rule
		if rule == "" {
			rule = "-"
		}
		v := fmt.Sprintf("decision=%s rule=%s image=%s", decision, rule, d.Image)
		if d.Digest != "" {
			v += " digest=" + d.Digest
		}
		v = appendOutcomes(v, d)
		out["image-"+strconv.Itoa(i)] = truncate(v, maxAnnotationLen)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	cut := n - len("…")
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// record logs one line per decision (the engine counts them, once each). The
// lines are built only for the levels the logger writes: a discarded line
// must cost nothing on the hot path.
func (w *Webhook) record(req *decodedReview, obj *workload.Object, report engine.Report, ds []engine.Decision, elapsed time.Duration) {
	ctx := context.Background()
	var common []slog.Attr
	commonAttrs := func() []slog.Attr {
		if common != nil {
			return common
		}
		name := req.Name
		if name == "" {
			name = obj.Name
		}
		if name == "" && obj.GenerateName != "" {
			name = obj.GenerateName + "*"
		}
		common = []slog.Attr{
			slog.String("webhook", w.name),
			slog.String("uid", string(req.UID)),
			slog.String("operation", string(req.Operation)),
			slog.String("namespace", req.Namespace),
			slog.String("kind", schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}.String()),
			slog.String("name", name),
			slog.Bool("dryRun", req.DryRun != nil && *req.DryRun),
			slog.String("mode", string(report.Mode)),
			slog.Duration("duration", elapsed),
		}
		return common
	}
	if report.Exempt {
		if w.log.Enabled(ctx, slog.LevelInfo) {
			w.log.LogAttrs(ctx, slog.LevelInfo, "admission exempt namespace", commonAttrs()...)
		}
		return
	}
	for _, d := range ds {
		decision, level := d.Verdict(), slog.LevelWarn
		if d.Allowed {
			level = slog.LevelInfo
		}
		if w.log.Enabled(ctx, level) {
			attrs := append(append(make([]slog.Attr, 0, len(commonAttrs())+9), commonAttrs()...),
				slog.String("image", d.Image), slog.String("rule", d.Rule), slog.String("action", d.Action),
				slog.String("decision", decision), slog.String("digest", d.Digest), slog.Bool("cached", d.Cached))
			if d.Pin != "" {
				attrs = append(attrs, slog.String("pin", d.Pin))
			}
			if d.Reason != "" {
				attrs = append(attrs, slog.String("reason", d.Reason))
			}
			attrs = outcomeAttrs(attrs, d)
			w.log.LogAttrs(ctx, level, "admission decision", attrs...)
		}
	}
}
