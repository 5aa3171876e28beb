package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trustgate-dev/trustgate/test/harness/dct"
)

// TestRun starts the sandbox in-process, reads what it wrote, checks that it
// describes reachable, correctly signed images, and stops it.
func TestRun(t *testing.T) {
	dct.RequireBinaries(t, "notary-server", "notary", "docker-registry")
	dir := t.TempDir()
	out := filepath.Join(dir, "sandbox.json")
	envFile := filepath.Join(dir, "sandbox.env")
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-dir", dir, "-out", out, "-env", envFile}, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not return after cancel")
		}
	})

	var raw []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		if raw, err = os.ReadFile(out); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned before writing %s: %v\n%s", out, err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 60s\n%s", out, stderr.String())
		}
	}
	var sb Sandbox
	if err := json.Unmarshal(raw, &sb); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}

	for _, img := range []Image{sb.Signed, sb.Unsigned} {
		ref, err := name.ParseReference(img.Ref)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("pull %s: %v", img.Ref, err)
		}
		if desc.Digest.String() != img.Digest || desc.Size != img.Size {
			t.Errorf("%s serves %s (%d bytes), sandbox says %s (%d bytes)", img.Ref, desc.Digest, desc.Size, img.Digest, img.Size)
		}
	}

	sg, err := dct.NewSignerAt(sb.NotaryURL, sb.CAFile, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	targets, err := sg.List(sb.Signed.GUN)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || targets[0].Name != "v1" || targets[0].Digest != sb.Signed.Digest || targets[0].Size != sb.Signed.Size {
		t.Errorf("notary list %s = %+v, want v1 → %s", sb.Signed.GUN, targets, sb.Signed.Digest)
	}
	if _, err := sg.List(sb.Unsigned.GUN); err == nil {
		t.Errorf("notary list %s succeeded; the unsigned repository must have no trust data", sb.Unsigned.GUN)
	}
	pemBytes, err := os.ReadFile(sb.Signed.RootKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	want, id, err := sg.RootKeyPEM(sb.Signed.GUN)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pemBytes, want) || id != sb.Signed.RootKeyID {
		t.Errorf("root key file/ID do not match the server's root.json (ID %s, want %s)", sb.Signed.RootKeyID, id)
	}

	env, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"DCT_NOTARY_URL='" + sb.NotaryURL + "'",
		"DCT_SIGNED_DIGEST='" + sb.Signed.Digest + "'",
		"DCT_UNSIGNED_REF='" + sb.Unsigned.Ref + "'",
		"DCT_ROOT_KEY_FILE='" + sb.Signed.RootKeyFile + "'",
	} {
		if !strings.Contains(string(env), line+"\n") {
			t.Errorf("env file lacks %s:\n%s", line, env)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
