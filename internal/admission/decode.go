package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
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

// DecodeAdmissionReview parses an AdmissionReview request body and checks
// that it carries a request this webhook can answer: a known apiVersion, kind
// AdmissionReview, a request with a uid, an operation and the object's kind.
func DecodeAdmissionReview(body []byte) (*admissionv1.AdmissionReview, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformedReview)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("%w: not JSON of an AdmissionReview: %v", ErrMalformedReview, err)
	}
	switch review.APIVersion {
	case apiVersionV1, apiVersionV1beta1:
	default:
		return nil, fmt.Errorf("%w: apiVersion %q, want %s or %s", ErrMalformedReview, review.APIVersion, apiVersionV1, apiVersionV1beta1)
	}
	if review.Kind != kindReview {
		return nil, fmt.Errorf("%w: kind %q, want %s", ErrMalformedReview, review.Kind, kindReview)
	}
	req := review.Request
	switch {
	case req == nil:
		return nil, fmt.Errorf("%w: no request", ErrMalformedReview)
	case req.UID == "":
		return nil, fmt.Errorf("%w: request.uid is empty", ErrMalformedReview)
	case req.Operation == "":
		return nil, fmt.Errorf("%w: request.operation is empty", ErrMalformedReview)
	case req.Kind.Kind == "" || req.Kind.Version == "":
		return nil, fmt.Errorf("%w: request.kind is incomplete (%q)", ErrMalformedReview, req.Kind.String())
	}
	// A response in a request is meaningless; never echo it back.
	review.Response = nil
	return &review, nil
}

// readAllLimited reads the whole body, failing with *http.MaxBytesError when
// it exceeds limit.
func readAllLimited(rw http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	return io.ReadAll(http.MaxBytesReader(rw, r.Body, limit))
}

func marshal(v any) ([]byte, error) { return json.Marshal(v) }
