package notaryv1

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

const testGUN = "registry.example.com/demo/app"

// digestOf makes a distinct, valid digest per label.
func digestOf(label string) string {
	sum := sha256.Sum256([]byte(label))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// clock is an adjustable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestVerifier builds a verifier against srv, trusting its CA, with cfg's
// server and caFile filled in. By default it pins repo's root key.
func newTestVerifier(t *testing.T, srv *notaryfake.Server, cfg Config, opts ...Option) *Verifier {
	t.Helper()
	cfg.Server = srv.URL()
	if cfg.CAFile == "" && strings.HasPrefix(srv.URL(), "https://") {
		cfg.CAFile = srv.CAFile(t)
	}
	v, err := New("test", cfg, verify.Deps{RequestTimeout: 2 * time.Second}, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func pinned(repo *notaryfake.Repo) Config {
	return Config{RootKeys: []string{repo.RootKey().PublicPEM()}}
}

func verifyRef(t *testing.T, v *Verifier, ref string) (*verify.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return v.Verify(ctx, verify.Subject{Ref: imageref.MustParse(ref)})
}

// wantErr checks err wraps kind and mentions every fragment.
func wantErr(t *testing.T, err error, kind error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Verify succeeded, want an error wrapping %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("Verify error %q does not wrap %v", err, kind)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("Verify error %q does not mention %q", err, f)
		}
	}
}
