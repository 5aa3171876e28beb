// Package credentials loads a verifier's own registry credentials from its
// configuration (environment variables or a Docker config.json) and sends
// the notaryv1 and acrSignedTag verifiers' requests with them, or with the
// subject's authn keychain, through go-containerregistry's token flow
// (Client).
package credentials

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/trustgate-dev/trustgate/internal/imageref"
	"github.com/trustgate-dev/trustgate/internal/verify"
)

// Config is the `credentials:` block of a verifier configuration. Either the
// two environment variable names or a Docker config file may be given.
type Config struct {
	UsernameEnv  string `json:"usernameEnv,omitempty"`
	PasswordEnv  string `json:"passwordEnv,omitempty"`
	DockerConfig string `json:"dockerConfig,omitempty"`
}

// Store answers which credentials to present to a host. The zero value
// (and a nil *Store) is anonymous.
type Store struct {
	// static applies to every host (from environment variables).
	static *authn.AuthConfig
	// byHost comes from a Docker config's "auths", keyed by bare host[:port].
	byHost map[string]authn.AuthConfig
}

// maxDockerConfig bounds how much of a Docker config file is read.
const maxDockerConfig = 1 << 20

// Load resolves cfg once, at configuration time, so that a missing variable
// or unreadable file is reported when the policy loads and not on the first
// admission request. getenv is os.Getenv in production. Relative paths
// resolve against baseDir. A nil cfg means anonymous access.
func Load(cfg *Config, baseDir string, getenv func(string) string) (*Store, error) {
	if cfg == nil {
		return &Store{}, nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	envSet := cfg.UsernameEnv != "" || cfg.PasswordEnv != ""
	switch {
	case envSet && cfg.DockerConfig != "":
		return nil, errors.New("credentials: set either usernameEnv/passwordEnv or dockerConfig, not both")
	case envSet:
		if cfg.UsernameEnv == "" || cfg.PasswordEnv == "" {
			return nil, errors.New("credentials: usernameEnv and passwordEnv must be set together")
		}
		user, pass := getenv(cfg.UsernameEnv), getenv(cfg.PasswordEnv)
		if user == "" {
			return nil, fmt.Errorf("credentials.usernameEnv: environment variable %s is empty or unset", cfg.UsernameEnv)
		}
		if pass == "" {
			return nil, fmt.Errorf("credentials.passwordEnv: environment variable %s is empty or unset", cfg.PasswordEnv)
		}
		return &Store{static: &authn.AuthConfig{Username: user, Password: pass}}, nil
	case cfg.DockerConfig != "":
		byHost, err := readDockerConfig(verify.ResolvePath(baseDir, cfg.DockerConfig))
		if err != nil {
			return nil, fmt.Errorf("credentials.dockerConfig: %w", err)
		}
		return &Store{byHost: byHost}, nil
	default:
		return &Store{}, nil
	}
}

type dockerConfigFile struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
}

func readDockerConfig(path string) (map[string]authn.AuthConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDockerConfig+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxDockerConfig {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, maxDockerConfig)
	}
	var cf dockerConfigFile
	if err := json.Unmarshal(data, &cf); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	out := make(map[string]authn.AuthConfig, len(cf.Auths))
	for key, a := range cf.Auths {
		b := authn.AuthConfig{Username: a.Username, Password: a.Password}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("parse %s: auths[%q].auth: not base64", path, key)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("parse %s: auths[%q].auth: not user:password", path, key)
			}
			b.Username, b.Password = user, pass
		}
		// An identity (refresh) token is exchanged for an access token
		// through the realm's OAuth2 endpoint by ggcr's token flow (ACR's
		// `az acr login` writes these).
		b.IdentityToken = a.IdentityToken
		if b.Username == "" && b.Password == "" && b.IdentityToken == "" {
			continue
		}
		out[normalizeHost(key)] = b
	}
	return out, nil
}

// normalizeHost turns a config.json key ("https://host:port/v1/", "host")
// into host[:port] in lower case.
func normalizeHost(key string) string {
	k := strings.ToLower(strings.TrimSpace(key))
	k = strings.TrimPrefix(k, "https://")
	k = strings.TrimPrefix(k, "http://")
	if i := strings.IndexByte(k, '/'); i >= 0 {
		k = k[:i]
	}
	// The same host normalization as references and policy patterns, so
	// credentials saved for "https://index.docker.io/v1/" or "reg:443" are
	// found for docker.io and reg.
	if n, err := imageref.NormalizeRegistry(k); err == nil {
		return n
	}
	return k
}

// Lookup returns the credentials for the first of hosts that has some.
// Docker's convention is to present the image registry's credentials to its
// notary server as well, so callers pass the registry first.
func (s *Store) Lookup(hosts ...string) (authn.AuthConfig, bool) {
	if s == nil {
		return authn.AuthConfig{}, false
	}
	if s.static != nil {
		return *s.static, true
	}
	for _, h := range hosts {
		if b, ok := s.byHost[normalizeHost(h)]; ok {
			return b, true
		}
	}
	return authn.AuthConfig{}, false
}

// Anonymous reports whether the store never presents credentials.
func (s *Store) Anonymous() bool {
	return s == nil || (s.static == nil && len(s.byHost) == 0)
}
