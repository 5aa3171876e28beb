package e2e

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/trustgate-dev/trustgate/test/harness/dct"
)

// image is one pushed image: its reference by tag and its manifest digest.
type image struct {
	Ref    string // 127.0.0.1:PORT/path:tag
	Digest string // sha256:…
}

// Pinned is the reference the mutating webhook must store: tag kept, digest added.
func (i image) Pinned() string { return i.Ref + "@" + i.Digest }

// dctEnv is a notary-server and a registry with images in known trust states.
type dctEnv struct {
	Notary   *dct.NotaryServer
	Registry *dct.Registry
	Signer   *dct.Signer
	// GUN is the signed repository; RootPEMFile its root certificate.
	GUN         string
	RootPEMFile string

	Signed      image // in GUN, tag signed in targets
	SignedOther image // a second signed tag in GUN
	UnsignedTag image // in GUN, pushed but its tag never signed
	NoTrustData image // in a repository that was never initialised in notary
}

func startDCT(dir string) (_ *dctEnv, err error) {
	e := &dctEnv{}
	for _, d := range []string{"notary", "registry", "signer"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("dct folders: %w", err)
		}
	}
	if e.Notary, err = dct.StartNotaryServer(dct.NotaryOptions{Dir: filepath.Join(dir, "notary")}); err != nil {
		return nil, err
	}
	shared.onStop(e.Notary.Close)
	if e.Registry, err = dct.StartRegistry(dct.RegistryOptions{Dir: filepath.Join(dir, "registry")}); err != nil {
		return nil, err
	}
	shared.onStop(e.Registry.Close)
	if e.Signer, err = dct.NewSignerAt(e.Notary.URL(), e.Notary.CAFile(), filepath.Join(dir, "signer")); err != nil {
		return nil, err
	}

	push := func(path, tag string) (image, error) {
		d, _, err := e.Registry.PushRandomImage(path, tag)
		if err != nil {
			return image{}, err
		}
		return image{Ref: e.Registry.Repo(path) + ":" + tag, Digest: d}, nil
	}
	pushSigned := func(path, tag string) (image, error) {
		d, size, err := e.Registry.PushRandomImage(path, tag)
		if err != nil {
			return image{}, err
		}
		if err := e.Signer.Sign(e.Registry.Repo(path), tag, d, size); err != nil {
			return image{}, err
		}
		return image{Ref: e.Registry.Repo(path) + ":" + tag, Digest: d}, nil
	}

	e.GUN = e.Registry.Repo("e2e/app")
	if err := e.Signer.Init(e.GUN); err != nil {
		return nil, err
	}
	if e.Signed, err = pushSigned("e2e/app", "v1"); err != nil {
		return nil, err
	}
	if e.SignedOther, err = pushSigned("e2e/app", "v2"); err != nil {
		return nil, err
	}
	if e.UnsignedTag, err = push("e2e/app", "unsigned"); err != nil {
		return nil, err
	}
	if e.NoTrustData, err = push("e2e/nosig", "v1"); err != nil {
		return nil, err
	}
	if e.RootPEMFile, err = e.Signer.WriteRootKeyPEM(e.GUN); err != nil {
		return nil, err
	}
	return e, nil
}
