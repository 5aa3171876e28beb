package cosign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Bounds on what a registry may make trustgate read. Signature manifests
// and indexes are a few KiB; a bundle with a certificate chain is under
// 20 KiB. Generous but finite.
const (
	maxManifestBytes = 1 << 20
	maxBlobBytes     = 1 << 20
	// maxCandidates bounds how many signature artifacts one verification
	// looks at (bundles plus legacy layers): beyond it the rest is ignored,
	// so a registry cannot make one admission fetch without end.
	maxCandidates = 32
)

// Media types cosign writes.
const (
	bundleMediaTypePrefix = "application/vnd.dev.sigstore.bundle"
	bundleArtifactType    = "application/vnd.dev.sigstore.bundle.v0.3+json"
	simpleSigningType     = "application/vnd.dev.cosign.simplesigning.v1+json"
	ociIndex              = "application/vnd.oci.image.index.v1+json"
	ociManifest           = "application/vnd.oci.image.manifest.v1+json"
	dockerManifest        = "application/vnd.docker.distribution.manifest.v2+json"
	// predicateTypeAnnotation is what cosign writes on a bundle manifest;
	// it is unsigned, so it only saves fetching attestations: the signed
	// statement's predicateType is checked after verification.
	predicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
	// signPredicateType marks a bundle that signs the image itself (cosign
	// sign) rather than a statement about it (cosign attest).
	signPredicateType = "https://sigstore.dev/cosign/sign/v1"
)

// errNotFound marks a 404: no such manifest, which is "unsigned", not an
// outage.
var errNotFound = errors.New("not found")

// descriptor is the part of an OCI descriptor used here.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifest is the part of an OCI image manifest or index used here.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers,omitempty"`
	Manifests     []descriptor      `json:"manifests,omitempty"`
	Subject       *descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// repoClient reads one repository with one authenticated transport (at
// most one ping and one token per verification).
type repoClient struct {
	client *http.Client
	base   string // scheme://host/v2/<repo>
	// unauthorized, when set, is called on a 401: the registry no longer
	// serves anonymous pulls, so what pings told earlier is stale.
	unauthorized func()
}

// pings remembers, per registry, whether its /v2/ answered 200 to an
// anonymous ping (and over which scheme), so that anonymous verifications
// of further images skip the ping: one round trip less on every cold
// verification against a registry that serves anonymous pulls. Registries
// that challenge go through ggcr's transport (its own ping, then a token);
// remembering that they do spares a second ping. Entries expire, and a 401
// drops them at once.
type pings struct {
	mu sync.Mutex
	m  map[string]pingEntry
}

type pingEntry struct {
	insecure   bool // plain http
	challenged bool // asked for authentication: use ggcr's transport
	at         time.Time
}

// noReferrers remembers registries whose referrers API answered "not
// supported", so the next verification reads the tag index without asking
// again; a verification that would deny asks the API first (see Verify).
type noReferrers struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (n *noReferrers) known(reg string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.m[reg]
	return ok && now.Sub(at) <= pingTTL
}

func (n *noReferrers) set(reg string, unsupported bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !unsupported {
		delete(n.m, reg)
		return
	}
	if n.m == nil || len(n.m) >= maxPingKeys {
		n.m = map[string]time.Time{}
	}
	n.m[reg] = time.Now()
}

const (
	pingTTL     = 10 * time.Minute
	maxPingKeys = 1024
)

func (p *pings) get(reg string, now time.Time) (pingEntry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[reg]
	if ok && now.Sub(e.at) > pingTTL {
		delete(p.m, reg)
		ok = false
	}
	return e, ok
}

func (p *pings) put(reg string, e pingEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil || len(p.m) >= maxPingKeys {
		p.m = map[string]pingEntry{}
	}
	p.m[reg] = e
}

func (p *pings) drop(reg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, reg)
}

func newRepoClient(rt http.RoundTripper, scheme string, repo name.Repository) *repoClient {
	return &repoClient{
		// Blob GETs may be redirected to the registry's storage host (the
		// content is checked against its digest); everything else stays on
		// the registry's origin (README, "No contact with strangers").
		client: &http.Client{Transport: rt, CheckRedirect: verify.CheckBlobRedirect},
		base:   fmt.Sprintf("%s://%s/v2/%s", scheme, repo.RegistryStr(), repo.RepositoryStr()),
	}
}

// originGuard refuses, below every client, a redirect of anything but a
// blob download to another origin: go-containerregistry's ping and token
// requests use clients of their own that would follow ten redirects
// anywhere. Blob redirects pass, and the repoClient's CheckBlobRedirect
// judges them.
type originGuard struct{ same, raw http.RoundTripper }

func guardOrigins(rt http.RoundTripper) http.RoundTripper {
	return originGuard{same: verify.RefuseCrossOriginRedirects(rt), raw: rt}
}

func (g originGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasPrefix(r.URL.Path, "/v2/") && strings.Contains(r.URL.Path, "/blobs/sha256:") {
		return g.raw.RoundTrip(r)
	}
	return g.same.RoundTrip(r)
}

// openRepo authenticates to repo's registry with kc: anonymously without a
// ping when the registry is known to allow it, else through
// go-containerregistry's transport (ping, then a pull token for repo on a
// bearer challenge).
func openRepo(ctx context.Context, base http.RoundTripper, repo name.Repository, kc authn.Keychain, known *pings) (*repoClient, error) {
	if kc == nil {
		kc = authn.NewMultiKeychain()
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	reg := repo.RegistryStr()
	if auth == authn.Anonymous {
		e, ok := known.get(reg, time.Now())
		if !ok {
			ch, err := transport.Ping(ctx, repo.Registry, base)
			if err != nil {
				return nil, fmt.Errorf("connect to %s: %w", reg, err)
			}
			// Scheme "" is a 200: no authentication asked.
			e = pingEntry{insecure: ch.Insecure, challenged: ch.Scheme != "", at: time.Now()}
			known.put(reg, e)
		}
		if !e.challenged {
			scheme := "https"
			if e.insecure {
				scheme = "http"
			}
			c := newRepoClient(base, scheme, repo)
			c.unauthorized = func() { known.drop(reg) }
			return c, nil
		}
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", reg, err)
	}
	// The transport picks the scheme its ping found; the URL's is replaced.
	return newRepoClient(rt, repo.Scheme(), repo), nil
}

// get fetches path under the repository, reading at most limit bytes.
// found is false for 404 (and for the referrers API's "unsupported"
// answers when okMissing lists them).
func (c *repoClient) get(ctx context.Context, path string, accept []string, limit int64, missing ...int) (body []byte, contentType string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, "", err
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && c.unauthorized != nil {
		c.unauthorized()
	}
	for _, m := range append(missing, http.StatusNotFound) {
		if resp.StatusCode == m {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			return nil, "", fmt.Errorf("GET %s: %d: %w", path, resp.StatusCode, errNotFound)
		}
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, "", err
	}
	if resp.ContentLength > limit {
		return nil, "", fmt.Errorf("GET %s: %d bytes, more than the %d allowed", path, resp.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("GET %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, "", fmt.Errorf("GET %s: more than the %d bytes allowed", path, limit)
	}
	return b, resp.Header.Get("Content-Type"), nil
}

// manifest fetches a manifest by tag or digest and decodes it; a digest
// reference is checked against the bytes received.
func (c *repoClient) manifest(ctx context.Context, ref string, accept ...string) (*manifest, error) {
	b, _, err := c.get(ctx, "/manifests/"+ref, accept, maxManifestBytes)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(ref, "sha256:") {
		if err := checkDigest(ref, b); err != nil {
			return nil, &contentError{fmt.Errorf("manifest %s: %w", ref, err)}
		}
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, &contentError{fmt.Errorf("manifest %s: %w", ref, err)}
	}
	return &m, nil
}

// blob fetches a blob and checks its digest and declared size.
func (c *repoClient) blob(ctx context.Context, d descriptor) ([]byte, error) {
	if d.Size > maxBlobBytes {
		return nil, &contentError{fmt.Errorf("blob %s: %d bytes, more than the %d allowed", d.Digest, d.Size, maxBlobBytes)}
	}
	if !strings.HasPrefix(d.Digest, "sha256:") {
		return nil, &contentError{fmt.Errorf("blob %q: only sha256 digests are supported", d.Digest)}
	}
	b, _, err := c.get(ctx, "/blobs/"+d.Digest, nil, maxBlobBytes)
	if err != nil {
		return nil, err
	}
	if err := checkDigest(d.Digest, b); err != nil {
		return nil, &contentError{fmt.Errorf("blob %s: %w", d.Digest, err)}
	}
	if int64(len(b)) != d.Size {
		return nil, &contentError{fmt.Errorf("blob %s: %d bytes, descriptor says %d", d.Digest, len(b), d.Size)}
	}
	return b, nil
}

// discovery is what one verification learns about the signature
// artifacts of a digest. The lookups run in parallel: on a registry
// without a referrers API (distribution 2.x, which answers 404) the tag
// index would otherwise wait for that 404, and legacy signatures for both.
// That costs a wasted request when the first one suffices, and saves two
// round trips on the critical path (see BENCHMARKS.md).
type discovery struct {
	bundles   []descriptor
	bundleErr error // the listing failed: could not complete
	// api is whether the referrers API answered (nil when not asked).
	api       *bool
	legacy    *manifest
	legacyErr error // errNotFound when there is no .sig image
}

// discover lists bundles and fetches the legacy signature manifest. With
// skipAPI (the registry had no referrers API a moment ago) it reads only
// the tag index; the caller asks the API before it denies.
func (c *repoClient) discover(ctx context.Context, digest string, skipAPI bool) discovery {
	type res struct {
		m   *manifest
		ok  bool
		err error
	}
	api, tag, sig := make(chan res, 1), make(chan res, 1), make(chan res, 1)
	if skipAPI {
		api <- res{}
	} else {
		go func() { m, ok, err := c.referrersAPI(ctx, digest); api <- res{m, ok, err} }()
	}
	go func() { m, err := c.manifest(ctx, tagFor(digest, ""), ociIndex); tag <- res{m: m, err: err} }()
	go func() {
		m, err := c.manifest(ctx, tagFor(digest, "sig"), ociManifest, dockerManifest)
		sig <- res{m: m, err: err}
	}()
	a, tg, sg := <-api, <-tag, <-sig
	d := discovery{legacy: sg.m, legacyErr: sg.err}
	if !skipAPI {
		d.api = &a.ok
	}
	idx := a.m
	switch {
	case a.err != nil:
		d.bundleErr = fmt.Errorf("referrers of %s: %w", digest, a.err)
		return d
	case !a.ok:
		// No referrers API: the tag schema of the OCI distribution spec.
		if errors.Is(tg.err, errNotFound) {
			return d
		}
		if tg.err != nil {
			d.bundleErr = fmt.Errorf("referrers tag of %s: %w", digest, tg.err)
			return d
		}
		idx = tg.m
	}
	d.bundles = bundleDescriptors(idx)
	return d
}

// bundleDescriptors keeps the cosign signature bundles of a referrers list.
func bundleDescriptors(idx *manifest) []descriptor {
	var out []descriptor
	for _, m := range idx.Manifests {
		// Filter here too: the tag index holds Notation signatures and
		// attestations, and a registry may ignore the query filter.
		if m.ArtifactType != bundleArtifactType && !strings.HasPrefix(m.ArtifactType, bundleMediaTypePrefix) {
			continue
		}
		if pt, ok := m.Annotations[predicateTypeAnnotation]; ok && pt != signPredicateType {
			continue
		}
		out = append(out, m)
	}
	return out
}

// referrersAPI asks the OCI referrers API; ok is false when the registry
// does not have one.
func (c *repoClient) referrersAPI(ctx context.Context, digest string) (m *manifest, ok bool, err error) {
	b, ct, err := c.get(ctx, "/referrers/"+digest+"?artifactType="+url.QueryEscape(bundleArtifactType), []string{ociIndex}, maxManifestBytes,
		http.StatusBadRequest, http.StatusNotAcceptable, http.StatusMethodNotAllowed)
	switch {
	case errors.Is(err, errNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	case !strings.HasPrefix(ct, ociIndex):
		return nil, false, nil
	}
	var idx manifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, false, &contentError{fmt.Errorf("referrers index: %w", err)}
	}
	return &idx, true, nil
}

// tagFor is cosign's tag for artifacts of digest: sha256-<hex>[.suffix].
func tagFor(digest, suffix string) string {
	t := strings.Replace(digest, ":", "-", 1)
	if suffix != "" {
		t += "." + suffix
	}
	return t
}

func checkDigest(want string, b []byte) error {
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("content digest %s does not match %s", got, want)
	}
	return nil
}
