package workload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// Document is one document of a manifest file: its workload objects and, so
// that `trustgate check --pin` can print the file back, its text.
type Document struct {
	Objects []*Object
	raw     []byte
	node    *yamlv3.Node // parsed on the first Pin
	changed bool
}

// Pinner says which reference to write instead of an image ("" = keep it);
// engine.Report satisfies it.
type Pinner interface {
	PinFor(image string) string
}

// Pin replaces, in the document's text, every image of obj (one of
// d.Objects) for which p has a pin, and returns how many fields it changed.
// Comments and key order survive; only the changed documents are re-encoded
// by WriteManifestDocuments.
func (d *Document) Pin(obj *Object, p Pinner) (int, error) {
	changed := 0
	for _, c := range obj.Containers {
		pin := p.PinFor(c.Image)
		if pin == "" || pin == c.Image {
			continue
		}
		if d.node == nil {
			var n yamlv3.Node
			if err := yamlv3.Unmarshal(d.raw, &n); err != nil {
				return changed, fmt.Errorf("%s: parse for pinning: %w", obj.Source, err)
			}
			d.node = &n
		}
		tokens := append(append([]string{}, obj.docPath...), splitPointer(c.Path)...)
		scalar, err := findNode(d.node, tokens)
		if err != nil {
			return changed, fmt.Errorf("%s: %s: %w", obj.Source, c.Path, err)
		}
		scalar.Value = pin
		d.changed = true
		changed++
	}
	return changed, nil
}

// WriteManifestDocuments writes docs back as multi-document YAML: unchanged
// documents exactly as read, pinned ones re-encoded.
func WriteManifestDocuments(w io.Writer, docs []*Document) error {
	var buf bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		if !d.changed {
			buf.Write(d.raw)
			if len(d.raw) > 0 && d.raw[len(d.raw)-1] != '\n' {
				buf.WriteByte('\n')
			}
			continue
		}
		enc := yamlv3.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(d.node); err != nil {
			return fmt.Errorf("encode manifest document %d: %w", i+1, err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("encode manifest document %d: %w", i+1, err)
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func splitPointer(p string) []string {
	tokens := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range tokens {
		tokens[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(t)
	}
	return tokens
}

// findNode follows tokens (mapping keys and sequence indexes) to a scalar.
func findNode(n *yamlv3.Node, tokens []string) (*yamlv3.Node, error) {
	if n.Kind == yamlv3.DocumentNode {
		if len(n.Content) != 1 {
			return nil, errors.New("empty document")
		}
		n = n.Content[0]
	}
	for _, tok := range tokens {
		if n.Kind == yamlv3.AliasNode {
			// Rewriting through an alias would change every use of the anchor.
			return nil, errors.New("image reached through a YAML alias; pin it by hand")
		}
		switch n.Kind {
		case yamlv3.MappingNode:
			var next *yamlv3.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == tok {
					next = n.Content[i+1]
				}
			}
			if next == nil {
				return nil, fmt.Errorf("no key %q", tok)
			}
			n = next
		case yamlv3.SequenceNode:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n.Content) {
				return nil, fmt.Errorf("no index %q", tok)
			}
			n = n.Content[i]
		default:
			return nil, fmt.Errorf("cannot descend into a scalar at %q", tok)
		}
	}
	if n.Kind != yamlv3.ScalarNode {
		return nil, errors.New("not a scalar")
	}
	return n, nil
}
