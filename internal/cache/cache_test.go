package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func bg() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }

func fixed(d time.Duration) TTLFunc[int] { return func(Outcome[int]) time.Duration { return d } }

func TestExpiryAndLRU(t *testing.T) {
	c := New[int](2)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	c.Put("a", Outcome[int]{Value: 1}, time.Minute)
	c.Put("b", Outcome[int]{Value: 2}, time.Second)
	if v, ok := c.Get("a"); !ok || v.Value != 1 {
		t.Fatalf("Get(a) = %v %v", v, ok)
	}
	now = now.Add(2 * time.Second)
	if _, ok := c.Get("b"); ok {
		t.Fatal("expired entry served")
	}
	c.Put("c", Outcome[int]{Value: 3}, time.Minute)
	c.Put("d", Outcome[int]{Value: 4}, time.Minute) // evicts a, the least recently used
	if _, ok := c.Get("a"); ok || c.Len() != 2 {
		t.Fatalf("LRU bound not kept: len=%d", c.Len())
	}
	c.Put("zero", Outcome[int]{Value: 5}, 0)
	if _, ok := c.Get("zero"); ok {
		t.Fatal("ttl 0 was stored")
	}
}

func TestDoCoalescesAndCaches(t *testing.T) {
	c := New[int](10)
	var calls atomic.Int64
	release := make(chan struct{})
	fn := func(context.Context) Outcome[int] {
		calls.Add(1)
		<-release
		return Outcome[int]{Value: 7}
	}
	var wg sync.WaitGroup
	results := make([]Outcome[int], 100)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = c.Do(context.Background(), "k", bg, fn, fixed(time.Minute))
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("fn ran %d times", calls.Load())
	}
	for _, r := range results {
		if r.Value != 7 {
			t.Fatalf("a caller got %v", r)
		}
	}
	if _, src := c.Do(context.Background(), "k", bg, fn, fixed(time.Minute)); src != Hit {
		t.Fatalf("second call source = %v, want Hit", src)
	}
}

func TestDoCallerDeadlineDoesNotCancelOthers(t *testing.T) {
	c := New[int](10)
	release := make(chan struct{})
	var sawCancel atomic.Bool
	fn := func(ctx context.Context) Outcome[int] {
		select {
		case <-release:
			return Outcome[int]{Value: 1}
		case <-ctx.Done():
			sawCancel.Store(true)
			return Outcome[int]{Err: ctx.Err()}
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan Outcome[int])
	go func() {
		out, _ := c.Do(context.Background(), "k", bg, fn, fixed(time.Minute))
		done <- out
	}()
	time.Sleep(5 * time.Millisecond)
	out, _ := c.Do(short, "k", bg, fn, fixed(time.Minute))
	if !errors.Is(out.Err, context.DeadlineExceeded) {
		t.Fatalf("impatient caller got %v", out)
	}
	close(release)
	if got := <-done; got.Err != nil || got.Value != 1 || sawCancel.Load() {
		t.Fatalf("patient caller got %+v (fn cancelled: %v)", got, sawCancel.Load())
	}
}

func TestErrorsNotCachedWhenTTLZero(t *testing.T) {
	c := New[int](10)
	var calls atomic.Int64
	fn := func(context.Context) Outcome[int] { calls.Add(1); return Outcome[int]{Err: errors.New("down")} }
	ttl := func(o Outcome[int]) time.Duration {
		if o.Err != nil {
			return 0
		}
		return time.Minute
	}
	c.Do(context.Background(), "k", bg, fn, ttl)
	c.Do(context.Background(), "k", bg, fn, ttl)
	if calls.Load() != 2 {
		t.Fatalf("failure was cached: %d calls", calls.Load())
	}
}
