package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/trustgate-dev/trustgate/bench/loadgen"
)

func TestAdmit(t *testing.T) {
	pod, err := loadgen.Review(loadgen.KindPod, []string{"a.io/x:1"}, "uid-42", "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, body string
		code                     int
	}{
		{name: "review is allowed", method: http.MethodPost, path: "/validate", body: string(pod), code: http.StatusOK},
		{name: "mutate too", method: http.MethodPost, path: "/mutate", body: string(pod), code: http.StatusOK},
		{name: "not JSON", method: http.MethodPost, path: "/validate", body: "{", code: http.StatusBadRequest},
		{name: "no request", method: http.MethodPost, path: "/validate", body: `{"kind":"AdmissionReview"}`, code: http.StatusBadRequest},
		{name: "health", method: http.MethodGet, path: "/healthz", code: http.StatusOK},
		{name: "GET validate", method: http.MethodGet, path: "/validate", code: http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			mux().ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
			if rec.Code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code != http.StatusOK || tc.method != http.MethodPost {
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			if out.Response == nil || !out.Response.Allowed || out.Response.UID != "uid-42" || out.Kind != "AdmissionReview" {
				t.Fatalf("answer %s", rec.Body)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	cert, pemBytes, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(pemBytes), "BEGIN CERTIFICATE") || len(cert.Certificate) != 1 {
		t.Fatalf("certificate %q", pemBytes)
	}
}
