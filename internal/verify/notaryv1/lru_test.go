package notaryv1

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestRepositoryStateEvictsLeastRecentlyUsed names many repositories
// through a verifier that remembers three, while one repository stays in
// use: its first-use root and metadata must stay (no new request for it),
// and the entries dropped must be the least recently used.
func TestRepositoryStateEvictsLeastRecentlyUsed(t *testing.T) {
	srv := notaryfake.New(t)
	const others = 20
	hot := "registry.example.com/demo/hot"
	gun := func(i int) string { return fmt.Sprintf("registry.example.com/demo/app%d", i) }
	for _, g := range append([]string{hot}, func() []string {
		var out []string
		for i := range others {
			out = append(out, gun(i))
		}
		return out
	}()...) {
		repo := srv.NewRepo(g)
		repo.AddTarget("targets", "v1", digestOf(g), 100)
		repo.Publish()
	}
	var logs bytes.Buffer
	v, err := New("lru", Config{Server: srv.URL(), CAFile: srv.CAFile(t), TrustOnFirstUse: true},
		verify.Deps{RequestTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	v.maxGUNs = 3

	if _, err := verifyRef(t, v, hot+":v1"); err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	hotState := v.guns[hot]
	v.mu.Unlock()
	hotRoot := "/v2/" + hot + "/_trust/tuf/root.json"
	if n := srv.RequestsFor(hotRoot); n != 1 {
		t.Fatalf("root of the hot repository fetched %d times, want 1", n)
	}
	for i := range others {
		if _, err := verifyRef(t, v, gun(i)+":v1"); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyRef(t, v, hot+":v1"); err != nil {
			t.Fatal(err)
		}
		v.mu.Lock()
		kept, n, order := v.guns[hot], len(v.guns), lruOrder(v)
		v.mu.Unlock()
		if kept != hotState {
			t.Fatalf("after naming %s: the hot repository's state was evicted", gun(i))
		}
		if n > 3 || v.lru.Len() != n {
			t.Fatalf("%d entries, %d in LRU order, bound 3", n, v.lru.Len())
		}
		// Most recent first: hot, the repository just named, the one before.
		want := []string{hot, gun(i)}
		if i > 0 {
			want = append(want, gun(i-1))
		}
		if strings.Join(order, " ") != strings.Join(want, " ") {
			t.Fatalf("after naming %s: order %v, want %v", gun(i), order, want)
		}
	}
	if n := srv.RequestsFor(hotRoot); n != 1 {
		t.Fatalf("root of the hot repository fetched %d times, want 1 (its first-use root was re-learned)", n)
	}
	// The evicted repositories were told about: under trust on first use a
	// forgotten root is learned again.
	if got := strings.Count(logs.String(), "notary repository forgotten"); got != others-2 {
		t.Fatalf("%d eviction log lines, want %d:\n%s", got, others-2, logs.String())
	}
	if got := strings.Count(logs.String(), "notary root trusted on first use"); got != others+1 {
		t.Fatalf("%d first-use log lines, want %d", got, others+1)
	}
}

// lruOrder lists the remembered repositories, most recently used first;
// v.mu is held.
func lruOrder(v *Verifier) []string {
	var out []string
	for e := v.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*gunState).gun)
	}
	return out
}
