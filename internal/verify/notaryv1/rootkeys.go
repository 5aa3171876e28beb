package notaryv1

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/credentials"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// FetchRootKeys downloads gun's root.json from server and returns the root
// role's public keys as PEM, each usable as a `rootKeys:` entry. It checks
// that the root is signed by its own keys, but it is trust on first use by
// nature: compare the result with what the publisher announces before
// pinning it. caFile may be empty.
func FetchRootKeys(ctx context.Context, server, gun, caFile string) ([]string, error) {
	u, err := url.Parse(trimServer(server))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("server %q is not an http(s) URL", server)
	}
	s := &settings{server: u}
	if caFile != "" {
		if s.rootCAs, err = verify.LoadCAFile("", caFile); err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
	}
	client, err := verify.NewHTTPClient(nil, s.rootCAs)
	if err != nil {
		return nil, err
	}
	f := &fetcher{base: trimServer(u.String()), auth: credentials.NewClient(client, &credentials.Store{}), reqTimeout: 30 * time.Second}
	raw, err := f.fetchRole(ctx, gun, "", tuf.RoleRoot, DefaultMaxMetadataBytes)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("%s has no trust data on %s", gun, f.base)
	}
	if err != nil {
		return nil, err
	}
	sd, err := tuf.ParseSigned(raw)
	if err != nil {
		return nil, fmt.Errorf("root of %s: %w", gun, err)
	}
	var r tuf.Root
	if err := sd.Decode(tuf.TypeRoot, &r); err != nil {
		return nil, fmt.Errorf("root of %s: %w", gun, err)
	}
	rk, ok := r.Roles[tuf.RoleRoot]
	if !ok {
		return nil, fmt.Errorf("root of %s defines no root role", gun)
	}
	// Only keys the verifier would accept for gun are worth pinning.
	ids, problems := rootKeys(&r, gun, time.Now(), true)
	if _, err := sd.VerifySignatures(r.Keys, ids, rk.Threshold); err != nil {
		if len(problems) > 0 {
			return nil, fmt.Errorf("root of %s is not signed by a valid root certificate for %s (%s)", gun, gun, joinProblems(problems))
		}
		return nil, fmt.Errorf("root of %s is not signed by its own root keys: %w", gun, err)
	}
	var out []string
	for _, id := range ids {
		k, ok := r.Keys[id]
		if !ok {
			continue
		}
		pem, err := k.PEM()
		if err != nil {
			return nil, fmt.Errorf("root key %s of %s: %w", id, gun, err)
		}
		out = append(out, string(pem))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("root of %s lists no usable root keys", gun)
	}
	return out, nil
}
