package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// allowAll answers every AdmissionReview with allowed: true.
func allowAll(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		return
	}
	var in struct {
		Request struct{ UID string } `json:"request"`
	}
	data, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(data, &in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "AdmissionReview", "response": map[string]any{"uid": in.Request.UID, "allowed": true}})
}

func TestRun(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(allowAll))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(dir, "images.txt")
	if err := os.WriteFile(images, []byte("# one per line\na.io/x:1\n\na.io/x:2\na.io/x:3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/validate"

	t.Run("help documents the modes", func(t *testing.T) {
		var out bytes.Buffer
		err := runWithOutput([]string{"--help"}, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("err %v, want flag.ErrHelp", err)
		}
		for _, want := range []string{"open", "closed", "burst", "SCHEDULED", "--floor-url", "-pid"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("--help lacks %q", want)
			}
		}
	})
	t.Run("url is required", func(t *testing.T) {
		if err := runWithOutput(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "--url") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("closed loop with a floor, as JSON", func(t *testing.T) {
		var out bytes.Buffer
		err := runWithOutput([]string{"--url", url, "--ca", ca, "--mode", "closed", "--workers", "2", "--requests", "9",
			"--images-file", images, "--new-image-per-request", "--floor-url", url, "--floor-ca", ca, "--json", "-"}, &out)
		if err != nil {
			t.Fatal(err)
		}
		var res struct {
			Target, Floor struct{ Requests, Allowed, Errors int }
		}
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("%v:\n%s", err, out.String())
		}
		if res.Target.Requests != 9 || res.Target.Allowed != 9 || res.Floor.Allowed != 9 {
			t.Fatalf("results %+v", res)
		}
	})
	t.Run("text report", func(t *testing.T) {
		var out bytes.Buffer
		if err := runWithOutput([]string{"--url", url, "--ca", ca, "--mode", "burst", "--requests", "5", "--kind", "bigpod"}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "requests 5") || !strings.Contains(out.String(), "p99.9") {
			t.Fatalf("report:\n%s", out.String())
		}
	})
	t.Run("bad kind", func(t *testing.T) {
		if err := runWithOutput([]string{"--url", url, "--kind", "cronjob"}, io.Discard); err == nil {
			t.Fatal("accepted")
		}
	})
}
