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

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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

// repoClient reads one repository with one authenticated transport (one
// ping and at most one token per verification).
type repoClient struct {
	client *http.Client
	base   string // scheme://host/v2/<repo>
}

// openRepo authenticates to repo's registry with kc. The transport pings
// /v2/ and, for a bearer challenge, fetches a pull token for repo.
func openRepo(ctx context.Context, base http.RoundTripper, repo name.Repository, kc authn.Keychain) (*repoClient, error) {
	if kc == nil {
		kc = authn.NewMultiKeychain()
	}
	auth, err := authn.Resolve(ctx, kc, repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", repo.RegistryStr(), err)
	}
	return &repoClient{
		client: &http.Client{
			Transport: rt,
			// Blob GETs may be redirected to the registry's storage; more
			// than a few hops is a loop or an attack.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 {
					return errors.New("stopped after 3 redirects")
				}
				if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
					return errors.New("refusing redirect from https to http")
				}
				return nil
			},
		},
		base: fmt.Sprintf("%s://%s/v2/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr()),
	}, nil
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
// artifacts of a digest. The three lookups run in parallel: on a registry
// without a referrers API (distribution 2.x, which answers 404) the tag
// index would otherwise wait for that 404, and legacy signatures for both.
// That costs a wasted request when the first one suffices, and saves two
// round trips on the critical path (see BENCHMARKS.md).
type discovery struct {
	bundles   []descriptor
	bundleErr error // the referrers listing failed: could not complete
	legacy    *manifest
	legacyErr error // errNotFound when there is no .sig image
}

func (c *repoClient) discover(ctx context.Context, digest string) discovery {
	type res struct {
		m   *manifest
		ok  bool
		err error
	}
	api, tag, sig := make(chan res, 1), make(chan res, 1), make(chan res, 1)
	go func() { m, ok, err := c.referrersAPI(ctx, digest); api <- res{m, ok, err} }()
	go func() { m, err := c.manifest(ctx, tagFor(digest, ""), ociIndex); tag <- res{m: m, err: err} }()
	go func() {
		m, err := c.manifest(ctx, tagFor(digest, "sig"), ociManifest, dockerManifest)
		sig <- res{m: m, err: err}
	}()
	a, tg, sg := <-api, <-tag, <-sig
	d := discovery{legacy: sg.m, legacyErr: sg.err}
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
	for _, m := range idx.Manifests {
		// Filter here too: the tag index holds Notation signatures and
		// attestations, and a registry may ignore the query filter.
		if m.ArtifactType != bundleArtifactType && !strings.HasPrefix(m.ArtifactType, bundleMediaTypePrefix) {
			continue
		}
		if pt, ok := m.Annotations[predicateTypeAnnotation]; ok && pt != signPredicateType {
			continue
		}
		d.bundles = append(d.bundles, m)
	}
	return d
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
