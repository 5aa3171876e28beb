package tuf

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role names of the base roles.
const (
	RoleRoot      = "root"
	RoleTargets   = "targets"
	RoleSnapshot  = "snapshot"
	RoleTimestamp = "timestamp"
)

// maxSignatures bounds the work one metadata file can ask for.
const maxSignatures = 64

// Signed is the envelope of every metadata file.
type Signed struct {
	Signed     json.RawMessage `json:"signed"`
	Signatures []Signature     `json:"signatures"`
}

// Signature is one entry of an envelope's "signatures".
type Signature struct {
	KeyID  string `json:"keyid"`
	Method string `json:"method"`
	Sig    []byte `json:"sig"`
}

// Common holds the fields every signed body has.
type Common struct {
	Type    string    `json:"_type"`
	Version int       `json:"version"`
	Expires time.Time `json:"expires"`
}

// RoleKeys lists the keys of a base role and how many must sign.
type RoleKeys struct {
	KeyIDs    []string `json:"keyids"`
	Threshold int      `json:"threshold"`
}

// Root is root.json's signed body.
type Root struct {
	Common
	Keys               map[string]Key      `json:"keys"`
	Roles              map[string]RoleKeys `json:"roles"`
	ConsistentSnapshot bool                `json:"consistent_snapshot"`
}

// FileMeta describes another file: its length and hashes (base64 in JSON).
type FileMeta struct {
	Length int64             `json:"length"`
	Hashes map[string][]byte `json:"hashes"`
	Custom json.RawMessage   `json:"custom,omitempty"`
}

// Timestamp is timestamp.json's signed body; Meta["snapshot"] pins snapshot.json.
type Timestamp struct {
	Common
	Meta map[string]FileMeta `json:"meta"`
}

// Snapshot is snapshot.json's signed body; Meta pins root, targets and
// every delegation role's file.
type Snapshot struct {
	Common
	Meta map[string]FileMeta `json:"meta"`
}

// Targets is the signed body of targets.json and of delegation roles.
type Targets struct {
	Common
	Targets     map[string]FileMeta `json:"targets"`
	Delegations Delegations         `json:"delegations"`
}

// Delegations are the keys and roles a targets role hands trust to.
type Delegations struct {
	Keys  map[string]Key  `json:"keys"`
	Roles []DelegatedRole `json:"roles"`
}

// DelegatedRole is one delegation: its keys, threshold and allowed paths.
type DelegatedRole struct {
	Name             string   `json:"name"`
	KeyIDs           []string `json:"keyids"`
	Threshold        int      `json:"threshold"`
	Paths            []string `json:"paths,omitempty"`
	PathHashPrefixes []string `json:"path_hash_prefixes,omitempty"`
}

// Expected "_type" values.
const (
	TypeRoot      = "Root"
	TypeTargets   = "Targets"
	TypeSnapshot  = "Snapshot"
	TypeTimestamp = "Timestamp"
)

// ParseSigned decodes an envelope. It does not check signatures.
func ParseSigned(data []byte) (*Signed, error) {
	var s Signed
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse metadata: %w", err)
	}
	if len(s.Signed) == 0 || s.Signed[0] != '{' {
		return nil, errors.New("parse metadata: \"signed\" is missing or not an object")
	}
	if len(s.Signatures) > maxSignatures {
		return nil, fmt.Errorf("parse metadata: %d signatures, at most %d accepted", len(s.Signatures), maxSignatures)
	}
	return &s, nil
}

// Decode unmarshals the signed body into out (a *Root, *Timestamp, ...) and
// checks its "_type" is want and its version positive.
func (s *Signed) Decode(want string, out Body) error {
	if err := json.Unmarshal(s.Signed, out); err != nil {
		return fmt.Errorf("parse %s body: %w", strings.ToLower(want), err)
	}
	c := out.common()
	if c.Type != want {
		return fmt.Errorf("metadata type is %q, want %q", c.Type, want)
	}
	if c.Version < 1 {
		return fmt.Errorf("%s version %d is not positive", strings.ToLower(want), c.Version)
	}
	if c.Expires.IsZero() {
		return fmt.Errorf("%s has no expiry", strings.ToLower(want))
	}
	return nil
}

// Body is implemented by the signed body types (*Root, *Timestamp, ...).
type Body interface{ common() *Common }

func (c *Common) common() *Common { return c }

// ThresholdError reports too few valid signatures.
type ThresholdError struct {
	Valid, Threshold int
	Problems         []string
}

func (e *ThresholdError) Error() string {
	msg := fmt.Sprintf("%d valid signature(s), threshold is %d", e.Valid, e.Threshold)
	if len(e.Problems) > 0 {
		msg += " (" + strings.Join(e.Problems, "; ") + ")"
	}
	return msg
}

// VerifySignatures checks that at least threshold distinct keys among
// keyIDs, looked up in keys, made valid signatures over the canonical form of
// the signed body. Keys whose declared ID does not match their content are
// ignored. It returns the IDs of the keys that signed validly.
func (s *Signed) VerifySignatures(keys map[string]Key, keyIDs []string, threshold int) ([]string, error) {
	if threshold < 1 {
		return nil, fmt.Errorf("role threshold %d is below 1", threshold)
	}
	if len(keyIDs) < threshold {
		return nil, fmt.Errorf("role has %d key(s), fewer than its threshold %d", len(keyIDs), threshold)
	}
	// Notary serves the signed body in canonical form already, so each
	// signature is first checked over the bytes as received, and only one
	// that fails there over the canonical re-encoding (the costly step: a
	// full parse and re-encode, a third of a cold verification's CPU).
	// Accepting a signature over the received bytes is no weaker: they are
	// the very bytes Decode parses, and only a key holder can sign them.
	var canon []byte
	canonical := func() ([]byte, error) {
		if canon == nil {
			c, err := Canonical(s.Signed)
			if err != nil {
				return nil, fmt.Errorf("canonicalize signed body: %w", err)
			}
			canon = c
		}
		return canon, nil
	}
	var valid []string
	var problems []string
	for _, sig := range s.Signatures {
		if !slices.Contains(keyIDs, sig.KeyID) || slices.Contains(valid, sig.KeyID) {
			continue
		}
		k, ok := keys[sig.KeyID]
		if !ok {
			problems = append(problems, fmt.Sprintf("key %s is not published", short(sig.KeyID)))
			continue
		}
		if k.ID() != sig.KeyID {
			problems = append(problems, fmt.Sprintf("key %s does not hash to its ID", short(sig.KeyID)))
			continue
		}
		if err := k.VerifySignature(sig.Method, s.Signed, sig.Sig); err != nil {
			msg, cerr := canonical()
			if cerr != nil {
				return nil, cerr
			}
			if bytes.Equal(msg, s.Signed) {
				problems = append(problems, fmt.Sprintf("key %s: %v", short(sig.KeyID), err))
				continue
			}
			if err := k.VerifySignature(sig.Method, msg, sig.Sig); err != nil {
				problems = append(problems, fmt.Sprintf("key %s: %v", short(sig.KeyID), err))
				continue
			}
		}
		valid = append(valid, sig.KeyID)
	}
	if len(valid) < threshold {
		if len(s.Signatures) > 0 && len(problems) == 0 && len(valid) == 0 {
			problems = append(problems, "no signature is by a key of this role")
		}
		return valid, &ThresholdError{Valid: len(valid), Threshold: threshold, Problems: problems}
	}
	return valid, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// CheckFile compares data with the length and hashes meta records. At least
// one supported hash (sha256 or sha512) must be present; every supported one
// must match.
func CheckFile(data []byte, meta FileMeta) error {
	if int64(len(data)) != meta.Length {
		return fmt.Errorf("length %d, signed length is %d", len(data), meta.Length)
	}
	checked := 0
	if want, ok := meta.Hashes["sha256"]; ok {
		got := sha256.Sum256(data)
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return fmt.Errorf("sha256 %s, signed sha256 is %s", hex.EncodeToString(got[:]), hex.EncodeToString(want))
		}
		checked++
	}
	if want, ok := meta.Hashes["sha512"]; ok {
		got := sha512.Sum512(data)
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return errors.New("sha512 does not match the signed hash")
		}
		checked++
	}
	if checked == 0 {
		return errors.New("no sha256 or sha512 hash is signed for it")
	}
	return nil
}

// SameFile reports whether meta describes exactly data's content (used to
// skip re-fetching unchanged files).
func SameFile(a, b FileMeta) bool {
	if a.Length != b.Length || len(a.Hashes["sha256"]) == 0 {
		return false
	}
	return bytes.Equal(a.Hashes["sha256"], b.Hashes["sha256"])
}

// MetaOf returns FileMeta for data with its sha256 (and sha512).
func MetaOf(data []byte) FileMeta {
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	return FileMeta{Length: int64(len(data)), Hashes: map[string][]byte{"sha256": s256[:], "sha512": s512[:]}}
}

// IsChildRole reports whether child is a direct delegation of parent
// ("targets/releases" of "targets", "targets/a/b" of "targets/a").
func IsChildRole(parent, child string) bool {
	rest, ok := strings.CutPrefix(child, parent+"/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// AllowsPath reports whether the delegation may sign target name: "paths"
// are prefixes ("" allows everything), "path_hash_prefixes" are prefixes of
// the hex sha256 of the name. A delegation with neither allows nothing.
func (d DelegatedRole) AllowsPath(name string) bool {
	if len(d.Paths) > 0 {
		for _, p := range d.Paths {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	if len(d.PathHashPrefixes) > 0 {
		sum := sha256.Sum256([]byte(name))
		h := hex.EncodeToString(sum[:])
		for _, p := range d.PathHashPrefixes {
			if strings.HasPrefix(h, p) {
				return true
			}
		}
	}
	return false
}
