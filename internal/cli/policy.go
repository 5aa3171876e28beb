package cli

import (
	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/acr"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"

	"github.com/google/go-containerregistry/pkg/authn"
)

// factories lists every verifier type a policy may use.
func factories() map[string]verify.Factory {
	return map[string]verify.Factory{
		"notaryv1":     notaryv1.Factory,
		"acrSignedTag": acr.Factory,
	}
}

// loadPolicy loads path, turning any problem into a configuration error.
func loadPolicy(path string) (*policy.Policy, error) {
	if path == "" {
		return nil, usageErr("--policy is required")
	}
	p, err := policy.Load(path, factories(), verify.Deps{})
	if err != nil {
		return nil, &exitError{code: ExitUsage, err: err}
	}
	return p, nil
}

// newEngine builds the decision engine for p, with a registry resolver that
// uses the local docker credentials (pinning of `action: allow` rules).
func newEngine(p *policy.Policy, m *metrics.Metrics, opts ...resolve.Option) *engine.Engine {
	r := resolve.New(p.Settings.RequestTimeout, append([]resolve.Option{resolve.WithKeychain(authn.DefaultKeychain)}, opts...)...)
	return engine.New(p, engine.WithResolver(r), engine.WithMetrics(m))
}
