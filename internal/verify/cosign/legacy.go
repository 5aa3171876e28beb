package cosign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

// Annotations of a legacy cosign signature layer.
const (
	annSignature   = "dev.cosignproject.cosign/signature"
	annCertificate = "dev.sigstore.cosign/certificate"
	annBundle      = "dev.sigstore.cosign/bundle"
	annTimestamp   = "dev.sigstore.cosign/rfc3161timestamp"
	// simpleSigningKind is the critical.type of an image signature payload.
	simpleSigningKind = "cosign container image signature"
)

// legacy judges the signatures in the `sha256-<hex>.sig` image, whose
// manifest discovery fetched (m, err).
func (j *judgement) legacy(ctx context.Context, c *repoClient, m *manifest, err error) error {
	if errors.Is(err, errNotFound) {
		return nil
	}
	if err != nil {
		if isContentError(err) {
			j.reject(fmt.Sprintf("legacy signature image: %v", err))
			return nil
		}
		return fmt.Errorf("legacy signatures of %s: %w", j.digest, err)
	}
	for _, l := range m.Layers {
		if j.done() || j.seen >= maxCandidates {
			return nil
		}
		if l.MediaType != simpleSigningType {
			continue
		}
		j.seen++
		what := "legacy signature " + short(l.Digest)
		e, payload, err := j.legacyEntity(ctx, c, l)
		if err != nil {
			if ctx.Err() != nil || !isContentError(err) {
				return fmt.Errorf("%s: %w", what, err)
			}
			j.reject(fmt.Sprintf("%s: %v", what, err))
			continue
		}
		j.judge(what, e, func() sgverify.ArtifactPolicyOption {
			return sgverify.WithArtifact(bytes.NewReader(payload))
		}, func(*sgverify.VerificationResult) error { return nil })
	}
	return nil
}

// simpleSigning is the part of cosign's payload that is checked: it is
// signed, and names the digest and the kind of signature.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// legacyEntity fetches the payload of layer l and builds the SignedEntity
// sigstore-go verifies. The payload must name the digest judged (checked
// here; its signature is checked by the verifier over these same bytes).
func (j *judgement) legacyEntity(ctx context.Context, c *repoClient, l descriptor) (*legacyEntity, []byte, error) {
	sigB64, ok := l.Annotations[annSignature]
	if !ok {
		return nil, nil, &contentError{errors.New("no signature annotation")}
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return nil, nil, &contentError{fmt.Errorf("signature annotation: %w", err)}
	}
	payload, err := c.blob(ctx, l)
	if err != nil {
		return nil, nil, err
	}
	var ss simpleSigning
	if err := json.Unmarshal(payload, &ss); err != nil {
		return nil, nil, &contentError{fmt.Errorf("payload: %w", err)}
	}
	if ss.Critical.Type != simpleSigningKind {
		return nil, nil, &contentError{fmt.Errorf("payload type %q, not %q", ss.Critical.Type, simpleSigningKind)}
	}
	if got := ss.Critical.Image.DockerManifestDigest; got != j.digest {
		return nil, nil, &contentError{fmt.Errorf("signs digest %s, not %s", got, j.digest)}
	}
	sum := sha256.Sum256(payload)
	e := &legacyEntity{sig: bundle.NewMessageSignature(sum[:], "SHA2_256", sig)}
	if certPEM := l.Annotations[annCertificate]; certPEM != "" {
		block, _ := pem.Decode([]byte(certPEM))
		if block == nil {
			return nil, nil, &contentError{errors.New("certificate annotation: no PEM block")}
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, &contentError{fmt.Errorf("certificate annotation: %w", err)}
		}
		e.content = bundle.NewCertificate(cert)
	} else {
		e.content = &bundle.PublicKey{}
	}
	if b := l.Annotations[annBundle]; b != "" {
		entry, err := parseRekorBundle(b)
		if err != nil {
			return nil, nil, &contentError{fmt.Errorf("rekor bundle annotation: %w", err)}
		}
		e.tlog = []*tlog.Entry{entry}
	}
	if ts := l.Annotations[annTimestamp]; ts != "" {
		var t struct {
			SignedRFC3161Timestamp []byte `json:"SignedRFC3161Timestamp"`
		}
		if err := json.Unmarshal([]byte(ts), &t); err != nil {
			return nil, nil, &contentError{fmt.Errorf("timestamp annotation: %w", err)}
		}
		e.timestamps = [][]byte{t.SignedRFC3161Timestamp}
	}
	return e, payload, nil
}

// parseRekorBundle reads cosign's legacy Rekor bundle annotation (the
// entry and its signed entry timestamp) into a log entry sigstore-go checks.
func parseRekorBundle(s string) (*tlog.Entry, error) {
	var rb struct {
		SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
		Payload              struct {
			Body           string `json:"body"`
			IntegratedTime int64  `json:"integratedTime"`
			LogIndex       int64  `json:"logIndex"`
			LogID          string `json:"logID"`
		} `json:"Payload"`
	}
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&rb); err != nil {
		return nil, err
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("logID: %w", err)
	}
	if len(rb.SignedEntryTimestamp) == 0 {
		return nil, errors.New("no signed entry timestamp")
	}
	return tlog.NewEntry(body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp, nil)
}

// legacyEntity presents a legacy signature to sigstore-go: a message
// signature over the payload, a certificate or the configured key, and the
// Rekor entry and RFC 3161 timestamp cosign attached, if any.
type legacyEntity struct {
	sig        *bundle.MessageSignature
	content    sgverify.VerificationContent
	tlog       []*tlog.Entry
	timestamps [][]byte
}

var _ sgverify.SignedEntity = (*legacyEntity)(nil)

func (e *legacyEntity) HasInclusionPromise() bool { return len(e.tlog) > 0 }
func (e *legacyEntity) HasInclusionProof() bool   { return false }
func (e *legacyEntity) VerificationContent() (sgverify.VerificationContent, error) {
	return e.content, nil
}
func (e *legacyEntity) SignatureContent() (sgverify.SignatureContent, error) { return e.sig, nil }
func (e *legacyEntity) Timestamps() ([][]byte, error)                        { return e.timestamps, nil }
func (e *legacyEntity) TlogEntries() ([]*tlog.Entry, error)                  { return e.tlog, nil }

// Version "v0.1" is the bundle version of cosign's legacy era: it turns on
// sigstore-go's compatibility for certificates of that time.
func (e *legacyEntity) Version() (string, error) { return "v0.1", nil }
