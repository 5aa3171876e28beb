package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trustgate-dev/trustgate/test/harness/proc"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func testOptions() Options {
	plats, _ := ParsePlatforms("linux/amd64,linux/arm64")
	return Options{
		Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567",
		Source: DefaultSource, Platforms: plats, Epoch: time.Unix(1700000000, 0).UTC(),
	}
}

func testBins() map[string][]byte {
	return map[string][]byte{"linux/amd64": []byte("amd64 binary"), "linux/arm64": []byte("arm64 binary")}
}

func digestOf(t *testing.T, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "linux/amd64,linux/arm64", want: []string{"linux/amd64", "linux/arm64"}},
		{in: " linux/arm64 ", want: []string{"linux/arm64"}},
		{in: "", wantErr: "want linux/ARCH"},
		{in: "windows/amd64", wantErr: "want linux/ARCH"},
		{in: "linux/arm/v7", wantErr: "want linux/ARCH"},
		{in: "linux/amd64,linux/amd64", wantErr: "twice"},
	} {
		got, err := ParsePlatforms(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParsePlatforms(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePlatforms(%q): %v", tc.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.OS+"/"+p.Architecture)
		}
		if !slices.Equal(s, tc.want) {
			t.Errorf("ParsePlatforms(%q) = %v, want %v", tc.in, s, tc.want)
		}
	}
}

func TestSanitizeTag(t *testing.T) {
	for in, want := range map[string]string{
		"v0.1.0":                 "v0.1.0",
		"1104fb4-dirty":          "1104fb4-dirty",
		"v1.0+build/7":           "v1.0-build-7",
		"-x":                     "v-x",
		strings.Repeat("a", 200): strings.Repeat("a", 128),
	} {
		if got := sanitizeTag(in); got != want {
			t.Errorf("sanitizeTag(%q) = %q, want %q", in, got, want)
		}
		if _, err := name.NewTag("r.example/x:"+sanitizeTag(in), name.StrictValidation); err != nil {
			t.Errorf("sanitizeTag(%q) is not a valid tag: %v", in, err)
		}
	}
}

// TestAssembleDeterministic: equal inputs give equal digests (nothing reads
// the clock or the file system), and each input shows in the digest.
func TestAssembleDeterministic(t *testing.T) {
	o := testOptions()
	a, err := Assemble(o, []byte(testCA), testBins())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Assemble(o, []byte(testCA), testBins())
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, a) != digestOf(t, b) {
		t.Fatalf("two assemblies of the same inputs: %s and %s", digestOf(t, a), digestOf(t, b))
	}
	changed := map[string]func() (v1.ImageIndex, error){
		"epoch": func() (v1.ImageIndex, error) {
			o2 := o
			o2.Epoch = o.Epoch.Add(time.Second)
			return Assemble(o2, []byte(testCA), testBins())
		},
		"binary": func() (v1.ImageIndex, error) {
			bins := testBins()
			bins["linux/arm64"] = []byte("other")
			return Assemble(o, []byte(testCA), bins)
		},
		"revision": func() (v1.ImageIndex, error) {
			o2 := o
			o2.Revision = "ffff"
			return Assemble(o2, []byte(testCA), testBins())
		},
		"CA bundle": func() (v1.ImageIndex, error) { return Assemble(o, []byte(testCA+testCA), testBins()) },
	}
	for what, f := range changed {
		idx, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if digestOf(t, idx) == digestOf(t, a) {
			t.Errorf("changing the %s left the digest unchanged", what)
		}
	}
	if _, err := Assemble(o, []byte(testCA), map[string][]byte{"linux/amd64": nil}); err == nil || !strings.Contains(err.Error(), "no binary for linux/arm64") {
		t.Errorf("missing arm64 binary: err = %v", err)
	}
}

// TestAssembleContents checks the index, configs, annotations and every tar
// entry of both platforms.
func TestAssembleContents(t *testing.T) {
	o := testOptions()
	idx, err := Assemble(o, []byte(testCA), testBins())
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type = %s", im.MediaType)
	}
	wantAnns := map[string]string{
		"org.opencontainers.image.source":   DefaultSource,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
		"org.opencontainers.image.title":    "trustgate",
	}
	checkAnns := func(where string, got map[string]string) {
		t.Helper()
		for k, v := range wantAnns {
			if got[k] != v {
				t.Errorf("%s annotation %s = %q, want %q", where, k, got[k], v)
			}
		}
	}
	checkAnns("index", im.Annotations)
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2", len(im.Manifests))
	}
	for i, arch := range []string{"amd64", "arm64"} {
		desc := im.Manifests[i]
		if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != arch {
			t.Errorf("manifest %d platform = %+v, want linux/%s", i, desc.Platform, arch)
		}
		if desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %d media type = %s", i, desc.MediaType)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		checkAnns(arch+" manifest", m.Annotations)
		if m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 2 {
			t.Errorf("%s manifest: config %s, %d layers; want OCI config and 2 layers", arch, m.Config.MediaType, len(m.Layers))
		}
		for _, l := range m.Layers {
			if l.MediaType != types.OCILayer {
				t.Errorf("%s layer media type %s, want %s", arch, l.MediaType, types.OCILayer)
			}
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != arch || !cf.Created.Time.Equal(o.Epoch) {
			t.Errorf("%s config: %s/%s created %s", arch, cf.OS, cf.Architecture, cf.Created)
		}
		if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/trustgate"}) {
			t.Errorf("%s config: user %q entrypoint %q", arch, cf.Config.User, cf.Config.Entrypoint)
		}
		for _, h := range cf.History {
			if !h.Created.Time.Equal(o.Epoch) {
				t.Errorf("%s history created %s, want the epoch", arch, h.Created)
			}
		}
		files := tarEntries(t, img)
		want := map[string]string{
			"etc/passwd":                        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
			"etc/group":                         "root:x:0:\nnonroot:x:65532:\n",
			"etc/ssl/certs/ca-certificates.crt": testCA,
			"usr/local/bin/trustgate":           arch + " binary",
		}
		for n, content := range want {
			e, ok := files[n]
			if !ok {
				t.Errorf("%s: no %s in the image", arch, n)
				continue
			}
			if e.content != content {
				t.Errorf("%s: %s = %q, want %q", arch, n, e.content, content)
			}
		}
		if e := files["usr/local/bin/trustgate"]; e.hdr == nil || e.hdr.Mode != 0o755 {
			t.Errorf("%s: binary mode is not 0755", arch)
		}
		if e := files["tmp/"]; e.hdr == nil || e.hdr.Mode != 0o1777 {
			t.Errorf("%s: /tmp is missing or not 1777", arch)
		}
		for n, e := range files {
			if !e.hdr.ModTime.Equal(o.Epoch) || e.hdr.Uname != "" || e.hdr.Gname != "" {
				t.Errorf("%s: %s has mtime %s owner %q/%q; want the epoch and numeric owners", arch, n, e.hdr.ModTime, e.hdr.Uname, e.hdr.Gname)
			}
			if n != "home/nonroot/" && (e.hdr.Uid != 0 || e.hdr.Gid != 0) {
				t.Errorf("%s: %s owned by %d:%d, want 0:0", arch, n, e.hdr.Uid, e.hdr.Gid)
			}
		}
	}
	// The base layer is one blob for both platforms.
	l0 := func(i int) v1.Hash {
		img, _ := idx.Image(im.Manifests[i].Digest)
		m, _ := img.Manifest()
		return m.Layers[0].Digest
	}
	if l0(0) != l0(1) {
		t.Errorf("base layers differ between platforms: %s, %s", l0(0), l0(1))
	}
}

type entry struct {
	hdr     *tar.Header
	content string
}

// tarEntries reads every layer's tar in order, checking that each layer's
// entries are sorted (the order is part of the digest).
func tarEntries(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var names []string
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
			out[h.Name] = entry{hdr: h, content: string(b)}
		}
		rc.Close()
		if !slices.IsSorted(names) {
			t.Errorf("layer entries not sorted: %v", names)
		}
	}
	return out
}

func testBuildInfo() *debug.BuildInfo {
	return &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      "github.com/trustgate-dev/trustgate/cmd/trustgate",
		Main:      debug.Module{Path: "github.com/trustgate-dev/trustgate", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/spf13/cobra", Version: "v1.10.2", Sum: "h1:abc="},
			{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v2.0.0", Sum: "h1:def="}},
		},
		Settings: []debug.BuildSetting{{Key: "CGO_ENABLED", Value: "0"}, {Key: "-trimpath", Value: "true"}},
	}
}

func TestSPDX(t *testing.T) {
	o := testOptions()
	subject := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	raw, err := SPDX(o, testBuildInfo(), subject)
	if err != nil {
		t.Fatal(err)
	}
	var doc spdxDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.CreationInfo.Created != "2023-11-14T22:13:20Z" || !strings.HasSuffix(doc.DocumentNamespace, subject.String()) {
		t.Errorf("document header = %+v", doc)
	}
	var names []string
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		names = append(names, p.Name+"@"+p.VersionInfo)
		if ids[p.SPDXID] {
			t.Errorf("duplicate SPDXID %s", p.SPDXID)
		}
		ids[p.SPDXID] = true
	}
	want := []string{"github.com/trustgate-dev/trustgate@v1.2.3", "stdlib@go1.26.8", "github.com/spf13/cobra@v1.10.2", "example.com/new@v2.0.0"}
	if !slices.Equal(names, want) {
		t.Errorf("packages = %v, want %v", names, want)
	}
	if len(doc.Relationships) != 4 || doc.Relationships[0].Type != "DESCRIBES" {
		t.Errorf("relationships = %+v, want DESCRIBES + 3 DEPENDS_ON", doc.Relationships)
	}
	for _, r := range doc.Relationships {
		if !ids[r.Related] {
			t.Errorf("relationship to unknown element %s", r.Related)
		}
	}
	if _, err := SPDX(o, &debug.BuildInfo{}, subject); err == nil {
		t.Error("SPDX of a binary without module info: no error")
	}
}

// TestPushWithSBOM pushes to an in-memory registry without the referrers
// API: the index is tagged, and the SBOM is found through the OCI 1.1
// fallback tag as a referrer of the index.
func TestPushWithSBOM(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	o := testOptions()
	idx, err := Assemble(o, []byte(testCA), testBins())
	if err != nil {
		t.Fatal(err)
	}
	sbom, err := SBOM(o, testBuildInfo(), idx)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Push(context.Background(), host+"/trustgate", "v1.2.3+x", &Result{Index: idx, SBOM: sbom})
	if err != nil {
		t.Fatal(err)
	}
	if want := host + "/trustgate@" + digestOf(t, idx).String(); ref != want {
		t.Errorf("Push = %s, want %s", ref, want)
	}
	tag, _ := name.NewTag(host+"/trustgate:v1.2.3-x", name.StrictValidation)
	desc, err := remote.Get(tag)
	if err != nil {
		t.Fatalf("the version tag was not pushed: %v", err)
	}
	if desc.Digest != digestOf(t, idx) {
		t.Errorf("tag points to %s, want the index %s", desc.Digest, digestOf(t, idx))
	}
	refs, err := remote.Referrers(tag.Context().Digest(desc.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	rm, err := refs.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Manifests) != 1 || rm.Manifests[0].ArtifactType != string(SPDXMediaType) {
		t.Fatalf("referrers of the index = %+v, want one %s", rm.Manifests, SPDXMediaType)
	}
	art, err := remote.Image(tag.Context().Digest(rm.Manifests[0].Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := art.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest != digestOf(t, idx) || m.Config.MediaType != emptyConfigType {
		t.Errorf("SBOM manifest subject %+v config %s", m.Subject, m.Config.MediaType)
	}
	layers, err := art.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("SBOM layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var doc spdxDoc
	if err := json.NewDecoder(rc).Decode(&doc); err != nil {
		t.Fatalf("SBOM blob is not SPDX JSON: %v", err)
	}
	if !strings.HasSuffix(doc.DocumentNamespace, digestOf(t, idx).String()) {
		t.Errorf("SBOM namespace %s does not name the index", doc.DocumentNamespace)
	}
	if _, err := Push(context.Background(), host+"/trustgate@"+digestOf(t, idx).String(), "v1", &Result{Index: idx, SBOM: sbom}); err == nil {
		t.Error("Push to a digest reference: no error")
	}
}

// sourceTree returns a pristine copy of the committed tree, so edits made
// while the test runs cannot change what is built (proc.CommittedTree).
func sourceTree(t *testing.T) (dir, revision string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return proc.CommittedTree(t, root)
}

// TestBuildReproducibleAndRuns is `make image` twice from one commit: the
// same index digest. Then the amd64 image's layers are unpacked (no daemon)
// and its entrypoint runs `trustgate version`.
func TestBuildReproducibleAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds trustgate four times (two platforms, twice)")
	}
	if _, err := os.Stat(DefaultCACerts); err != nil && os.Getenv("CI") == "" {
		t.Skipf("no CA bundle at %s (set CI to make this a failure)", DefaultCACerts)
	}
	src, rev := sourceTree(t)
	o := testOptions()
	o.Src, o.Revision, o.CACerts = src, rev, DefaultCACerts
	o.Version = "v0.0.0-test"
	var digests []v1.Hash
	var first *Result
	for i := 0; i < 2; i++ {
		o.BinDir = t.TempDir()
		res, err := Build(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, digestOf(t, res.Index))
		sd, err := res.SBOM.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, sd)
		if first == nil {
			first = res
		}
	}
	if digests[0] != digests[2] {
		t.Fatalf("two builds of one commit: index %s and %s", digests[0], digests[2])
	}
	if digests[1] != digests[3] {
		t.Errorf("two builds of one commit: SBOM %s and %s", digests[1], digests[3])
	}
	t.Logf("index %s, SBOM %s", digests[0], digests[1])

	// An OCI layout round trip keeps the digest.
	lay := filepath.Join(t.TempDir(), "oci")
	if err := WriteLayout(lay, first); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(lay, first); err == nil {
		t.Error("writing into an existing layout: no error")
	}
	lp, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	li, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	lim, err := li.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(lim.Manifests) != 2 || lim.Manifests[0].Digest != digests[0] || lim.Manifests[1].ArtifactType != string(SPDXMediaType) {
		t.Fatalf("layout index.json = %+v, want the image index then the SBOM", lim.Manifests)
	}
	idx, err := li.ImageIndex(digests[0])
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("cannot run the linux/amd64 binary on %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := unpack(mutate.Extract(img), root); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	entry := filepath.Join(root, cf.Config.Entrypoint[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, entry, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", entry, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "trustgate v0.0.0-test" {
		t.Errorf("trustgate version from the image = %q, want %q", got, "trustgate v0.0.0-test")
	}
	// The binary is static: no interpreter, no libc in the image.
	if b, err := os.ReadFile(entry); err != nil || bytes.Contains(b, []byte("/lib64/ld-linux")) {
		t.Errorf("the binary names a dynamic loader (err %v)", err)
	}
}

// unpack writes a flattened image file system (mutate.Extract) under root,
// refusing entries that would leave it.
func unpack(rc io.ReadCloser, root string) error {
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(root, filepath.Clean("/"+h.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			return fmt.Errorf("tar entry %q leaves the root", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected tar entry %q of type %c", h.Name, h.Typeflag)
		}
	}
}
