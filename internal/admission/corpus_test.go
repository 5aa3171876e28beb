package admission

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/trustgate-dev/trustgate/internal/engine"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current behaviour")

// goldenAnswer is what one webhook answered to one fixture, in a form that
// reads well in review: the patch is decoded, plain-HTTP errors keep the text.
type goldenAnswer struct {
	Status     int                            `json:"status"`
	Error      string                         `json:"error,omitempty"`
	APIVersion string                         `json:"apiVersion,omitempty"`
	Response   *admissionv1.AdmissionResponse `json:"response,omitempty"`
	Patch      []PatchOp                      `json:"patch,omitempty"`
	Engine     []engine.Request               `json:"engineRequests,omitempty"`
}

type golden struct {
	Validate goldenAnswer `json:"validate"`
	Mutate   goldenAnswer `json:"mutate"`
}

// TestFixtureCorpus replays every AdmissionReview in testdata/requests through
// both webhooks (enforce mode, the fake engine of helpers_test.go) and
// compares with testdata/golden. Run with -update after an intended change,
// then review the diff.
func TestFixtureCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/requests/*.json")
	if err != nil || len(files) < 20 {
		t.Fatalf("fixture corpus missing: %v (%d files)", err, len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := golden{
				Validate: replay(t, body, false),
				Mutate:   replay(t, body, true),
			}
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			gotJSON = append(gotJSON, '\n')
			goldenFile := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(goldenFile, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenFile)
			if err != nil {
				t.Fatalf("read golden (run go test -update to create): %v", err)
			}
			if !bytes.Equal(gotJSON, want) {
				t.Errorf("answer differs from %s:\n got %s\nwant %s", goldenFile, gotJSON, want)
			}
		})
	}
}

// replay posts body to a fresh webhook and checks the invariants every answer
// must satisfy, whatever the fixture.
func replay(t *testing.T, body []byte, mutate bool) goldenAnswer {
	t.Helper()
	eng := &fakeEngine{}
	var h http.Handler
	if mutate {
		h = newMutating(t, eng)
	} else {
		h = newValidating(t, eng)
	}
	rec := post(t, h, body)
	ans := goldenAnswer{Status: rec.Code, Engine: eng.requests()}
	if rec.Code != http.StatusOK {
		ans.Error = strings.TrimSpace(rec.Body.String())
		return ans
	}
	var in, out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer: %v", err)
	}
	if out.APIVersion != in.APIVersion || out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != in.Request.UID {
		t.Fatalf("answer envelope wrong: %s", rec.Body.String())
	}
	resp := out.Response
	if !mutate && (resp.Patch != nil || resp.PatchType != nil) {
		t.Fatal("validating answer carries a patch")
	}
	if resp.Patch != nil {
		if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatal("patch without patchType JSONPatch")
		}
		if err := json.Unmarshal(resp.Patch, &ans.Patch); err != nil {
			t.Fatalf("patch: %v", err)
		}
		// The patch must apply cleanly to the object that came in.
		applyPatch(t, in.Request.Object.Raw, resp.Patch)
		resp.Patch = nil
	}
	ans.APIVersion = out.APIVersion
	ans.Response = resp
	return ans
}
