package workload

import (
	"bytes"
	"strings"
	"testing"
)

// pins is a Pinner from a map.
type pins map[string]string

func (p pins) PinFor(image string) string { return p[image] }

const pinDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestPinAndWriteBack(t *testing.T) {
	in := `# config first, untouched
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}   # flow style stays
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # the web tier
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: "registry.example/init:1"   # quoted
      containers:
        - name: app
          image: registry.example/app:1
        - name: denied
          image: registry.example/bad:1
---
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: {name: p}
    spec:
      containers: [{name: a, image: registry.example/app:1}]
`
	docs, err := ParseManifestDocuments([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 3 || len(docs[0].Objects) != 0 || len(docs[1].Objects) != 1 || len(docs[2].Objects) != 1 {
		t.Fatalf("documents/objects = %d docs", len(docs))
	}
	p := pins{
		"registry.example/init:1": "registry.example/init:1@" + pinDigest,
		"registry.example/app:1":  "registry.example/app:1@" + pinDigest,
	}
	total := 0
	for _, d := range docs {
		for _, o := range d.Objects {
			n, err := d.Pin(o, p)
			if err != nil {
				t.Fatalf("Pin %s: %v", o.Source, err)
			}
			total += n
		}
	}
	if total != 3 {
		t.Errorf("pinned %d fields, want 3", total)
	}
	var out bytes.Buffer
	if err := WriteManifestDocuments(&out, docs); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"# config first, untouched\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}   # flow style stays\n---\n",
		"name: web # the web tier",
		`image: "registry.example/init:1@` + pinDigest + `" # quoted`,
		"image: registry.example/app:1@" + pinDigest,
		"image: registry.example/bad:1\n",
		"image: 'registry.example/app:1@" + pinDigest + "'}", // flow style: yaml.v3 quotes it
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// The written stream parses back to the pinned images.
	again, err := ParseManifests(strings.NewReader(got))
	if err != nil {
		t.Fatalf("re-parse: %v", err)
	}
	var images []string
	for _, o := range again {
		images = append(images, o.Images()...)
	}
	// Order: Deployment containers first, then initContainers, then the List's pod.
	want := []string{"registry.example/app:1@" + pinDigest, "registry.example/bad:1", "registry.example/init:1@" + pinDigest, "registry.example/app:1@" + pinDigest}
	if strings.Join(images, ",") != strings.Join(want, ",") {
		t.Errorf("re-parsed images = %q, want %q", images, want)
	}
}

func TestPinUnchangedWritesInputBack(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: x}]   # keep\n---\n# trailing comment only\n"
	docs, err := ParseManifestDocuments([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		for _, o := range d.Objects {
			if n, err := d.Pin(o, pins{}); n != 0 || err != nil {
				t.Fatalf("Pin with no pins = %d, %v", n, err)
			}
		}
	}
	var out bytes.Buffer
	if err := WriteManifestDocuments(&out, docs); err != nil {
		t.Fatal(err)
	}
	if out.String() != in {
		t.Errorf("unchanged stream rewritten:\n got %q\nwant %q", out.String(), in)
	}
}

func TestPinThroughAliasIsRefused(t *testing.T) {
	in := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - &c {name: a, image: x}\n  - *c\n"
	docs, err := ParseManifestDocuments([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	_, err = docs[0].Pin(docs[0].Objects[0], pins{"x": "x@" + pinDigest})
	if err == nil || !strings.Contains(err.Error(), "alias") {
		t.Errorf("Pin through an alias: %v, want a refusal", err)
	}
}
