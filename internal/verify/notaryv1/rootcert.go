package notaryv1

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1/tuf"
)

// rootKeys returns the IDs of r's root role keys that may sign a root for
// gun, as Notary decides it: a key published as an x509 certificate
// (ecdsa-x509, rsa-x509) counts only when the certificate's CommonName is
// gun — otherwise a root.json copied from another repository of the same
// signer (the notary CLI reuses one root key per trust directory) would be
// accepted — and, when checkDates, when now is inside its validity window.
// Keys of other types have no name or dates to check and count as they are.
// problems says why each left-out key was left out.
func rootKeys(r *tuf.Root, gun string, now time.Time, checkDates bool) (ids, problems []string) {
	for _, id := range r.Roles[tuf.RoleRoot].KeyIDs {
		k, ok := r.Keys[id]
		if !ok {
			continue // VerifySignatures reports unpublished keys
		}
		if err := checkRootCert(k, gun, now, checkDates); err != nil {
			problems = append(problems, fmt.Sprintf("root key %s: %v", shortID(id), err))
			continue
		}
		ids = append(ids, id)
	}
	return ids, problems
}

func checkRootCert(k tuf.Key, gun string, now time.Time, checkDates bool) error {
	_, cert, err := k.PublicKey()
	if err != nil || cert == nil {
		return err
	}
	if cert.Subject.CommonName != gun {
		return fmt.Errorf("certificate is for %q, not this repository", cert.Subject.CommonName)
	}
	if checkDates {
		return k.CheckCertValidity(now)
	}
	return nil
}

// certValidUntil is when the root signed by signers stops being valid
// because too few of their certificates remain in date: the
// threshold-th latest NotAfter, where keys without a certificate never
// expire. It is zero when the root does not depend on any end date.
func certValidUntil(r *tuf.Root, signers []string) time.Time {
	threshold := r.Roles[tuf.RoleRoot].Threshold
	if threshold < 1 || len(signers) < threshold {
		return time.Time{}
	}
	var ends []time.Time // zero: no end
	for _, id := range signers {
		var end time.Time
		if _, cert, err := r.Keys[id].PublicKey(); err == nil && cert != nil {
			end = cert.NotAfter
		}
		ends = append(ends, end)
	}
	// Latest first, no end before any end.
	slices.SortFunc(ends, func(a, b time.Time) int {
		switch {
		case a.IsZero() && b.IsZero():
			return 0
		case a.IsZero():
			return -1
		case b.IsZero():
			return 1
		}
		return b.Compare(a)
	})
	return ends[threshold-1]
}

// baseKeysChanged reports whether next lists other timestamp or snapshot
// keys than prev: then the version floors of both roles are dropped (TUF
// 5.3.11), since a server that lost its keys starts its versions over.
func baseKeysChanged(prev, next *tuf.Root) bool {
	for _, role := range []string{tuf.RoleTimestamp, tuf.RoleSnapshot} {
		a := slices.Sorted(slices.Values(prev.Roles[role].KeyIDs))
		b := slices.Sorted(slices.Values(next.Roles[role].KeyIDs))
		if !slices.Equal(slices.Compact(a), slices.Compact(b)) {
			return true
		}
	}
	return false
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// joinProblems keeps messages short when a root lists many keys.
func joinProblems(p []string) string {
	const maxShown = 3
	if len(p) > maxShown {
		return strings.Join(p[:maxShown], "; ") + fmt.Sprintf("; and %d more", len(p)-maxShown)
	}
	return strings.Join(p, "; ")
}
