package notaryv1

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/testing/notaryfake"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// hostKeychain answers one credential for one registry host.
type hostKeychain struct {
	host string
	cfg  authn.AuthConfig
}

func (k hostKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() != k.host {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(k.cfg), nil
}

// TestSubjectKeychain checks that a verifier without credentials of its own
// reaches a notary server on the image's registry host (ACR's layout) with
// the subject's keychain (the pod's pull secrets), and that it never sends
// a secret for another registry to the notary server.
func TestSubjectKeychain(t *testing.T) {
	srv := notaryfake.New(t, notaryfake.WithTokenAuth("pod", "pull-secret"))
	gun := srv.Host() + "/team/app"
	repo := srv.NewRepo(gun)
	repo.AddTarget("targets", "v1", digestOf("a"), 10)
	repo.Publish()
	other := srv.NewRepo("other.example.com/team/app")
	other.AddTarget("targets", "v1", digestOf("a"), 10)
	other.Publish()
	secrets := authn.AuthConfig{Username: "pod", Password: "pull-secret"}

	run := func(repo *notaryfake.Repo, ref string, kc authn.Keychain) error {
		v := newTestVerifier(t, srv, pinned(repo))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := v.Verify(ctx, verify.Subject{Ref: imageref.MustParse(ref), Keychain: kc})
		return err
	}
	if err := run(repo, gun+":v1", hostKeychain{host: srv.Host(), cfg: secrets}); err != nil {
		t.Errorf("with the pod's pull secret for the notary's own host: %v", err)
	}
	wantErr(t, run(repo, gun+":v1", nil), verify.ErrUnavailable, "access denied")
	// The image's registry is another host: its secret stays home, even
	// though this notary server would have taken it.
	before := srv.TokenRequests()
	wantErr(t, run(other, "other.example.com/team/app:v1", hostKeychain{host: "other.example.com", cfg: secrets}), verify.ErrUnavailable, "access denied")
	if srv.TokenRequests() == before {
		t.Error("no token request: the anonymous token flow did not run")
	}
}
