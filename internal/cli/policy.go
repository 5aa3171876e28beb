package cli

import (
	"sync"

	"github.com/trustgate-dev/trustgate/internal/engine"
	"github.com/trustgate-dev/trustgate/internal/metrics"
	"github.com/trustgate-dev/trustgate/internal/policy"
	"github.com/trustgate-dev/trustgate/internal/resolve"
	"github.com/trustgate-dev/trustgate/internal/verify"
	"github.com/trustgate-dev/trustgate/internal/verify/acr"
	"github.com/trustgate-dev/trustgate/internal/verify/cosign"
	"github.com/trustgate-dev/trustgate/internal/verify/notaryv1"
	"github.com/trustgate-dev/trustgate/internal/verify/notation"

	"github.com/google/go-containerregistry/pkg/authn"
)

// registerSchemes registers every signature scheme a policy may use, once
// per process: adding a scheme is its package plus one entry here.
var registerSchemes = sync.OnceFunc(func() {
	verify.Register(notaryv1.Scheme, acr.Scheme, notation.Scheme, cosign.Scheme)
})

// loadPolicy loads path once (verify, check, audit), turning any problem
// into a configuration error.
func loadPolicy(path string) (*policy.Policy, error) {
	return loadPolicyWith(policy.NewLoader(verify.Registered(), verify.Deps{}), path)
}

// loadPolicyWith loads path with l, which keeps verifier instances from one
// policy to the next (serve).
func loadPolicyWith(l *policy.Loader, path string) (*policy.Policy, error) {
	if path == "" {
		return nil, usageErr("--policy is required")
	}
	p, err := l.Load(path)
	if err != nil {
		return nil, &exitError{code: ExitUsage, err: err}
	}
	return p, nil
}

// newEngine builds the decision engine for p, with a registry resolver that
// uses the local docker credentials (pinning of `action: allow` rules).
func newEngine(p *policy.Policy, m *metrics.Metrics, opts ...resolve.Option) *engine.Engine {
	return newEngineWith(p, m, nil, opts...)
}

// newEngineWith is newEngine with engine options on top (bounds).
func newEngineWith(p *policy.Policy, m *metrics.Metrics, eopts []engine.Option, ropts ...resolve.Option) *engine.Engine {
	r := resolve.New(p.Settings.RequestTimeout, append([]resolve.Option{resolve.WithKeychain(authn.DefaultKeychain)}, ropts...)...)
	return engine.New(p, append([]engine.Option{engine.WithResolver(r), engine.WithMetrics(m)}, eopts...)...)
}
