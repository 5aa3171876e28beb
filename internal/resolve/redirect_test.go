package resolve

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestResolveRefusesCrossHostRedirect: a registry that answers the manifest
// HEAD with a redirect to another host (which holds the image, so following
// would succeed) gets a clear error, and the other host no request at all.
// A redirect within the registry is still followed.
func TestResolveRefusesCrossHostRedirect(t *testing.T) {
	quiet := registry.Logger(log.New(io.Discard, "", 0))
	var otherReqs atomic.Int64
	otherReg := registry.New(quiet)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherReqs.Add(1)
		otherReg.ServeHTTP(w, r)
	}))
	defer other.Close()
	ownReg := registry.New(quiet)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v2/team/away/manifests/"):
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
		case strings.HasPrefix(r.URL.Path, "/v2/team/moved/manifests/"):
			http.Redirect(w, r, strings.Replace(r.URL.Path, "/moved/", "/app/", 1), http.StatusTemporaryRedirect)
		default:
			ownReg.ServeHTTP(w, r)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	otherHost := strings.TrimPrefix(other.URL, "http://")

	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	for _, ref := range []string{host + "/team/app:v1", otherHost + "/team/away:v1"} {
		tag, _ := name.NewTag(ref)
		if err := remote.Write(tag, img); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
	otherReqs.Store(0)

	r := New(2 * time.Second)
	got, err := r.Resolve(context.Background(), imageref.MustParse(host+"/team/away:v1"), Auth{})
	if err == nil {
		t.Fatalf("Resolve followed a redirect to %s and answered %s, want it refused", otherHost, got)
	}
	if !errors.Is(err, verify.ErrRedirect) || !strings.Contains(err.Error(), "redirected to another host, http://"+otherHost) {
		t.Fatalf("Resolve: %v, want ErrRedirect naming %s", err, otherHost)
	}
	if n := otherReqs.Load(); n != 0 {
		t.Errorf("the other host got %d requests, want none", n)
	}
	got, err = r.Resolve(context.Background(), imageref.MustParse(host+"/team/moved:v1"), Auth{})
	if err != nil || got != want.String() {
		t.Fatalf("Resolve through a same-host redirect = %q, %v; want %s", got, err, want)
	}
}
