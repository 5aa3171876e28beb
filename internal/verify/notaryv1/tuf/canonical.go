// Package tuf reads and checks Notary v1's dialect of TUF metadata: the
// envelope, the four base roles and delegations, canonical JSON, key IDs and
// signatures. It knows nothing about HTTP or policy; notaryv1 drives it.
package tuf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

// Canonical re-encodes a JSON value the way Notary signs it (docker/go's
// canonical/json): object keys sorted byte-wise, no whitespace, strings
// escaping only `"` and `\`, integers only (floats are refused). Control
// characters are refused too: escaping only `"` and `\` leaves them raw,
// which is not JSON, and no Notary metadata contains them.
func Canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after JSON value")
	}
	var buf bytes.Buffer
	if err := encodeCanonical(&buf, v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MarshalCanonical marshals v with encoding/json and canonicalizes the result.
func MarshalCanonical(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Canonical(raw)
}

func encodeCanonical(buf *bytes.Buffer, v any, depth int) error {
	if depth > maxDepth {
		return errors.New("JSON nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		if x {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case json.Number:
		s := x.String()
		if strings.ContainsAny(s, ".eE") {
			return fmt.Errorf("non-integer number %s is not canonical", s)
		}
		if s == "-0" {
			s = "0"
		}
		buf.WriteString(s)
	case string:
		if !utf8.ValidString(x) {
			return errors.New("string is not valid UTF-8")
		}
		buf.WriteByte('"')
		for i := 0; i < len(x); i++ {
			c := x[i]
			if c < 0x20 {
				return fmt.Errorf("control character %#x in a string has no canonical form", c)
			}
			if c == '"' || c == '\\' {
				buf.WriteByte('\\')
			}
			buf.WriteByte(x[i])
		}
		buf.WriteByte('"')
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeCanonical(buf, e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeCanonical(buf, k, depth+1); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := encodeCanonical(buf, x[k], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON type %T", v)
	}
	return nil
}
