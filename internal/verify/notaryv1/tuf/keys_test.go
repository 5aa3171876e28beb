package tuf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"testing"
)

func TestVerifySignatureMethods(t *testing.T) {
	msg := []byte(`{"_type":"Targets"}`)
	digest := sha256.Sum256(msg)

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	r, s, _ := ecdsa.Sign(rand.Reader, ecKey, digest[:])
	ecSig := make([]byte, 64)
	r.FillBytes(ecSig[:32])
	s.FillBytes(ecSig[32:])
	ecASN1, _ := ecdsa.SignASN1(rand.Reader, ecKey, digest[:])

	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edSig := ed25519.Sign(edPriv, msg)

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pss, _ := rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	pkcs, _ := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digest[:])

	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKIXPublicKey(&smallRSA.PublicKey)

	ecK := Key{Type: KeyTypeECDSA, Value: KeyVal{Public: ecDER}}
	edK := Key{Type: KeyTypeED25519, Value: KeyVal{Public: edPub}}
	rsaK := Key{Type: KeyTypeRSA, Value: KeyVal{Public: rsaDER}}
	tests := []struct {
		name    string
		key     Key
		method  string
		sig     []byte
		wantErr string
	}{
		{"ecdsa raw r||s", ecK, MethodECDSA, ecSig, ""},
		{"ecdsa ASN.1 is not Notary's format", ecK, MethodECDSA, ecASN1, "bytes, want 64"},
		{"ecdsa over other data", ecK, MethodECDSA, append(ecSig[:63:63], ecSig[63]^1), "does not verify"},
		{"eddsa", edK, MethodEDDSA, edSig, ""},
		{"ed25519 alias", edK, "ed25519", edSig, ""},
		{"eddsa bad", edK, MethodEDDSA, make([]byte, 64), "does not verify"},
		{"rsapss", rsaK, MethodRSAPSS, pss, ""},
		{"rsapkcs1v15", rsaK, MethodRSAPKCS, pkcs, ""},
		{"pss signature checked as pkcs1v15", rsaK, MethodRSAPKCS, pss, "does not verify"},
		{"method for another key type", rsaK, MethodECDSA, ecSig, "method ecdsa with a rsa key"},
		{"unknown method", ecK, "hmac", ecSig, "unsupported signature method"},
		{"key type lies about the key", Key{Type: KeyTypeECDSA, Value: KeyVal{Public: rsaDER}}, MethodECDSA, ecSig, "ecdsa key holds"},
		{"rsa below 2048 bits", Key{Type: KeyTypeRSA, Value: KeyVal{Public: smallDER}}, MethodRSAPSS, pss, "below 2048"},
		{"unknown key type", Key{Type: "dsa", Value: KeyVal{Public: ecDER}}, MethodECDSA, ecSig, "unsupported key type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.key.VerifySignature(tc.method, msg, tc.sig)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("VerifySignature: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("VerifySignature error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{`{"b": 1, "a": [true, null, "x"]}`, `{"a":[true,null,"x"],"b":1}`, ""},
		// Only " and \ are escaped; <, > and & and non-ASCII stay as they are.
		{`{"s":"a\"b\\c<>&\u00e9"}`, `{"s":"a\"b\\c<>&é"}`, ""},
		{`{"n":1.5}`, "", "non-integer"},
		{`{"n":1e3}`, "", "non-integer"},
		{`{"a":1} {}`, "", "trailing data"},
	}
	for _, tc := range tests {
		got, err := Canonical([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Canonical(%s) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestKeyIDMatchesNotary(t *testing.T) {
	// Notary's key ID is the sha256 of the key's canonical JSON with a null
	// private part (TestRealNotaryServer cross-checks this end to end: the
	// notary CLI finds a delegation key stored under the ID computed here).
	k := Key{Type: KeyTypeED25519, Value: KeyVal{Public: []byte{1, 2, 3}}}
	want := sha256.Sum256([]byte(`{"keytype":"ed25519","keyval":{"private":null,"public":"AQID"}}`))
	if got := k.ID(); got != hexString(want[:]) {
		t.Errorf("ID = %s, want %x", got, want)
	}
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

func TestAllowsPath(t *testing.T) {
	sum := sha256.Sum256([]byte("v1"))
	prefix := hexString(sum[:])[:3]
	tests := []struct {
		name string
		role DelegatedRole
		tag  string
		want bool
	}{
		{"all paths", DelegatedRole{Paths: []string{""}}, "v1", true},
		{"prefix match", DelegatedRole{Paths: []string{"prod-", "v"}}, "v1", true},
		{"prefix miss", DelegatedRole{Paths: []string{"prod-"}}, "v1", false},
		{"hash prefix match", DelegatedRole{PathHashPrefixes: []string{prefix}}, "v1", true},
		{"hash prefix miss", DelegatedRole{PathHashPrefixes: []string{"zzz"}}, "v1", false},
		{"neither allows nothing", DelegatedRole{}, "v1", false},
	}
	for _, tc := range tests {
		if got := tc.role.AllowsPath(tc.tag); got != tc.want {
			t.Errorf("%s: AllowsPath(%q) = %v, want %v", tc.name, tc.tag, got, tc.want)
		}
	}
}
