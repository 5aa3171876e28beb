package cosign

import (
	"fmt"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Scheme registers the `cosign` verifier type with the policy loader.
var Scheme = verify.Scheme{
	Type:   Type,
	Config: func() any { return new(Config) },
	Files:  func(cfg any) []string { return cfg.(*Config).Files() },
	New: func(name string, cfg any, deps verify.Deps) (verify.Verifier, error) {
		c, ok := cfg.(*Config)
		if !ok {
			return nil, fmt.Errorf("cosign: configuration is a %T, want *cosign.Config", cfg)
		}
		v, err := New(name, *c, deps)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return v, nil
	},
}

var _ verify.Verifier = (*Verifier)(nil)
