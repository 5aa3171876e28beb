package resolve

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trustgate-dev/trustgate/internal/imageref"
)

func TestResolve(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(host + "/team/app:v1")
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	idx, err := random.Index(128, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	itag, _ := name.NewTag(host + "/team/multi:v1")
	if err := remote.WriteIndex(itag, idx); err != nil {
		t.Fatal(err)
	}
	wantIdx, _ := idx.Digest()

	r := New(time.Second)
	tests := []struct {
		ref, want, err string
	}{
		{ref: host + "/team/app:v1", want: want.String()},
		{ref: host + "/team/multi:v1", want: wantIdx.String()},
		{ref: host + "/team/app@" + want.String(), want: want.String()},
		{ref: host + "/team/app:missing", err: "404 Not Found"},
		{ref: "127.0.0.1:1/team/app:v1", err: "connection refused"},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), imageref.MustParse(tc.ref), Auth{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Resolve: %v, want error containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// A registry that never answers, resets connections, or answers garbage
// gives an error within the request timeout, never a hang or a digest.
func TestResolveFaults(t *testing.T) {
	hang := make(chan struct{})
	blackhole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	// Close waits for handlers: release the hanging one first.
	defer blackhole.Close()
	defer close(hang)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Content-Digest", "not-a-digest")
		w.Write(bytes.Repeat([]byte("x"), 1<<20))
	}))
	defer garbage.Close()
	reset, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer reset.Close()
	go func() {
		for {
			c, err := reset.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	r := New(300 * time.Millisecond)
	for name, host := range map[string]string{
		"never answers": strings.TrimPrefix(blackhole.URL, "http://"),
		"garbage":       strings.TrimPrefix(garbage.URL, "http://"),
		"resets":        reset.Addr().String(),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			d, err := r.Resolve(context.Background(), imageref.MustParse(host+"/team/app:v1"), Auth{})
			if err == nil {
				t.Fatalf("Resolve = %q, want an error", d)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Fatalf("took %s with a 300ms timeout", el)
			}
		})
	}
}
