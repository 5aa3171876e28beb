package tuf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"strings"
	"testing"
)

// TestVerifySignaturesBodyForms checks which bytes a signature may cover:
// the canonical form of the body (Notary's rule), whether or not the body
// arrived canonical, or the received bytes themselves.
func TestVerifySignaturesBodyForms(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	key := Key{Type: KeyTypeECDSA, Value: KeyVal{Public: der}}
	id := key.ID()
	sign := func(msg string) []byte {
		d := sha256.Sum256([]byte(msg))
		r, s, err := ecdsa.Sign(rand.Reader, priv, d[:])
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
	const canonical = `{"_type":"Targets","version":1}`
	const reordered = `{ "version": 1, "_type": "Targets" }`
	tests := []struct {
		name     string
		body     string
		signedAs string
		wantErr  string
	}{
		{"canonical body, canonical signature", canonical, canonical, ""},
		{"re-serialized body, canonical signature", reordered, canonical, ""},
		{"signature over the received bytes", reordered, reordered, ""},
		{"signature over other data", canonical, `{"_type":"Targets","version":2}`, "does not verify"},
		{"re-serialized body, signature over other data", reordered, `{"_type":"Targets","version":2}`, "does not verify"},
		{"body that has no canonical form", `{"version":1.5}`, canonical, "canonicalize signed body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Signed{Signed: []byte(tc.body), Signatures: []Signature{{KeyID: id, Method: MethodECDSA, Sig: sign(tc.signedAs)}}}
			valid, err := s.VerifySignatures(map[string]Key{id: key}, []string{id}, 1)
			if tc.wantErr == "" {
				if err != nil || len(valid) != 1 || valid[0] != id {
					t.Fatalf("VerifySignatures = %v, %v; want the key, no error", valid, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("VerifySignatures error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
