package notaryv1

import (
	"strings"
	"testing"

	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// TestDenyMessages checks that what a person reads in `kubectl` names the
// tag or digest, the roles consulted and what to do, in a few lines.
func TestDenyMessages(t *testing.T) {
	dA, dB := digestOf("a"), digestOf("b")
	signTag := "sign it with `docker trust sign " + testGUN + ":v1`"
	tests := []struct {
		name      string
		setup     func(r *notaryfake.Repo)
		signers   []string
		threshold int
		ref       string
		want      []string
	}{
		{
			name:  "unsigned tag, docker's rule",
			setup: func(r *notaryfake.Repo) { r.AddTarget("targets", "v0", dA, 10) },
			ref:   testGUN + ":v1",
			want:  []string{"tag v1 of " + testGUN + " is not signed in targets/releases or targets; " + signTag},
		},
		{
			name: "releases lists the tag outside its delegated paths",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/releases", "ecdsa", "prod-")
				r.AddTarget("targets/releases", "v1", dA, 10)
			},
			ref:  testGUN + ":v1",
			want: []string{"is not signed in targets/releases or targets (targets/releases lists it but its delegated paths exclude it); " + signTag},
		},
		{
			name: "listed signer role does not exist",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
			},
			signers: []string{"targets/a", "targets/b"},
			ref:     testGUN + ":v1",
			want: []string{"tag v1 of " + testGUN + " is not signed in targets/a or targets/b (no targets/b role is published); " +
				signTag + " using a key of one of targets/a, targets/b"},
		},
		{
			name: "threshold not met names the missing role",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddDelegation("targets/b", "ecdsa", "")
				r.AddTarget("targets/a", "v1", dA, 10)
			},
			signers: []string{"targets/a", "targets/b"}, threshold: 2,
			ref:  testGUN + ":v1",
			want: []string{"signed by 1 of the 2 required roles among targets/a, targets/b (signed: targets/a); " + signTag + " using a key of targets/b"},
		},
		{
			name: "signers disagree",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddDelegation("targets/b", "ecdsa", "")
				r.AddTarget("targets/a", "v1", dA, 10)
				r.AddTarget("targets/b", "v1", dB, 10)
			},
			signers: []string{"targets/a", "targets/b"},
			ref:     testGUN + ":v1",
			want:    []string{"targets/a → " + dA, "targets/b → " + dB, "its signers must sign the same image"},
		},
		{
			name:  "tag signed for another digest",
			setup: func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 10) },
			ref:   testGUN + ":v1@" + dB,
			want:  []string{"tag v1 of " + testGUN + " is signed for " + dA + ", not " + dB + "; deploy " + testGUN + "@" + dA + " or sign the new image with `docker trust sign"},
		},
		{
			name:  "unsigned digest",
			setup: func(r *notaryfake.Repo) { r.AddTarget("targets", "v1", dA, 10) },
			ref:   testGUN + "@" + dB,
			want:  []string{"digest " + dB + " of " + testGUN + " is not signed in targets/releases or targets", "`docker trust sign " + testGUN + ":TAG`"},
		},
		{
			name: "digest below threshold",
			setup: func(r *notaryfake.Repo) {
				r.AddDelegation("targets/a", "ecdsa", "")
				r.AddTarget("targets/a", "v1", dA, 10)
			},
			signers: []string{"targets/a", "targets/b"}, threshold: 2,
			ref:  testGUN + "@" + dA,
			want: []string{"digest " + dA + " of " + testGUN + " is signed by 1 of the 2 required roles (signed: targets/a)", "using a key of targets/b"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := notaryfake.New(t)
			repo := srv.NewRepo(testGUN)
			tc.setup(repo)
			repo.Publish()
			cfg := pinned(repo)
			cfg.Signers, cfg.Threshold = tc.signers, tc.threshold
			v := newTestVerifier(t, srv, cfg)
			_, err := verifyRef(t, v, tc.ref)
			wantErr(t, err, verify.ErrUntrusted, tc.want...)
			// Short enough to read in `kubectl apply` output: no more than
			// the digests it quotes and about two lines of prose.
			msg := err.Error()
			for _, d := range []string{dA, dB} {
				msg = strings.ReplaceAll(msg, d, "sha256:…")
			}
			if len(msg) > 320 {
				t.Errorf("message is %d characters (digests elided), want at most 320: %s", len(msg), msg)
			}
		})
	}
}
