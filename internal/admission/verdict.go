package admission

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trustgate-dev/trustgate/internal/engine"
)

// maxDeprecationWarnings bounds the deprecation warnings of one response,
// next to the warn-mode ones, under the API server's 4 KiB for warnings.
const maxDeprecationWarnings = 3

// denyStatus is the Status of a refused request. A definite no (some image
// is not trusted, or a rule denies it) is 403 Forbidden. When every denied
// image was denied only because a check could not complete (a timeout, a
// server error), it is 503 ServiceUnavailable and the message says so: the
// same request may pass once the server answers, and nothing was cached.
func denyStatus(denied []engine.Decision, message string) *metav1.Status {
	for _, d := range denied {
		if !d.Unavailable {
			return &metav1.Status{
				Status:  metav1.StatusFailure,
				Code:    http.StatusForbidden,
				Reason:  metav1.StatusReasonForbidden,
				Message: message,
			}
		}
	}
	return &metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusServiceUnavailable,
		Reason:  metav1.StatusReasonServiceUnavailable,
		Message: "trustgate could not complete the check (retry later): " + message,
	}
}

// deprecationWarnings names, for every image admitted only through
// deprecated verifiers, the verifiers and why they are deprecated, and
// counts each in trustgate_deprecated_admissions_total. kubectl prints the
// warnings, so whoever deploys sees what still depends on such a scheme.
func (w *Webhook) deprecationWarnings(ds []engine.Decision) []string {
	var out []string
	n := 0
	for _, d := range ds {
		via := d.DeprecatedOnly()
		if len(via) == 0 {
			continue
		}
		if w.metrics != nil && w.metrics.DeprecatedAdmissions != nil {
			for _, o := range via {
				w.metrics.DeprecatedAdmissions.WithLabelValues(o.Verifier).Inc()
			}
		}
		n++
		if n > maxDeprecationWarnings {
			continue
		}
		out = append(out, truncate(fmt.Sprintf("trustgate admitted %q only through deprecated verifier(s) %s", d.Image, deprecatedText(via)), maxWarningLen))
	}
	if n > maxDeprecationWarnings {
		out = append(out, fmt.Sprintf("trustgate admitted %d more image(s) only through deprecated verifiers", n-maxDeprecationWarnings))
	}
	return out
}

func deprecatedText(via []engine.Outcome) string {
	parts := make([]string, len(via))
	for i, o := range via {
		parts[i] = fmt.Sprintf("%s (%s)", o.Verifier, o.Deprecated)
	}
	return strings.Join(parts, ", ")
}

// outcomesText summarizes what each verifier said, for audit annotations
// and logs: "dct=passed,acr=unavailable".
func outcomesText(d engine.Decision) string {
	if len(d.Outcomes) == 0 {
		return ""
	}
	var b strings.Builder
	for i, o := range d.Outcomes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(o.Verifier)
		b.WriteByte('=')
		b.WriteString(string(o.Status))
	}
	return b.String()
}

// appendOutcomes adds " verifiers=…" to an audit annotation value. One
// verifier, the common case, costs one allocation on the hot path.
func appendOutcomes(v string, d engine.Decision) string {
	switch len(d.Outcomes) {
	case 0:
		return v
	case 1:
		return v + " verifiers=" + d.Outcomes[0].Verifier + "=" + string(d.Outcomes[0].Status)
	}
	return v + " verifiers=" + outcomesText(d)
}

// outcomeAttrs are the log fields of a decision's verifier outcomes.
func outcomeAttrs(attrs []slog.Attr, d engine.Decision) []slog.Attr {
	if s := outcomesText(d); s != "" {
		attrs = append(attrs, slog.String("verifiers", s))
	}
	if via := d.DeprecatedOnly(); len(via) > 0 {
		attrs = append(attrs, slog.String("deprecated", deprecatedText(via)))
	}
	return attrs
}
