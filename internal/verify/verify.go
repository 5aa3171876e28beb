// Package verify is the contract between trustgate's policy and its
// signature schemes: a Verifier says whether one image (a Subject: reference,
// digest under judgement, registry credentials) is trusted and, if so, which
// digest was proven.
package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// Verifier checks one image against one trust configuration.
//
// Verify returns a Result only when the subject is trusted. Any error means
// the image is not admitted by this verifier; errors wrap ErrUntrusted when
// the answer is a definite "no" (cacheable for a short while) and
// ErrUnavailable when the check could not complete (never cached, retried
// next time). When s.Digest is set, the Result's Digest must equal it.
// Implementations must honour ctx cancellation and be safe for concurrent use.
type Verifier interface {
	Name() string
	Type() string
	Verify(ctx context.Context, s Subject) (*Result, error)
}

// Result records what a verifier proved.
type Result struct {
	// Digest is the verified manifest digest ("sha256:…"); empty when the
	// scheme does not bind one (then the engine resolves it when pinning).
	Digest string
	// Signers names who signed it (roles, key IDs, identities).
	Signers []string
	// Reason is a short human explanation for logs and audit annotations.
	Reason string
	// Expires, when set, bounds how long the result may be cached (for
	// example the expiry of the timestamp metadata that proved it).
	Expires time.Time
}

// Sentinel errors; verifiers wrap them with context.
var (
	ErrUntrusted   = errors.New("not trusted")
	ErrUnavailable = errors.New("verification could not complete")
)

// Deps carries what verifier constructors may need from the composition root.
type Deps struct {
	// BaseDir resolves relative file paths in the verifier's configuration
	// (the policy file's folder).
	BaseDir string
	// Transport is the base HTTP transport for outbound calls; nil means a
	// fresh default transport.
	Transport http.RoundTripper
	// RequestTimeout bounds one outbound HTTP request; below the webhook deadline.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// DecodeStrict decodes a verifier's configuration, rejecting unknown fields.
func DecodeStrict(config json.RawMessage, into any) error {
	if len(config) == 0 {
		config = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	return nil
}
