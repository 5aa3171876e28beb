package workload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// MaxManifestBytes caps what the manifest parsers accept, so a runaway input
// (a device, a huge generated file) fails instead of exhausting memory.
const MaxManifestBytes = 32 << 20

// maxListDepth bounds nested `kind: List` documents.
const maxListDepth = 8

// ParseManifests reads multi-document YAML or JSON (as written for kubectl
// apply, including `kind: List` and `kind: XxxList` documents with items) and
// returns the judged workload objects in document order. Documents of other
// kinds are skipped; a document that is not valid YAML, is not an object, or
// is a judged kind that does not decode is an error naming the document.
func ParseManifests(r io.Reader) ([]*Object, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	docs, err := ParseManifestDocuments(data)
	if err != nil {
		return nil, err
	}
	var out []*Object
	for _, d := range docs {
		out = append(out, d.Objects...)
	}
	return out, nil
}

// ParseManifestDocuments is ParseManifests keeping the documents, every one
// of them (also those without workloads), so they can be written back.
func ParseManifestDocuments(data []byte) ([]*Document, error) {
	if len(data) > MaxManifestBytes {
		return nil, fmt.Errorf("read manifests: larger than %d bytes", MaxManifestBytes)
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*Document
	for n := 1; ; n++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read manifest document %d: %w", n, err)
		}
		doc := &Document{raw: raw}
		out = append(out, doc)
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", n, err)
		}
		if string(js) == "null" {
			continue // only comments
		}
		doc.Objects, err = parseObject(js, fmt.Sprintf("document %d", n), nil, 0)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func parseObject(js []byte, source string, at []string, depth int) ([]*Object, error) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("%s: not a Kubernetes object: %w", source, err)
	}
	if strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		if depth >= maxListDepth {
			return nil, fmt.Errorf("%s: lists nested deeper than %d", source, maxListDepth)
		}
		var out []*Object
		for i, item := range head.Items {
			itemAt := append(append([]string{}, at...), "items", strconv.Itoa(i))
			objs, err := parseObject(item, fmt.Sprintf("%s, item %d", source, i), itemAt, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: apiVersion %q: %w", source, head.APIVersion, err)
	}
	obj, err := Extract(gv.WithKind(head.Kind).GroupKind(), "", js)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if obj == nil {
		return nil, nil // not a workload
	}
	obj.Source = source
	obj.docPath = at
	return []*Object{obj}, nil
}
