package notaryv1

import (
	"strings"

	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Scheme registers type "notaryv1" with the policy loader
// (verify.Register in the composition root).
var Scheme = verify.Scheme{
	Type:   Type,
	Config: func() any { return new(Config) },
	Files:  configFiles,
	New: func(name string, cfg any, deps verify.Deps) (verify.Verifier, error) {
		v, err := New(name, *cfg.(*Config), deps)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return v, nil
	},
}

// configFiles lists the files a Config reads: the CA bundle, root keys
// given as paths (inline PEM is not a file) and the docker config.
func configFiles(c any) []string {
	cfg := c.(*Config)
	var out []string
	if cfg.CAFile != "" {
		out = append(out, cfg.CAFile)
	}
	for _, k := range cfg.RootKeys {
		if !strings.Contains(k, "-----BEGIN") {
			out = append(out, k)
		}
	}
	if cfg.Credentials != nil && cfg.Credentials.DockerConfig != "" {
		out = append(out, cfg.Credentials.DockerConfig)
	}
	return out
}
