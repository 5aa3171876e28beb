// Package cosign is the test harness for the cosign verifier: the real
// cosign CLI (installed once into the trustgate cache), Go-side signers for
// what the CLI cannot do offline (keyless, through sigstore-go's virtual
// Sigstore, and fast key signatures for unit tests), attaching signatures
// to an image the way cosign does (bundles as OCI referrers with the
// `sha256-<hex>` tag index, legacy `sha256-<hex>.sig` images), an
// in-memory registry with a working referrers API, and a request-counting
// proxy.
package cosign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types and annotations as cosign v3.1.3 writes them.
const (
	BundleMediaType   = "application/vnd.dev.sigstore.bundle.v0.3+json"
	SimpleSigningType = "application/vnd.dev.cosign.simplesigning.v1+json"
	EmptyConfigType   = "application/vnd.oci.empty.v1+json"
	SignPredicateType = "https://sigstore.dev/cosign/sign/v1"
	AnnSignature      = "dev.cosignproject.cosign/signature"
	AnnCertificate    = "dev.sigstore.cosign/certificate"
	AnnChain          = "dev.sigstore.cosign/chain"
	AnnBundle         = "dev.sigstore.cosign/bundle"
	AnnTimestamp      = "dev.sigstore.cosign/rfc3161timestamp"
	annPredicateType  = "dev.sigstore.bundle.predicateType"
)

type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// AttachBundle stores bundleJSON for image (repo@digest) as cosign does: an
// OCI manifest with artifactType bundle and the image as subject, pushed by
// digest, then listed in the `sha256-<hex>` tag index (read-modify-write,
// as cosign does when the registry has no referrers API; harmless when it
// has one). sigRepo, when set, receives the artifacts instead of the
// image's repository (COSIGN_REPOSITORY).
func AttachBundle(ctx context.Context, image name.Digest, sigRepo *name.Repository, bundleJSON []byte, predicateType string, opts ...remote.Option) error {
	repo := image.Context()
	if sigRepo != nil {
		repo = *sigRepo
	}
	opts = append(opts, remote.WithContext(ctx))
	subject, err := remote.Head(image, opts...)
	if err != nil {
		return fmt.Errorf("attach bundle: head %s: %w", image, err)
	}
	cfg := static.NewLayer([]byte("{}"), EmptyConfigType)
	layer := static.NewLayer(bundleJSON, BundleMediaType)
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return fmt.Errorf("attach bundle: push blob: %w", err)
		}
	}
	desc := func(l v1.Layer) map[string]any {
		d, _ := l.Digest()
		s, _ := l.Size()
		mt, _ := l.MediaType()
		return map[string]any{"mediaType": mt, "digest": d.String(), "size": s}
	}
	ann := map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", annPredicateType: predicateType}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  BundleMediaType,
		"config":        desc(cfg),
		"layers":        []any{desc(layer)},
		"subject":       map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest.String(), "size": subject.Size},
		"annotations":   ann,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	h, size, err := v1.SHA256(strings.NewReader(string(mb)))
	if err != nil {
		return err
	}
	if err := remote.Put(repo.Digest(h.String()), rawManifest{mb, types.OCIManifestSchema1}, opts...); err != nil {
		return fmt.Errorf("attach bundle: put manifest: %w", err)
	}
	// The tag index, as the OCI referrers tag schema and cosign define it.
	tag := repo.Tag(strings.Replace(image.DigestStr(), ":", "-", 1))
	idx := map[string]any{"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": []any{}}
	old, err := remote.Get(tag, opts...)
	var terr *transport.Error
	switch {
	case err == nil:
		if err := json.Unmarshal(old.Manifest, &idx); err != nil {
			return fmt.Errorf("attach bundle: existing tag index: %w", err)
		}
	case errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound:
	default:
		return fmt.Errorf("attach bundle: get tag index: %w", err)
	}
	list, _ := idx["manifests"].([]any)
	idx["manifests"] = append(list, map[string]any{
		"mediaType": types.OCIManifestSchema1, "digest": h.String(), "size": size,
		"artifactType": BundleMediaType, "annotations": ann,
	})
	ib, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := remote.Put(tag, rawManifest{ib, types.OCIImageIndex}, opts...); err != nil {
		return fmt.Errorf("attach bundle: put tag index: %w", err)
	}
	return nil
}

// AttachLegacy adds one simple-signing layer (payload plus annotations) to
// the image's `sha256-<hex>.sig` signature image, creating it if needed.
func AttachLegacy(ctx context.Context, image name.Digest, sigRepo *name.Repository, payload []byte, annotations map[string]string, opts ...remote.Option) error {
	repo := image.Context()
	if sigRepo != nil {
		repo = *sigRepo
	}
	opts = append(opts, remote.WithContext(ctx))
	tag := repo.Tag(strings.Replace(image.DigestStr(), ":", "-", 1) + ".sig")
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	if old, err := remote.Image(tag, opts...); err == nil {
		base = old
	} else {
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusNotFound {
			return fmt.Errorf("attach legacy: get %s: %w", tag, err)
		}
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, SimpleSigningType),
		Annotations: annotations,
	})
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return fmt.Errorf("attach legacy: push %s: %w", tag, err)
	}
	return nil
}

// SimpleSigningPayload is cosign's legacy payload for digest of ref's
// repository.
func SimpleSigningPayload(image name.Digest) []byte {
	p := map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": image.Context().Name()},
			"image":    map[string]string{"docker-manifest-digest": image.DigestStr()},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	}
	b, _ := json.Marshal(p)
	return b
}
