package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/policy"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeEngine decides by name: images containing "bad" are denied by rule
// "public", images containing "stranger" match no rule and are denied, all
// others are allowed by rule "ours" with testDigest (pinned on request).
// It records every request so tests can check what was sent.
type fakeEngine struct {
	mode   policy.Mode
	exempt bool

	mu   sync.Mutex
	reqs []engine.Request
}

func (f *fakeEngine) Evaluate(_ context.Context, req engine.Request) engine.Report {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	mode := f.mode
	f.mu.Unlock()
	if mode == "" {
		mode = policy.Enforce
	}
	if f.exempt {
		return engine.Report{Mode: mode, Exempt: true}
	}
	r := engine.Report{Mode: mode}
	for _, img := range req.Images {
		d := engine.Decision{Image: img}
		switch {
		case strings.Contains(img, "bad"):
			d.Rule, d.Action, d.Reason = "public", "verify", "no valid signature for tag"
		case strings.Contains(img, "stranger"):
			d.Action, d.Reason = "unmatched", "no rule matches and unmatched is deny"
		default:
			d.Rule, d.Action, d.Allowed, d.Digest = "ours", "verify", true, testDigest
			if req.Pin && !strings.Contains(img, "@") {
				d.Pin = img + "@" + testDigest
			}
		}
		r.Decisions = append(r.Decisions, d)
	}
	return r
}

func (f *fakeEngine) requests() []engine.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]engine.Request(nil), f.reqs...)
}

// reviewBody builds an AdmissionReview request body.
func reviewBody(t testing.TB, apiVersion string, req map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"apiVersion": apiVersion, "kind": "AdmissionReview", "request": req})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// request builds the "request" member for an object of the given kind.
func request(op, group, version, kind, subresource string, object, oldObject any) map[string]any {
	r := map[string]any{
		"uid":       "uid-" + strings.ToLower(kind) + "-" + strings.ToLower(op),
		"kind":      map[string]string{"group": group, "version": version, "kind": kind},
		"resource":  map[string]string{"group": group, "version": version, "resource": strings.ToLower(kind) + "s"},
		"namespace": "prod",
		"operation": op,
		"userInfo":  map[string]any{"username": "alice"},
	}
	if subresource != "" {
		r["subResource"] = subresource
	}
	if object != nil {
		r["object"] = object
	}
	if oldObject != nil {
		r["oldObject"] = oldObject
	}
	return r
}

// post sends body to h and returns the recorder.
func post(t testing.TB, h http.Handler, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// answer posts body and decodes the AdmissionReview answer, failing unless
// the HTTP status is 200.
func answer(t testing.TB, h http.Handler, body []byte) admissionv1.AdmissionReview {
	t.Helper()
	rec := post(t, h, body)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP status %d (%s), want 200", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("decode answer %s: %v", rec.Body.String(), err)
	}
	if out.Response == nil {
		t.Fatalf("answer has no response: %s", rec.Body.String())
	}
	return out
}

// applyPatch applies RFC 6902 add and replace operations to doc, the subset
// trustgate emits, and fails the test on anything the RFC forbids (replace
// of a missing member, add under a missing parent).
func applyPatch(t testing.TB, doc []byte, patch []byte) []byte {
	t.Helper()
	var root any
	if err := json.Unmarshal(doc, &root); err != nil {
		t.Fatalf("applyPatch: document: %v", err)
	}
	var ops []PatchOp
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("applyPatch: patch: %v", err)
	}
	for _, op := range ops {
		if err := applyOp(&root, op); err != nil {
			t.Fatalf("applyPatch: %s %s: %v", op.Op, op.Path, err)
		}
	}
	out, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func applyOp(root *any, op PatchOp) error {
	if op.Op != "add" && op.Op != "replace" {
		return fmt.Errorf("unsupported op")
	}
	if !strings.HasPrefix(op.Path, "/") {
		return fmt.Errorf("path must start with /")
	}
	tokens := strings.Split(op.Path[1:], "/")
	for i, tok := range tokens {
		tokens[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
	}
	parent := *root
	for _, tok := range tokens[:len(tokens)-1] {
		switch p := parent.(type) {
		case map[string]any:
			next, ok := p[tok]
			if !ok {
				return fmt.Errorf("missing member %q", tok)
			}
			parent = next
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(p) {
				return fmt.Errorf("bad index %q", tok)
			}
			parent = p[i]
		default:
			return fmt.Errorf("cannot descend into %T at %q", parent, tok)
		}
	}
	last := tokens[len(tokens)-1]
	switch p := parent.(type) {
	case map[string]any:
		if _, ok := p[last]; !ok && op.Op == "replace" {
			return fmt.Errorf("replace of missing member %q", last)
		}
		p[last] = op.Value
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) || op.Op != "replace" {
			return fmt.Errorf("unsupported array operation at %q", last)
		}
		p[i] = op.Value
	default:
		return fmt.Errorf("parent is %T", parent)
	}
	return nil
}
