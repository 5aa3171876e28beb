package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trustgate-dev/trustgate/internal/workload"
)

// Accepted AdmissionReview versions. v1beta1's JSON is the same shape as v1's
// (only defaults differ, and the API server fills every field we read), so
// both decode into the v1 types and are answered in the version that came in.
const (
	apiVersionV1      = "admission.k8s.io/v1"
	apiVersionV1beta1 = "admission.k8s.io/v1beta1"
	kindReview        = "AdmissionReview"
)

// ErrMalformedReview is matched by every DecodeAdmissionReview error.
var ErrMalformedReview = errors.New("malformed AdmissionReview")

// The AdmissionReview as the webhook reads it. The envelope (typeMeta,
// requestHead) is shared by two shapes of the request:
//
//   - fastRequest decodes the objects into workload.Fields, so the body is
//     parsed once, objects included (the hot path);
//   - admissionRequest keeps the objects' bytes, for workload.Extract. It
//     is the fallback when the objects do not fit workload.Fields (a kind
//     trustgate does not judge may have any spec; workload.Fields declares
//     every judged location at once), and what DecodeAdmissionReview uses.
//
// Both decode with workload.Unmarshal (case-sensitive, duplicate fields
// refused), and their envelopes are the same fields, so a body's envelope
// fails both or neither, and the two read the same values from it.
type (
	fastReview struct {
		metav1.TypeMeta `json:",inline"`
		Request         *fastRequest `json:"request"`
	}
	admissionReview struct {
		metav1.TypeMeta `json:",inline"`
		Request         *admissionRequest `json:"request"`
	}
	requestHead struct {
		UID         types.UID               `json:"uid"`
		Kind        metav1.GroupVersionKind `json:"kind"`
		SubResource string                  `json:"subResource"`
		Name        string                  `json:"name"`
		Namespace   string                  `json:"namespace"`
		Operation   admissionv1.Operation   `json:"operation"`
		DryRun      *bool                   `json:"dryRun"`
	}
	fastRequest struct {
		requestHead
		Object    *workload.Fields `json:"object"`
		OldObject *workload.Fields `json:"oldObject"`
	}
	admissionRequest struct {
		requestHead
		Object    json.RawMessage `json:"object"`
		OldObject json.RawMessage `json:"oldObject"`
	}
)

// decodedReview is a decoded, checked AdmissionReview request.
type decodedReview struct {
	typeMeta metav1.TypeMeta
	requestHead
	object, oldObject objectSource
}

// objectSource is request.object or request.oldObject: decoded already
// (fields), or as bytes to decode by kind (raw); neither when absent.
type objectSource struct {
	fields *workload.Fields
	raw    []byte
}

func rawObject(raw json.RawMessage) objectSource {
	if string(raw) == "null" {
		return objectSource{}
	}
	return objectSource{raw: raw}
}

func (o objectSource) present() bool { return o.fields != nil || len(o.raw) > 0 }

// extract is workload.Extract of the object: both ways give the same
// answer for the same object (workload.Fields.Object is documented so).
func (o objectSource) extract(gk schema.GroupKind, subresource string) (*workload.Object, error) {
	if o.fields != nil {
		return o.fields.Object(gk, subresource), nil
	}
	return workload.Extract(gk, subresource, o.raw)
}

// decodeReview parses an AdmissionReview request body in one pass when it
// can (see fastReview) and checks it as DecodeAdmissionReview does: both
// refuse exactly the same bodies, with the same errors.
func decodeReview(body []byte) (*decodedReview, error) {
	var fast fastReview
	if workload.Unmarshal(body, &fast) == nil {
		var head *requestHead
		if fast.Request != nil {
			head = &fast.Request.requestHead
		}
		if err := checkReview(fast.TypeMeta, head); err != nil {
			return nil, err
		}
		return &decodedReview{
			typeMeta:    fast.TypeMeta,
			requestHead: fast.Request.requestHead,
			object:      objectSource{fields: fast.Request.Object},
			oldObject:   objectSource{fields: fast.Request.OldObject},
		}, nil
	}
	slow, err := decodeSlow(body)
	if err != nil {
		return nil, err
	}
	return &decodedReview{
		typeMeta:    slow.TypeMeta,
		requestHead: slow.Request.requestHead,
		object:      rawObject(slow.Request.Object),
		oldObject:   rawObject(slow.Request.OldObject),
	}, nil
}

// decodeSlow decodes body keeping the objects' bytes, and checks it.
func decodeSlow(body []byte) (*admissionReview, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformedReview)
	}
	var r admissionReview
	if err := workload.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: not JSON of an AdmissionReview: %v", ErrMalformedReview, err)
	}
	var head *requestHead
	if r.Request != nil {
		head = &r.Request.requestHead
	}
	if err := checkReview(r.TypeMeta, head); err != nil {
		return nil, err
	}
	return &r, nil
}

// checkReview checks that a review carries a request this webhook can
// answer: a known apiVersion, kind AdmissionReview, a request with a uid, an
// operation and the object's kind.
func checkReview(tm metav1.TypeMeta, req *requestHead) error {
	switch tm.APIVersion {
	case apiVersionV1, apiVersionV1beta1:
	default:
		return fmt.Errorf("%w: apiVersion %q, want %s or %s", ErrMalformedReview, tm.APIVersion, apiVersionV1, apiVersionV1beta1)
	}
	if tm.Kind != kindReview {
		return fmt.Errorf("%w: kind %q, want %s", ErrMalformedReview, tm.Kind, kindReview)
	}
	switch {
	case req == nil:
		return fmt.Errorf("%w: no request", ErrMalformedReview)
	case req.UID == "":
		return fmt.Errorf("%w: request.uid is empty", ErrMalformedReview)
	case req.Operation == "":
		return fmt.Errorf("%w: request.operation is empty", ErrMalformedReview)
	case req.Kind.Kind == "" || req.Kind.Version == "":
		return fmt.Errorf("%w: request.kind is incomplete (%q)", ErrMalformedReview, req.Kind.String())
	}
	return nil
}

// DecodeAdmissionReview parses an AdmissionReview request body and checks
// that it carries a request this webhook can answer: a known apiVersion, kind
// AdmissionReview, a request with a uid, an operation and the object's kind.
// It refuses exactly the bodies the webhooks refuse as malformed
// AdmissionReviews (they may still refuse an object that does not decode),
// and reads them the same way: field names are case-sensitive and
// duplicated fields are refused (workload.Unmarshal). The request holds the fields trustgate reads: uid,
// kind, subResource, name, namespace, operation, dryRun, object and
// oldObject (userInfo, options and the rest are not decoded); the response
// is always nil.
func DecodeAdmissionReview(body []byte) (*admissionv1.AdmissionReview, error) {
	r, err := decodeSlow(body)
	if err != nil {
		return nil, err
	}
	req := r.Request
	out := &admissionv1.AdmissionReview{TypeMeta: r.TypeMeta, Request: &admissionv1.AdmissionRequest{
		UID:         req.UID,
		Kind:        req.Kind,
		SubResource: req.SubResource,
		Name:        req.Name,
		Namespace:   req.Namespace,
		Operation:   req.Operation,
		DryRun:      req.DryRun,
	}}
	if o := rawObject(req.Object); o.present() {
		out.Request.Object.Raw = o.raw
	}
	if o := rawObject(req.OldObject); o.present() {
		out.Request.OldObject.Raw = o.raw
	}
	return out, nil
}

// Request bodies are read into pooled buffers: decoding copies every value
// it keeps (strings, json.RawMessage), so a buffer is free again once the
// review is decoded. Buffers that grew past maxPooledBody are left to the GC.
const (
	initialBodyBuffer = 16 << 10
	maxPooledBody     = 256 << 10
)

var bodyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, initialBodyBuffer)
	return &b
}}

// readAllLimited reads the whole body into a pooled buffer, failing with
// *http.MaxBytesError when it exceeds limit. The caller must pass the
// returned buffer to releaseBody once nothing refers to the body.
func readAllLimited(rw http.ResponseWriter, r *http.Request, limit int64) (*[]byte, error) {
	bp := bodyBuffers.Get().(*[]byte)
	buf := (*bp)[:0]
	// A declared length (already checked against limit) sizes the buffer
	// at once; +1 leaves room for the read that reports EOF. Only up to
	// maxPooledBody: a declared length alone must not buy a large buffer.
	if n := r.ContentLength; n > 0 && n < maxPooledBody && cap(buf) < int(n)+1 {
		buf = make([]byte, 0, int(n)+1)
	}
	var err error
	if r.Body != nil {
		body := http.MaxBytesReader(rw, r.Body, limit)
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)] // grow
			}
			var n int
			n, err = body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				break
			}
		}
	}
	*bp = buf
	return bp, err
}

func releaseBody(bp *[]byte) {
	if cap(*bp) <= maxPooledBody {
		*bp = (*bp)[:0]
		bodyBuffers.Put(bp)
	}
}

func marshal(v any) ([]byte, error) { return json.Marshal(v) }
