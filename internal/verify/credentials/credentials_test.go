package credentials

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("carol:pa:ss"))
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("config.json", `{"auths":{"https://index.docker.io/v1/":{"auth":"`+auth+`"},"myreg.azurecr.io":{"username":"dave","password":"pw"}},"credsStore":"desktop"}`)
	write("bad.json", `{"auths":{"r.io":{"auth":"!!"}}}`)
	write("idtoken.json", `{"auths":{"r.io":{"identitytoken":"abc"}}}`)
	env := map[string]string{"U": "erin", "P": "pw2"}
	getenv := func(k string) string { return env[k] }

	tests := []struct {
		name    string
		cfg     *Config
		hosts   []string
		want    authn.AuthConfig
		wantOK  bool
		wantErr string
	}{
		{name: "nil is anonymous", cfg: nil, hosts: []string{"r.io"}},
		{name: "env", cfg: &Config{UsernameEnv: "U", PasswordEnv: "P"}, hosts: []string{"any.io"}, want: authn.AuthConfig{Username: "erin", Password: "pw2"}, wantOK: true},
		{name: "env unset", cfg: &Config{UsernameEnv: "U", PasswordEnv: "MISSING"}, wantErr: "credentials.passwordEnv: environment variable MISSING"},
		{name: "env half", cfg: &Config{UsernameEnv: "U"}, wantErr: "must be set together"},
		{name: "both kinds", cfg: &Config{UsernameEnv: "U", PasswordEnv: "P", DockerConfig: "config.json"}, wantErr: "not both"},
		{name: "docker hub entry for docker.io", cfg: &Config{DockerConfig: "config.json"}, hosts: []string{"docker.io"}, want: authn.AuthConfig{Username: "carol", Password: "pa:ss"}, wantOK: true},
		{name: "docker hub entry for registry-1.docker.io", cfg: &Config{DockerConfig: "config.json"}, hosts: []string{"registry-1.docker.io"}, want: authn.AuthConfig{Username: "carol", Password: "pa:ss"}, wantOK: true},
		{name: "default https port is the same host", cfg: &Config{DockerConfig: "config.json"}, hosts: []string{"myreg.azurecr.io:443"}, want: authn.AuthConfig{Username: "dave", Password: "pw"}, wantOK: true},
		{name: "fallback to second host", cfg: &Config{DockerConfig: "config.json"}, hosts: []string{"notary.example.com", "MyReg.azurecr.io"}, want: authn.AuthConfig{Username: "dave", Password: "pw"}, wantOK: true},
		{name: "unknown host", cfg: &Config{DockerConfig: "config.json"}, hosts: []string{"r.io"}},
		{name: "bad auth", cfg: &Config{DockerConfig: "bad.json"}, wantErr: "not base64"},
		{name: "identity token", cfg: &Config{DockerConfig: "idtoken.json"}, hosts: []string{"r.io"}, want: authn.AuthConfig{IdentityToken: "abc"}, wantOK: true},
		{name: "missing file", cfg: &Config{DockerConfig: "nope.json"}, wantErr: "credentials.dockerConfig: read"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(tc.cfg, dir, getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got, ok := s.Lookup(tc.hosts...)
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("Lookup(%v) = %v, %v; want %v, %v", tc.hosts, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestParseChallenge(t *testing.T) {
	scheme, p := parseChallenge(`Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"`)
	if scheme != "bearer" || p["realm"] != "https://auth.example.com/token" || p["service"] != "registry.example.com" || p["scope"] != "repository:a/b:pull,push" {
		t.Errorf("parseChallenge = %q %v", scheme, p)
	}
	scheme, p = parseChallenge(`Basic realm=registry`)
	if scheme != "basic" || p["realm"] != "registry" {
		t.Errorf("parseChallenge(basic) = %q %v", scheme, p)
	}
}
