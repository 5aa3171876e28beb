package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestReloadKeepsRollbackFloor: the registered notaryv1 scheme through a
// policy.Loader. A reload that changes only a rule keeps the verifier, so
// the versions it has seen still refuse a rolled-back timestamp; a reload
// that changes the verifier's block builds a new one, which has seen
// nothing (the contrast that shows the test can tell).
func TestReloadKeepsRollbackFloor(t *testing.T) {
	registerSchemes()
	for _, tc := range []struct {
		name     string
		edit     func(string) string
		kept     bool
		wantDeny bool
	}{
		{"rule change keeps the floor", func(s string) string {
			return s + "  - {name: banned, images: [\"reg.test/banned/*\"], action: deny}\n"
		}, true, true},
		{"changed block starts afresh", func(s string) string {
			return strings.Replace(s, "rootKeys: [root.pem]}", "rootKeys: [root.pem], signers: [targets]}", 1)
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo("reg.test/team/app")
			repo.AddTarget("targets", "v1", signedDigest, 500)
			repo.Publish()
			repo.AddTarget("targets", "v2", otherDigest, 500)
			repo.Publish() // every role at version 2 or more
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "root.pem"), []byte(repo.RootKey().PublicPEM()), 0o600); err != nil {
				t.Fatal(err)
			}
			text := fmt.Sprintf(`apiVersion: trustgate.dev/v1alpha1
kind: Policy
verifiers:
  - name: dct
    type: notaryv1
    notaryv1: {server: %s, caFile: %s, rootKeys: [root.pem]}
rules:
  - {name: team, images: ["reg.test/team/*"], verify: [dct]}
`, srv.URL(), srv.CAFile(t))
			path := filepath.Join(dir, "policy.yaml")
			l := policy.NewLoader(verify.Registered(), verify.Deps{RequestTimeout: 2 * time.Second})
			load := func(text string) *policy.Policy {
				t.Helper()
				if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				p, err := l.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			check := func(p *policy.Policy, ref string) error {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := p.Verifiers["dct"].Verify(ctx, verify.Subject{Ref: imageref.MustParse(ref)})
				return err
			}

			p0 := load(text)
			if err := check(p0, "reg.test/team/app:v1"); err != nil {
				t.Fatal(err)
			}
			p1 := load(tc.edit(text))
			if kept := p1.Verifiers["dct"] == p0.Verifiers["dct"]; kept != tc.kept {
				t.Fatalf("verifier kept = %v, want %v", kept, tc.kept)
			}
			// The server rolls the timestamp back to version 1 while
			// publishing a new tag; asking for that tag makes the verifier
			// fetch the timestamp again.
			repo.SetVersion("timestamp", 1)
			repo.AddTarget("targets", "v3", signedDigest, 500)
			repo.Publish()
			err := check(p1, "reg.test/team/app:v3")
			if tc.wantDeny {
				if !errors.Is(err, verify.ErrUntrusted) || !strings.Contains(err.Error(), "rollback") {
					t.Fatalf("rolled-back timestamp after a rule-only reload: %v, want a rollback refusal", err)
				}
			} else if err != nil {
				t.Fatalf("a new verifier has no floor yet, want v3 admitted: %v", err)
			}
		})
	}
}
