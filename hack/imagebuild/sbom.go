package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// SPDXMediaType is the SBOM's artifactType and layer media type.
	SPDXMediaType types.MediaType = "application/spdx+json"
	// emptyConfig is OCI 1.1's empty descriptor, the config of artifacts.
	emptyConfigType types.MediaType = "application/vnd.oci.empty.v1+json"
)

// spdxDoc is the part of SPDX 2.3 this SBOM fills.
type spdxDoc struct {
	SPDXVersion       string          `json:"spdxVersion"`
	DataLicense       string          `json:"dataLicense"`
	SPDXID            string          `json:"SPDXID"`
	Name              string          `json:"name"`
	DocumentNamespace string          `json:"documentNamespace"`
	CreationInfo      spdxCreation    `json:"creationInfo"`
	Packages          []spdxPackage   `json:"packages"`
	Relationships     []spdxRelations `json:"relationships"`
}

type spdxCreation struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name             string       `json:"name"`
	SPDXID           string       `json:"SPDXID"`
	VersionInfo      string       `json:"versionInfo,omitempty"`
	DownloadLocation string       `json:"downloadLocation"`
	FilesAnalyzed    bool         `json:"filesAnalyzed"`
	Comment          string       `json:"comment,omitempty"`
	ExternalRefs     []spdxExtRef `json:"externalRefs,omitempty"`
	PrimaryPurpose   string       `json:"primaryPackagePurpose,omitempty"`
}

type spdxExtRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelations struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]`)

func spdxID(prefix, s string) string {
	return "SPDXRef-" + prefix + "-" + spdxIDUnsafe.ReplaceAllString(s, "-")
}

// SPDX returns the SBOM of the binary described by info (the module list
// `go version -m` prints), for the image whose index digest is subject.
func SPDX(o Options, info *debug.BuildInfo, subject v1.Hash) ([]byte, error) {
	if info == nil || info.Main.Path == "" {
		return nil, fmt.Errorf("the binary has no module build info")
	}
	purl := func(path, version string) string {
		return "pkg:golang/" + path + "@" + version
	}
	main := spdxPackage{
		Name:             info.Main.Path,
		SPDXID:           "SPDXRef-Package-trustgate",
		VersionInfo:      o.Version,
		DownloadLocation: "git+" + o.Source + "@" + o.Revision,
		PrimaryPurpose:   "APPLICATION",
		ExternalRefs:     []spdxExtRef{{"PACKAGE-MANAGER", "purl", purl(info.Main.Path, o.Version)}},
	}
	var settings []string
	for _, s := range info.Settings {
		settings = append(settings, s.Key+"="+s.Value)
	}
	main.Comment = "built with " + info.GoVersion + "; " + strings.Join(settings, " ")
	doc := spdxDoc{
		SPDXVersion:       "SPDX-2.3",
		DataLicense:       "CC0-1.0",
		SPDXID:            "SPDXRef-DOCUMENT",
		Name:              "trustgate-" + o.Version,
		DocumentNamespace: o.Source + "/spdx/" + subject.String(),
		CreationInfo: spdxCreation{
			Created:  o.Epoch.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: trustgate-imagebuild", "Organization: trustgate"},
		},
		Packages: []spdxPackage{main, {
			Name:             "stdlib",
			SPDXID:           "SPDXRef-Package-stdlib",
			VersionInfo:      info.GoVersion,
			DownloadLocation: "https://go.dev/dl/",
			ExternalRefs:     []spdxExtRef{{"PACKAGE-MANAGER", "purl", purl("stdlib", info.GoVersion)}},
		}},
		Relationships: []spdxRelations{
			{"SPDXRef-DOCUMENT", "DESCRIBES", main.SPDXID},
			{main.SPDXID, "DEPENDS_ON", "SPDXRef-Package-stdlib"},
		},
	}
	for _, d := range info.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		p := spdxPackage{
			Name:             m.Path,
			SPDXID:           spdxID("Package", m.Path+"-"+m.Version),
			VersionInfo:      m.Version,
			DownloadLocation: "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip",
			ExternalRefs:     []spdxExtRef{{"PACKAGE-MANAGER", "purl", purl(m.Path, m.Version)}},
		}
		if m.Sum != "" {
			// The go.sum hash (h1:, a SHA-256 over the module's file list) is
			// no SPDX checksum algorithm; it is kept for cross-checking.
			p.Comment = "go.sum " + m.Sum
		}
		if d.Replace != nil {
			p.Comment = strings.TrimSpace(p.Comment + "; replaces " + d.Path + "@" + d.Version)
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, spdxRelations{main.SPDXID, "DEPENDS_ON", p.SPDXID})
	}
	return json.MarshalIndent(doc, "", "  ")
}

// artifact is an OCI 1.1 artifact manifest: empty config, one blob, a subject.
type artifact struct {
	manifest []byte
	blob     v1.Layer
}

var _ partial.CompressedImageCore = (*artifact)(nil)

func (a *artifact) RawConfigFile() ([]byte, error)      { return []byte("{}"), nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, err := a.blob.Digest()
	if err != nil {
		return nil, err
	}
	if h != d {
		return nil, fmt.Errorf("artifact has no blob %s", h)
	}
	return a.blob, nil
}

// SBOM returns the SPDX document as an OCI artifact whose subject is index.
func SBOM(o Options, info *debug.BuildInfo, index v1.ImageIndex) (v1.Image, error) {
	subject, err := partial.Descriptor(index)
	if err != nil {
		return nil, err
	}
	doc, err := SPDX(o, info, subject.Digest)
	if err != nil {
		return nil, err
	}
	blob := static.NewLayer(doc, SPDXMediaType)
	blobDesc, err := partial.Descriptor(blob)
	if err != nil {
		return nil, err
	}
	cfgHash, cfgSize, err := v1.SHA256(strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  string(SPDXMediaType),
		Config:        v1.Descriptor{MediaType: emptyConfigType, Digest: cfgHash, Size: cfgSize, Data: []byte("{}")},
		Layers:        []v1.Descriptor{{MediaType: SPDXMediaType, Digest: blobDesc.Digest, Size: blobDesc.Size}},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations: map[string]string{
			"org.opencontainers.image.created": o.Epoch.UTC().Format(time.RFC3339),
			"org.opencontainers.image.title":   "trustgate-" + o.Version + ".spdx.json",
		},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&artifact{manifest: raw, blob: blob})
}

// WriteLayout writes the index and the SBOM into an OCI image layout. The
// layout's index.json lists the image index first, then the SBOM (with its
// artifactType), as `oras` and `crane` expect of referrers in a layout.
func WriteLayout(dir string, res *Result) error {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		return fmt.Errorf("OCI layout %s exists: remove it first (blobs of another build would stay)", dir)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(res.Index); err != nil {
		return fmt.Errorf("OCI layout %s: write index: %w", dir, err)
	}
	if err := p.AppendImage(res.SBOM, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.title": "sbom",
	})); err != nil {
		return fmt.Errorf("OCI layout %s: write SBOM: %w", dir, err)
	}
	return nil
}

// Push writes the index to repo (tagged with tag when repo has none) and the
// SBOM by digest; registries without the referrers API get the OCI 1.1
// fallback tag sha256-<index digest> listing it. It returns REPO@DIGEST.
func Push(ctx context.Context, repo, tag string, res *Result) (string, error) {
	ref, err := name.ParseReference(repo, name.StrictValidation)
	if err != nil {
		// Without a tag, StrictValidation refuses; add the version.
		ref, err = name.ParseReference(repo+":"+sanitizeTag(tag), name.StrictValidation)
		if err != nil {
			return "", fmt.Errorf("-repo %q: %w", repo, err)
		}
	}
	if _, ok := ref.(name.Tag); !ok {
		return "", fmt.Errorf("-repo %q: give a repository or repository:tag, not a digest", repo)
	}
	opts := []remote.Option{remote.WithContext(ctx)}
	if err := remote.WriteIndex(ref, res.Index, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := res.SBOM.Digest()
	if err != nil {
		return "", err
	}
	if err := remote.Write(ref.Context().Digest(d.String()), res.SBOM, opts...); err != nil {
		return "", fmt.Errorf("push the SBOM of %s: %w", ref, err)
	}
	id, err := res.Index.Digest()
	if err != nil {
		return "", err
	}
	return ref.Context().Digest(id.String()).String(), nil
}

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// sanitizeTag turns a version (git describe output) into a valid tag.
func sanitizeTag(v string) string {
	t := tagUnsafe.ReplaceAllString(v, "-")
	if t == "" || t[0] == '.' || t[0] == '-' {
		t = "v" + t
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}
