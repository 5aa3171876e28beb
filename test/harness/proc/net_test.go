package proc

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || p > 65535 || seen[p] {
			t.Fatalf("ports %v: bad or repeated %d", ports, p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
	p, err := FreePort()
	if err != nil || p <= 0 {
		t.Fatalf("FreePort = %d, %v", p, err)
	}
}

func TestCheckHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("ok"))
		case "/auth":
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				http.Error(w, "who are you", http.StatusUnauthorized)
				return
			}
			_, _ = w.Write([]byte("ok"))
		case "/big":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
		case "/slow":
			time.Sleep(2 * time.Second)
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	auth := http.Header{"Authorization": {"Bearer s3cret"}}
	tests := []struct {
		name    string
		path    string
		header  http.Header
		timeout time.Duration
		wantErr string // empty: success
	}{
		{"200", "/ok", nil, 5 * time.Second, ""},
		{"503 with body", "/readyz", nil, 5 * time.Second, "503 Service Unavailable: starting"},
		{"header sent", "/auth", auth, 5 * time.Second, ""},
		{"header missing", "/auth", nil, 5 * time.Second, "401"},
		{"context bounds the call", "/slow", nil, 100 * time.Millisecond, "deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			err := CheckHTTP(ctx, srv.Client(), srv.URL+tt.path, tt.header)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	t.Run("error body capped", func(t *testing.T) {
		err := CheckHTTP(context.Background(), srv.Client(), srv.URL+"/big", nil)
		if err == nil || len(err.Error()) > maxErrBody+200 {
			t.Fatalf("err of %d bytes, want an error of at most ~%d", len(err.Error()), maxErrBody)
		}
	})
}
