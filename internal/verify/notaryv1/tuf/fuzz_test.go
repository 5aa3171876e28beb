package tuf

import (
	"testing"
)

// FuzzParseSigned feeds arbitrary bytes through everything the verifier
// does with metadata before trusting it: it must never panic.
func FuzzParseSigned(f *testing.F) {
	f.Add([]byte(`{"signed":{"_type":"Timestamp","version":1,"expires":"2030-01-01T00:00:00Z","meta":{"snapshot":{"length":3,"hashes":{"sha256":"AAAA"}}}},"signatures":[{"keyid":"ab","method":"ecdsa","sig":"AAAA"}]}`))
	f.Add([]byte(`{"signed":{"_type":"Root","version":2,"expires":"2030-01-01T00:00:00Z","keys":{"k":{"keytype":"ed25519","keyval":{"public":"AAAA","private":null}}},"roles":{"root":{"keyids":["k"],"threshold":1}}},"signatures":[]}`))
	f.Add([]byte(`{"signed":{"_type":"Targets","version":1,"expires":"2030-01-01T00:00:00Z","targets":{"v1":{"length":1,"hashes":{"sha256":"AAAA"}}},"delegations":{"keys":{},"roles":[{"name":"targets/releases","keyids":[],"threshold":1,"paths":[""]}]}},"signatures":null}`))
	f.Add([]byte(`{"signed":[1.5e3,"\u00e9"],"signatures":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSigned(data)
		if err != nil {
			return
		}
		if c, err := Canonical(s.Signed); err == nil {
			// Canonical form is a fixed point.
			c2, err := Canonical(c)
			if err != nil || string(c2) != string(c) {
				t.Fatalf("Canonical is not idempotent: %q → %q (%v)", c, c2, err)
			}
		}
		var r Root
		if s.Decode(TypeRoot, &r) == nil {
			if rk, ok := r.Roles[RoleRoot]; ok {
				_, _ = s.VerifySignatures(r.Keys, rk.KeyIDs, rk.Threshold)
			}
			for _, k := range r.Keys {
				_ = k.ID()
				_, _ = k.PEM()
			}
		}
		var tg Targets
		if s.Decode(TypeTargets, &tg) == nil {
			for _, d := range tg.Delegations.Roles {
				_ = d.AllowsPath("v1")
				_, _ = s.VerifySignatures(tg.Delegations.Keys, d.KeyIDs, d.Threshold)
			}
		}
		var ts Timestamp
		if s.Decode(TypeTimestamp, &ts) == nil {
			for _, m := range ts.Meta {
				_ = CheckFile(data, m)
			}
		}
	})
}
