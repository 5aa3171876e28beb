package notaryv1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
)

// errNotFound marks a 404 for a metadata file.
var errNotFound = errors.New("not found")

// fetcher downloads metadata files of one notary server.
type fetcher struct {
	base       string // server URL without trailing slash
	auth       *credentials.Client
	reqTimeout time.Duration
	// seen is what the server's answers have shown so far; nil when not
	// watched (then nothing is sent in parallel).
	seen *serverTraits
}

// serverTraits is learnt from the server's answers; it decides whether
// sending requests in parallel saves time or costs requests.
type serverTraits struct {
	answered   atomic.Bool // some request got an answer other than 401
	challenges atomic.Bool // some request got 401: credentials or tokens in use
	h2         atomic.Bool // answers come over HTTP/2
	// refreshed is set once a refresh has completed, so the connection
	// pool has been used and a later refresh may open a second HTTP/1.1
	// connection, kept afterwards.
	refreshed atomic.Bool
}

// mayParallelize reports whether requests may travel together. Over HTTP/2
// they share the connection; over HTTP/1.1 a parallel request needs a
// second connection, whose TCP and TLS handshakes cost more than the round
// trip saved, so the first refresh of the process keeps to one connection
// and later ones add the second, which the pool then keeps (see
// MaxIdleConnsPerHost). firstOfRepo marks the first requests for a
// repository: tokens are per repository, so against a server that
// challenges, each request sent before the first one's token is cached
// would draw its own 401 and token fetch — more requests, not fewer.
func (f *fetcher) mayParallelize(firstOfRepo bool) bool {
	t := f.seen
	if t == nil || !t.answered.Load() {
		return false
	}
	if firstOfRepo && t.challenges.Load() {
		return false
	}
	return t.h2.Load() || t.refreshed.Load()
}

// traitWatch records serverTraits from every answer.
type traitWatch struct {
	next http.RoundTripper
	t    *serverTraits
}

func (w *traitWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		w.t.challenges.Store(true)
	} else {
		w.t.answered.Store(true)
	}
	if resp.ProtoMajor == 2 {
		w.t.h2.Store(true)
	}
	return resp, nil
}

// fetchRole GETs {server}/v2/{gun}/_trust/tuf/{role}.json, reading at most
// limit bytes; a longer body is an error, never silently truncated.
// registry is the image's registry host, whose credentials Docker presents
// to its notary server; the subject's keychain rides in ctx
// (credentials.WithKeychain).
func (f *fetcher) fetchRole(ctx context.Context, gun, registry, role string, limit int64) ([]byte, error) {
	what := fmt.Sprintf("fetch %s.json for %s", role, gun)
	u := f.base + "/v2/" + gun + "/_trust/tuf/" + role + ".json"
	rctx, cancel := context.WithTimeout(ctx, f.reqTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, unavailable(err, "%s", what)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.auth.Do(req, credentials.Target{
		Scope:    "repository:" + gun + ":pull",
		Registry: registry,
		Keychain: credentials.KeychainFrom(ctx),
	})
	if err != nil {
		if errors.Is(err, credentials.ErrUnauthorized) {
			return nil, unavailable(err, "%s: access denied", what)
		}
		return nil, transportError(rctx, err, "%s", what)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, errNotFound
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, unavailable(nil, "%s: access denied (%s)", what, resp.Status)
	default:
		return nil, unavailable(nil, "%s: server answered %s", what, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, transportError(rctx, err, "%s", what)
	}
	if int64(len(body)) > limit {
		return nil, untrusted(nil, "%s: larger than the %d bytes allowed", what, limit)
	}
	return body, nil
}

// trimServer drops a trailing slash so URLs join cleanly.
func trimServer(s string) string { return strings.TrimRight(s, "/") }

// prefetch is one metadata download running in its own goroutine. TUF fixes
// the order in which files are verified, not the order in which they may
// travel: files can be downloaded together and then verified one after
// the other, each against what its verified parent signs (hashes, length,
// keys) before any of it is used, saving a round trip each.
type prefetch[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// wait returns the download's result. It is bounded because every fetch
// runs under the refresh's context, whose timeout ends it.
func (p *prefetch[T]) wait() (T, error) {
	<-p.done
	return p.val, p.err
}

// prefetches runs downloads under one cancellable context, so a refresh
// that stops early (an error, a rotated root, a file that is not needed)
// ends the ones still in flight and leaves no goroutine behind.
type prefetches struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newPrefetches(ctx context.Context) *prefetches {
	ctx, cancel := context.WithCancel(ctx)
	return &prefetches{ctx: ctx, cancel: cancel}
}

// start runs f in a new goroutine under the group's context.
func start[T any](ps *prefetches, f func(context.Context) (T, error)) *prefetch[T] {
	p := &prefetch[T]{done: make(chan struct{})}
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		defer close(p.done)
		p.val, p.err = f(ps.ctx)
	}()
	return p
}

// stop cancels the downloads still running and waits for them to end.
// Results already taken with wait stay valid.
func (ps *prefetches) stop() {
	ps.cancel()
	ps.wg.Wait()
}
