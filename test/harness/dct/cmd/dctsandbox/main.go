// Command dctsandbox runs a throwaway Docker Content Trust backend for demos:
// a real notary-server and docker-registry on 127.0.0.1, with demo/signed:v1
// pushed and signed and demo/unsigned:v1 pushed unsigned. It writes what a
// client needs (URLs, CA, pinned root key, digests) to a JSON file and, when
// asked, a shell env file, then runs until SIGTERM or SIGINT.
//
// The output files are written last and renamed into place, so a script may
// wait for them to appear as the readiness signal.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/trustgate-dev/trustgate/test/harness/dct"
)

// Sandbox is the JSON the command writes.
type Sandbox struct {
	Dir         string `json:"dir"`
	NotaryURL   string `json:"notaryURL"`
	CAFile      string `json:"caFile"`
	Registry    string `json:"registry"`
	RegistryURL string `json:"registryURL"`
	Signed      Image  `json:"signed"`
	Unsigned    Image  `json:"unsigned"`
}

// Image describes one pushed image.
type Image struct {
	Ref    string `json:"ref"`
	GUN    string `json:"gun"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// RootKeyFile is the repository's root certificate (PEM) to pin, and
	// RootKeyID its Notary key ID; empty for unsigned images.
	RootKeyFile string `json:"rootKeyFile,omitempty"`
	RootKeyID   string `json:"rootKeyID,omitempty"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dctsandbox:", err)
		os.Exit(1)
	}
}

// run sets the sandbox up, writes the output files and blocks until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dctsandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "working directory (default: a new temp dir, removed on exit)")
	out := fs.String("out", "", "JSON output file (default: DIR/sandbox.json)")
	envFile := fs.String("env", "", "optional shell env file (KEY=VALUE lines)")
	ecdsa := fs.Bool("ecdsa", false, "run notary-signer so the server's timestamp/snapshot keys are ECDSA")
	if err := fs.Parse(args); err != nil {
		return err
	}

	if *dir == "" {
		d, err := os.MkdirTemp("", "dctsandbox-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	if *out == "" {
		*out = filepath.Join(*dir, "sandbox.json")
	}
	sub := func(name string) (string, error) {
		p := filepath.Join(*dir, name)
		return p, os.MkdirAll(p, 0o755)
	}
	notaryDir, err := sub("notary")
	if err != nil {
		return err
	}
	registryDir, err := sub("registry")
	if err != nil {
		return err
	}
	signerDir, err := sub("signer")
	if err != nil {
		return err
	}

	srv, err := dct.StartNotaryServer(dct.NotaryOptions{Dir: notaryDir, ECDSAServerKeys: *ecdsa})
	if err != nil {
		return err
	}
	defer srv.Close()
	reg, err := dct.StartRegistry(dct.RegistryOptions{Dir: registryDir})
	if err != nil {
		return err
	}
	defer reg.Close()
	sg, err := dct.NewSignerAt(srv.URL(), srv.CAFile(), signerDir)
	if err != nil {
		return err
	}

	sb := Sandbox{Dir: *dir, NotaryURL: srv.URL(), CAFile: srv.CAFile(), Registry: reg.Host(), RegistryURL: reg.URL()}
	if sb.Signed, err = push(reg, "demo/signed", "v1"); err != nil {
		return err
	}
	if err := sg.Init(sb.Signed.GUN); err != nil {
		return err
	}
	if err := sg.Sign(sb.Signed.GUN, "v1", sb.Signed.Digest, sb.Signed.Size); err != nil {
		return err
	}
	if sb.Signed.RootKeyFile, err = sg.WriteRootKeyPEM(sb.Signed.GUN); err != nil {
		return err
	}
	if _, sb.Signed.RootKeyID, err = sg.RootKeyPEM(sb.Signed.GUN); err != nil {
		return err
	}
	if sb.Unsigned, err = push(reg, "demo/unsigned", "v1"); err != nil {
		return err
	}

	b, err := json.MarshalIndent(sb, "", "  ")
	if err != nil {
		return err
	}
	if *envFile != "" {
		if err := writeAtomic(*envFile, envLines(sb)); err != nil {
			return err
		}
	}
	if err := writeAtomic(*out, append(b, '\n')); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "dctsandbox: ready: notary %s, registry %s, details in %s\n", sb.NotaryURL, sb.Registry, *out)
	<-ctx.Done()
	return nil
}

func push(reg *dct.Registry, path, tag string) (Image, error) {
	d, size, err := reg.PushRandomImage(path, tag)
	if err != nil {
		return Image{}, err
	}
	gun := reg.Repo(path)
	return Image{Ref: gun + ":" + tag, GUN: gun, Digest: d, Size: size}, nil
}

// envLines renders the sandbox as sorted, shell-quoted KEY=VALUE lines.
func envLines(sb Sandbox) []byte {
	m := map[string]string{
		"DCT_DIR":             sb.Dir,
		"DCT_NOTARY_URL":      sb.NotaryURL,
		"DCT_CA_FILE":         sb.CAFile,
		"DCT_REGISTRY":        sb.Registry,
		"DCT_REGISTRY_URL":    sb.RegistryURL,
		"DCT_SIGNED_REF":      sb.Signed.Ref,
		"DCT_SIGNED_GUN":      sb.Signed.GUN,
		"DCT_SIGNED_DIGEST":   sb.Signed.Digest,
		"DCT_SIGNED_SIZE":     strconv.FormatInt(sb.Signed.Size, 10),
		"DCT_ROOT_KEY_FILE":   sb.Signed.RootKeyFile,
		"DCT_ROOT_KEY_ID":     sb.Signed.RootKeyID,
		"DCT_UNSIGNED_REF":    sb.Unsigned.Ref,
		"DCT_UNSIGNED_DIGEST": sb.Unsigned.Digest,
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		// Single quotes: none of the values can contain one except the dir.
		fmt.Fprintf(&b, "%s='%s'\n", k, strings.ReplaceAll(m[k], "'", `'\''`))
	}
	return []byte(b.String())
}

// writeAtomic writes via a temp file and rename so readers never see a
// partial file.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
