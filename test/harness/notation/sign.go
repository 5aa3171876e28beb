package notation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	notationgo "github.com/notaryproject/notation-go"
	nregistry "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"
	"github.com/notaryproject/tspclient-go"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	orasremote "oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Envelope media types.
const (
	JWS  = "application/jose+json"
	COSE = "application/cose"
)

// SignOptions says how to sign.
type SignOptions struct {
	// MediaType is JWS (default) or COSE.
	MediaType string
	// TagSchema forces the sha256-<hex> tag index even on a registry with
	// the referrers API (notation-go falls back to it by itself on
	// registries without).
	TagSchema bool
	// Expiry, when set, is the signature's own expiry duration.
	Expiry time.Duration
	// Timestamper and TSARoots add an RFC 3161 countersignature.
	Timestamper tspclient.Timestamper
	TSARoots    *x509.CertPool
	// Username and Password, when set, are the registry's basic credentials.
	Username, Password string
}

// Repository is an oras repository over plain HTTP on 127.0.0.1, as
// notation-go signs through it.
func Repository(repo string, tagSchema bool, basic ...string) (*orasremote.Repository, error) {
	r, err := orasremote.NewRepository(repo)
	if err != nil {
		return nil, err
	}
	if len(basic) == 2 {
		r.Client = &auth.Client{Credential: auth.StaticCredential(r.Reference.Registry, auth.Credential{Username: basic[0], Password: basic[1]})}
	}
	r.PlainHTTP = true // oras has no HTTP fallback
	if tagSchema {
		if err := r.SetReferrersCapability(false); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Sign signs repo@digest ("127.0.0.1:PORT/path", "sha256:…") with
// notation-go's generic signer, the code `notation sign` runs, and pushes
// the signature to the registry. It returns the descriptor of what was
// signed (notation.Sign's answer).
func Sign(ctx context.Context, leaf *Leaf, repo, digest string, o SignOptions) (ocispec.Descriptor, error) {
	if o.MediaType == "" {
		o.MediaType = JWS
	}
	s, err := signer.NewGenericSigner(leaf.Key, leaf.Chain)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("signer: %w", err)
	}
	var basic []string
	if o.Username != "" {
		basic = []string{o.Username, o.Password}
	}
	r, err := Repository(repo, o.TagSchema, basic...)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := notationgo.Sign(ctx, s, nregistry.NewRepository(r), notationgo.SignOptions{
		SignerSignOptions: notationgo.SignerSignOptions{
			SignatureMediaType: o.MediaType,
			ExpiryDuration:     o.Expiry,
			Timestamper:        o.Timestamper,
			TSARootCAs:         o.TSARoots,
		},
		ArtifactReference: repo + "@" + digest,
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("sign %s@%s: %w", repo, digest, err)
	}
	return desc, nil
}

// Envelope returns the envelope bytes and descriptor of the first
// signature listed for repo@digest.
func Envelope(ctx context.Context, repo, digest string) ([]byte, ocispec.Descriptor, error) {
	r, err := Repository(repo, false)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	nr := nregistry.NewRepository(r)
	target, err := nr.Resolve(ctx, digest)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	var first *ocispec.Descriptor
	err = nr.ListSignatures(ctx, target, func(sigs []ocispec.Descriptor) error {
		if len(sigs) > 0 && first == nil {
			first = &sigs[0]
		}
		return nil
	})
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	if first == nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("no signature for %s@%s", repo, digest)
	}
	return nr.FetchSignatureBlob(ctx, *first)
}

// Attach pushes an existing envelope as a signature of another subject:
// the replay of a signature made for one digest onto another image.
func Attach(ctx context.Context, repo string, subject ocispec.Descriptor, mediaType string, envelope []byte, tagSchema bool) error {
	r, err := Repository(repo, tagSchema)
	if err != nil {
		return err
	}
	_, _, err = nregistry.NewRepository(r).PushSignature(ctx, mediaType, envelope, subject, nil)
	return err
}

// Describe returns the descriptor of repo@digest as the registry serves it.
func Describe(ctx context.Context, repo, digest string) (ocispec.Descriptor, error) {
	r, err := Repository(repo, false)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return r.Resolve(ctx, digest)
}

// Basic is the push option for a registry with basic credentials.
func Basic(user, pass string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: user, Password: pass})
}

// PushRandomImage pushes a small random image to repo:tag (plain HTTP on
// 127.0.0.1) and returns its manifest digest.
func PushRandomImage(ctx context.Context, repo, tag string, opts ...remote.Option) (string, error) {
	img, err := random.Image(256, 1)
	if err != nil {
		return "", err
	}
	ref, err := name.NewTag(repo+":"+tag, name.StrictValidation)
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref, img, append(opts, remote.WithContext(ctx))...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// AttachWithoutSubject stores an envelope as a signature of repo@digest the
// way registries without OCI 1.1 manifests held them: a signature manifest
// with no subject field, listed in the sha256-<hex> tag index. Verifiers
// must then take the target from the signed payload itself.
func AttachWithoutSubject(ctx context.Context, repo, digest, mediaType string, envelope []byte) error {
	r, err := Repository(repo, true)
	if err != nil {
		return err
	}
	push := func(mt string, b []byte) (ocispec.Descriptor, error) {
		d := content.NewDescriptorFromBytes(mt, b)
		if err := r.Push(ctx, d, bytes.NewReader(b)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return ocispec.Descriptor{}, fmt.Errorf("push %s: %w", mt, err)
		}
		return d, nil
	}
	layer, err := push(mediaType, envelope)
	if err != nil {
		return err
	}
	cfg, err := push(ocispec.MediaTypeEmptyJSON, []byte("{}"))
	if err != nil {
		return err
	}
	m, _ := json.Marshal(ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: nregistry.ArtifactTypeNotation,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{layer},
	})
	md, err := push(ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return err
	}
	md.ArtifactType = nregistry.ArtifactTypeNotation
	idx, _ := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{md},
	})
	id, err := push(ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		return err
	}
	return r.Tag(ctx, id, strings.Replace(digest, ":", "-", 1))
}

// Copy copies an image between repositories (plain HTTP on 127.0.0.1).
func Copy(ctx context.Context, from, to string) error {
	src, err := name.ParseReference(from, name.StrictValidation)
	if err != nil {
		return err
	}
	dst, err := name.ParseReference(to, name.StrictValidation)
	if err != nil {
		return err
	}
	desc, err := remote.Get(src, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	return remote.Write(dst, img, remote.WithContext(ctx))
}
