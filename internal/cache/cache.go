// Package cache remembers verification outcomes for a while and makes
// concurrent identical verifications share one call: a rollout of 500 pods
// of one new image causes one verification, not 500.
package cache

import (
	"container/list"
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Outcome is what a verification produced. Err is nil for a success.
type Outcome[V any] struct {
	Value V
	Err   error
}

// Source tells where an answer came from.
type Source int

const (
	Miss   Source = iota // this caller ran the function
	Hit                  // served from the cache
	Shared               // joined a call already in flight
)

// TTLFunc decides how long an outcome may be kept; zero or less means "do not keep".
type TTLFunc[V any] func(Outcome[V]) time.Duration

// Cache is a bounded LRU of outcomes with per-entry expiry, plus call coalescing.
type Cache[V any] struct {
	mu      sync.Mutex
	max     int
	ll      *list.List
	entries map[string]*list.Element
	group   singleflight.Group
	now     func() time.Time
}

type entry[V any] struct {
	key     string
	out     Outcome[V]
	expires time.Time
}

// New returns a cache holding at most max entries (the least recently used go first).
func New[V any](max int) *Cache[V] {
	if max <= 0 {
		max = 1
	}
	return &Cache[V]{max: max, ll: list.New(), entries: map[string]*list.Element{}, now: time.Now}
}

// Get returns a fresh cached outcome for key.
func (c *Cache[V]) Get(key string) (Outcome[V], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return Outcome[V]{}, false
	}
	e := el.Value.(*entry[V])
	if !c.now().Before(e.expires) {
		c.ll.Remove(el)
		delete(c.entries, key)
		return Outcome[V]{}, false
	}
	c.ll.MoveToFront(el)
	return e.out, true
}

// Put stores an outcome for ttl.
func (c *Cache[V]) Put(key string, out Outcome[V], ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := c.now().Add(ttl)
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*entry[V])
		e.out, e.expires = out, exp
		c.ll.MoveToFront(el)
		return
	}
	c.entries[key] = c.ll.PushFront(&entry[V]{key: key, out: out, expires: exp})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.entries, last.Value.(*entry[V]).key)
	}
}

// Len is the number of entries held (expired ones included until touched).
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// Do returns the cached outcome for key, or runs fn once for all concurrent
// callers of the same key and caches its outcome for ttl(outcome).
//
// fn runs under its own context (fnCtx), not the caller's: when the first
// caller gives up at its deadline, the others waiting on the same call must
// not inherit its cancellation. A caller whose ctx ends stops waiting and gets
// ctx.Err() while fn finishes for the rest.
func (c *Cache[V]) Do(ctx context.Context, key string, fnCtx func() (context.Context, context.CancelFunc), fn func(context.Context) Outcome[V], ttl TTLFunc[V]) (Outcome[V], Source) {
	if out, ok := c.Get(key); ok {
		return out, Hit
	}
	ch := c.group.DoChan(key, func() (any, error) {
		// Another caller may have stored it between our Get and this call.
		if out, ok := c.Get(key); ok {
			return out, nil
		}
		cctx, cancel := fnCtx()
		defer cancel()
		out := fn(cctx)
		c.Put(key, out, ttl(out))
		return out, nil
	})
	select {
	case res := <-ch:
		src := Miss
		if res.Shared {
			src = Shared
		}
		return res.Val.(Outcome[V]), src
	case <-ctx.Done():
		var zero V
		return Outcome[V]{Value: zero, Err: ctx.Err()}, Miss
	}
}
