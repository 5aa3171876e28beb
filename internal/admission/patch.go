package admission

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/workload"
)

// OriginalImagesAnnotation records, on the object trustgate pinned, a JSON map
// from the JSON pointer of each pinned image field to the image as written.
const OriginalImagesAnnotation = "trustgate.dev/original-images"

// PatchOp is one RFC 6902 operation; only add and replace are produced.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// pinResponse admits the object, replacing every judged image that has a pin
// with it and, if annotate, recording the originals in
// OriginalImagesAnnotation.
func (w *Webhook) pinResponse(obj *workload.Object, judged []workload.Container, ds []engine.Decision, annotate bool) (*admissionv1.AdmissionResponse, error) {
	ops, err := pinPatch(obj, judged, ds, annotate)
	if err != nil {
		return nil, err
	}
	resp := &admissionv1.AdmissionResponse{Allowed: true}
	if len(ops) == 0 {
		return resp, nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encode JSON patch: %w", err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch = patch
	resp.PatchType = &pt
	return resp, nil
}

// pinPatch builds the operations; nil when nothing is pinned.
func pinPatch(obj *workload.Object, judged []workload.Container, ds []engine.Decision, annotate bool) ([]PatchOp, error) {
	pins := make(map[string]string, len(ds))
	for _, d := range ds {
		if d.Allowed && d.Pin != "" && d.Pin != d.Image {
			pins[d.Image] = d.Pin
		}
	}
	var ops []PatchOp
	originals := map[string]string{}
	for _, c := range judged {
		pin, ok := pins[c.Image]
		if !ok {
			continue
		}
		ops = append(ops, PatchOp{Op: "replace", Path: c.Path, Value: pin})
		originals[c.Path] = c.Image
	}
	if len(ops) == 0 || !annotate {
		return ops, nil
	}
	// Keep what an earlier pin recorded (an UPDATE carries the annotation
	// over) unless this pin rewrites the same field.
	merged := map[string]string{}
	if prev, ok := obj.Annotations[OriginalImagesAnnotation]; ok {
		_ = json.Unmarshal([]byte(prev), &merged) // unreadable: start afresh
		if merged == nil {
			merged = map[string]string{}
		}
	}
	for p, img := range originals {
		merged[p] = img
	}
	value, err := json.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("encode %s annotation: %w", OriginalImagesAnnotation, err)
	}
	if obj.Annotations == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{OriginalImagesAnnotation: string(value)}})
	} else {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + workload.EscapePointer(OriginalImagesAnnotation), Value: string(value)})
	}
	return ops, nil
}
