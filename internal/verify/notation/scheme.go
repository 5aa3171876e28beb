package notation

import (
	"fmt"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Scheme registers the `notation` verifier type with the policy loader.
var Scheme = verify.Scheme{
	Type:   Type,
	Config: func() any { return new(Config) },
	Files:  func(cfg any) []string { return cfg.(*Config).Files() },
	New: func(name string, cfg any, deps verify.Deps) (verify.Verifier, error) {
		c, ok := cfg.(*Config)
		if !ok {
			return nil, fmt.Errorf("notation: configuration is a %T, want *notation.Config", cfg)
		}
		return New(name, c, deps)
	},
}
