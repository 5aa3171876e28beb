package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// auditEvent is the part of an audit.k8s.io/v1 Event these tests read.
type auditEvent struct {
	Stage     string `json:"stage"`
	Verb      string `json:"verb"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	Annotations map[string]string `json:"annotations"`
}

// auditAnnotations waits until the API server's audit log has the
// ResponseComplete event of creating pod ns/name and returns its annotations
// (the audit backend writes asynchronously). It fails t when no event
// arrives within 10s.
func auditAnnotations(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	if shared.auditLog == "" {
		t.Fatal("the shared cluster was started without an audit log")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(shared.auditLog)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		for sc.Scan() {
			var ev auditEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			r := ev.ObjectRef
			if ev.Stage == "ResponseComplete" && ev.Verb == "create" && r.Resource == "pods" && r.Subresource == "" && r.Namespace == ns && r.Name == name {
				return ev.Annotations
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log (%d bytes) has no completed create of pod %s/%s", len(data), ns, name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// trustgateAnnotations keeps the annotations that trustgate's webhooks set;
// the API server prefixes each with the webhook's name.
func trustgateAnnotations(all map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if strings.HasSuffix(strings.SplitN(k, "/", 2)[0], "images.trustgate.dev") {
			out[k] = v
		}
	}
	return out
}

// TestAuditAnnotations: the API server accepts trustgate's audit annotations
// (it silently drops keys that are not qualified names) and records, per
// image, the decision of /validate, which judges the reference /mutate pinned.
func TestAuditAnnotations(t *testing.T) {
	s := requireMain(t)
	ns := s.judgedNamespace(t, "e2e-audit")
	if _, _, err := runPod(s, ns, "audited", s.D.Signed.Ref); err != nil {
		t.Fatalf("signed pod refused: %v", err)
	}
	got := trustgateAnnotations(auditAnnotations(t, ns, "audited"))
	want := map[string]string{
		"verify.images.trustgate.dev/image-0": "decision=allow rule=e2e-signed image=" + s.D.Signed.Pinned() + " digest=" + s.D.Signed.Digest + " verifiers=e2e-dct=passed",
	}
	if mustJSON(got) != mustJSON(want) {
		t.Errorf("trustgate's audit annotations = %s\nwant %s", mustJSON(got), mustJSON(want))
	}
}
