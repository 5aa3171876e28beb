package notaryv1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
)

// errNotFound marks a 404 for a metadata file.
var errNotFound = errors.New("not found")

// fetcher downloads metadata files of one notary server.
type fetcher struct {
	base       string // server URL without trailing slash
	auth       *credentials.Authenticator
	reqTimeout time.Duration
}

// fetchRole GETs {server}/v2/{gun}/_trust/tuf/{role}.json, reading at most
// limit bytes; a longer body is an error, never silently truncated.
// registry is the image's registry host, whose credentials Docker presents
// to its notary server.
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
		Scope: "repository:" + gun + ":pull",
		Hosts: []string{registry, req.URL.Host},
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
