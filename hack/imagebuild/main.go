// Command imagebuild builds trustgate's OCI image without a container daemon
// (no base image can be pulled here, and a static Go binary needs none):
//
//   - one static binary per platform (CGO_ENABLED=0, -trimpath, fixed -ldflags);
//   - layers made with go-containerregistry on empty.Image: CA certificates and
//     /etc/passwd with the non-root user 65532 (shared by every platform), then
//     the binary;
//   - an OCI index with the platforms, OCI annotations (source, revision,
//     version, created) on the index and on every manifest;
//   - an SPDX 2.3 SBOM of the binary's modules (what `go version -m` prints)
//     as an OCI artifact whose subject is the index.
//
// Every timestamp is SOURCE_DATE_EPOCH (the commit time in `make image`), tar
// entries are sorted with fixed owners and modes and the gzip stream has no
// name or time, so two builds of one commit have the same digest.
//
//	go run ./hack/imagebuild -repo 127.0.0.1:5000/trustgate   # push (tag = version)
//	go run ./hack/imagebuild -layout bin/image                # OCI image layout
//
// The last line on stdout is the index reference by digest (REPO@sha256:… or
// LAYOUT@sha256:…).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	var (
		o         Options
		platforms string
		epoch     string
		repo      string
		layoutDir string
		digestOut string
	)
	fs.StringVar(&o.Src, "src", ".", "trustgate's source tree (the module root)")
	fs.StringVar(&o.Version, "version", "", "version stamped into the binary and the annotations (default: git describe)")
	fs.StringVar(&o.Revision, "revision", "", "source revision for the annotations (default: git rev-parse HEAD)")
	fs.StringVar(&o.Source, "source", DefaultSource, "org.opencontainers.image.source")
	fs.StringVar(&o.CACerts, "ca-certs", DefaultCACerts, "CA bundle copied to /etc/ssl/certs/ca-certificates.crt")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	fs.StringVar(&epoch, "epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time of every timestamp (default: $SOURCE_DATE_EPOCH, else the commit time)")
	fs.StringVar(&repo, "repo", "", "push to this repository (REGISTRY/PATH[:TAG]; the tag defaults to the version)")
	fs.StringVar(&layoutDir, "layout", "", "write an OCI image layout into this folder")
	fs.StringVar(&digestOut, "digest-file", "", "also write the index digest (sha256:…) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if (repo == "") == (layoutDir == "") {
		return fmt.Errorf("give exactly one of -repo and -layout")
	}
	var err error
	if o.Platforms, err = ParsePlatforms(platforms); err != nil {
		return err
	}
	if o.Version == "" {
		if o.Version, err = git(o.Src, "describe", "--always", "--dirty"); err != nil {
			return fmt.Errorf("-version not given: %w", err)
		}
	}
	if o.Revision == "" {
		if o.Revision, err = git(o.Src, "rev-parse", "HEAD"); err != nil {
			return fmt.Errorf("-revision not given: %w", err)
		}
	}
	if epoch == "" {
		if epoch, err = git(o.Src, "log", "-1", "--format=%ct"); err != nil {
			return fmt.Errorf("-epoch and SOURCE_DATE_EPOCH not given: %w", err)
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil || sec < 0 {
		return fmt.Errorf("epoch %q: want a non-negative Unix time in seconds", epoch)
	}
	o.Epoch = time.Unix(sec, 0).UTC()
	o.Progress = os.Stderr

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	res, err := Build(ctx, o)
	if err != nil {
		return err
	}
	digest, err := res.Index.Digest()
	if err != nil {
		return err
	}
	var ref string
	if layoutDir != "" {
		if err := WriteLayout(layoutDir, res); err != nil {
			return err
		}
		ref = layoutDir + "@" + digest.String()
	} else {
		if ref, err = Push(ctx, repo, o.Version, res); err != nil {
			return err
		}
	}
	if digestOut != "" {
		if err := os.WriteFile(digestOut, []byte(digest.String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", digestOut, err)
		}
	}
	fmt.Println(ref)
	return nil
}

// git runs git in dir and returns its trimmed output.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %w", strings.Join(args, " "), dir, err)
	}
	return strings.TrimSpace(string(out)), nil
}
