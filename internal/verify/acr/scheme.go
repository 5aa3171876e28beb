package acr

import (
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Scheme registers type "acrSignedTag" with the policy loader
// (verify.Register in the composition root).
var Scheme = verify.Scheme{
	Type:   Type,
	Config: func() any { return new(Config) },
	Files:  configFiles,
	New: func(name string, cfg any, deps verify.Deps) (verify.Verifier, error) {
		v, err := New(name, *cfg.(*Config), deps, nil)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return v, nil
	},
}

// configFiles lists the files a Config reads: the CA bundle and the docker
// config.
func configFiles(c any) []string {
	cfg := c.(*Config)
	var out []string
	if cfg.CAFile != "" {
		out = append(out, cfg.CAFile)
	}
	if cfg.Credentials != nil && cfg.Credentials.DockerConfig != "" {
		out = append(out, cfg.Credentials.DockerConfig)
	}
	return out
}
