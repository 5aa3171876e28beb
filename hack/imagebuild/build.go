package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// DefaultSource is org.opencontainers.image.source.
	DefaultSource = "https://github.com/trustgate-dev/trustgate"
	// DefaultCACerts is Debian's CA bundle (package ca-certificates).
	DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"
	// BinaryPath is where the binary sits in the image (the entrypoint).
	BinaryPath = "/usr/local/bin/trustgate"
	// UID is the non-root user the image runs as; deploy/base's
	// securityContext names the same number.
	UID = 65532
	// versionVar is the -X target that `trustgate version` prints.
	versionVar = "github.com/trustgate-dev/trustgate/internal/cli.Version"
)

// Options say what to build.
type Options struct {
	Src       string // module root holding ./cmd/trustgate
	Version   string
	Revision  string
	Source    string
	CACerts   string
	Platforms []v1.Platform
	// Epoch is every timestamp in the image: tar mtimes, config created,
	// history, annotations, the SBOM's creation time.
	Epoch time.Time
	// Progress receives one line per step (nil: silent).
	Progress io.Writer
	// BinDir keeps the built binaries (default: a temporary folder, removed).
	BinDir string
}

// Result is the built index and the SBOM artifact that refers to it.
type Result struct {
	Index v1.ImageIndex
	SBOM  v1.Image
	// Binaries maps "os/arch" to the built file (only while BinDir exists).
	Binaries map[string]string
}

// ParsePlatforms reads "linux/amd64,linux/arm64".
func ParsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		osName, arch, ok := strings.Cut(p, "/")
		if !ok || osName != "linux" || arch == "" || strings.Contains(arch, "/") {
			return nil, fmt.Errorf("platform %q: want linux/ARCH (a static Linux binary is all this image holds)", p)
		}
		if seen[p] {
			return nil, fmt.Errorf("platform %q listed twice", p)
		}
		seen[p] = true
		out = append(out, v1.Platform{OS: osName, Architecture: arch})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no platform given")
	}
	return out, nil
}

func (o Options) annotations() map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.created":  o.Epoch.Format(time.RFC3339),
		"org.opencontainers.image.title":    "trustgate",
	}
}

func (o Options) logf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "imagebuild: "+format+"\n", args...)
	}
}

// Build compiles the binaries and assembles the index and its SBOM.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Version == "" || o.Revision == "" || o.Source == "" {
		return nil, fmt.Errorf("version, revision and source are required")
	}
	if len(o.Platforms) == 0 {
		return nil, fmt.Errorf("no platform given")
	}
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("CA certificates for the image: %w (Debian: apt-get install ca-certificates)", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("CA certificates %s: no PEM certificate in it", o.CACerts)
	}
	binDir := o.BinDir
	if binDir == "" {
		if binDir, err = os.MkdirTemp("", "trustgate-imagebuild-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(binDir)
	}
	bins := map[string][]byte{}
	res := &Result{Binaries: map[string]string{}}
	for _, p := range o.Platforms {
		out := filepath.Join(binDir, "trustgate-"+p.OS+"-"+p.Architecture)
		o.logf("building %s for %s/%s", out, p.OS, p.Architecture)
		if err := buildBinary(ctx, o, p, out); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		bins[p.OS+"/"+p.Architecture] = b
		res.Binaries[p.OS+"/"+p.Architecture] = out
	}
	if res.Index, err = Assemble(o, ca, bins); err != nil {
		return nil, err
	}
	// The module list is the same for every platform; take it from the first.
	first := o.Platforms[0]
	info, err := buildinfo.Read(bytes.NewReader(bins[first.OS+"/"+first.Architecture]))
	if err != nil {
		return nil, fmt.Errorf("read the build info of the %s binary: %w", first.Architecture, err)
	}
	if res.SBOM, err = SBOM(o, info, res.Index); err != nil {
		return nil, err
	}
	d, _ := res.Index.Digest()
	o.logf("index %s", d)
	return res, nil
}

// Ldflags are the linker flags of the image's binaries: no symbol table or
// build ID (reproducible), and the version `trustgate version` prints.
func Ldflags(version string) string {
	return "-s -w -buildid= -X " + versionVar + "=" + version
}

func buildBinary(ctx context.Context, o Options, p v1.Platform, out string) error {
	// -buildvcs=false: the revision is in the annotations; VCS stamping would
	// make a build from a clean checkout differ from one from `git archive`.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", Ldflags(o.Version), "-o", out, "./cmd/trustgate")
	cmd.Dir = o.Src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOFLAGS=")
	if o.Progress != nil {
		cmd.Stderr = o.Progress
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/trustgate for %s/%s in %s: %w", p.OS, p.Architecture, o.Src, err)
	}
	return nil
}

// Assemble builds the index from already-built binaries ("os/arch" → bytes).
// It is pure: the same inputs give the same digest.
func Assemble(o Options, caPEM []byte, bins map[string][]byte) (v1.ImageIndex, error) {
	base, err := layer(o.Epoch, baseFiles(caPEM))
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	anns := o.annotations()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, p := range o.Platforms {
		bin, ok := bins[p.OS+"/"+p.Architecture]
		if !ok {
			return nil, fmt.Errorf("no binary for %s/%s", p.OS, p.Architecture)
		}
		img, err := platformImage(o, p, base, bin, anns)
		if err != nil {
			return nil, fmt.Errorf("image for %s/%s: %w", p.OS, p.Architecture, err)
		}
		plat := p
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType:   types.OCIManifestSchema1,
			Platform:    &plat,
			Annotations: anns,
		}})
	}
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, anns).(v1.ImageIndex), nil
}

func platformImage(o Options, p v1.Platform, base v1.Layer, bin []byte, anns map[string]string) (v1.Image, error) {
	binLayer, err := layer(o.Epoch, []file{
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/local/", mode: 0o755, dir: true},
		{name: "usr/local/bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, data: bin},
	})
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}
	created := v1.Time{Time: o.Epoch}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "imagebuild: CA certificates, /etc/passwd (nonroot 65532), /tmp",
		}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{
			Created: created, CreatedBy: "imagebuild: " + BinaryPath + " (go build -trimpath, CGO_ENABLED=0)",
		}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = created
	cf.Author = ""
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", UID, UID),
		Entrypoint: []string{BinaryPath},
		WorkingDir: "/",
		Env: []string{
			"PATH=/usr/local/bin:/usr/bin:/bin",
			"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
		},
		Labels: anns,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}

// file is one tar entry.
type file struct {
	name     string // relative, directories end in "/"
	mode     int64
	dir      bool
	uid, gid int
	data     []byte
}

func baseFiles(caPEM []byte) []file {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, UID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", UID)
	return []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: caPEM},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: UID, gid: UID},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
}

// layer writes files as a tar (sorted, fixed owners, times and modes) and
// gzips it without a name or time in the header, so equal files give an equal
// digest.
func layer(epoch time.Time, files []file) (v1.Layer, error) {
	files = append([]file(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range files {
		if path.Clean("/"+f.name) == "/" || strings.Contains(f.name, "..") {
			return nil, fmt.Errorf("bad tar entry name %q", f.name)
		}
		h := &tar.Header{
			Name:    f.name,
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		// PAX would add atime/ctime records only if set; keep them zero.
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if !f.dir {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tb.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	blob := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
