package imageref

import (
	"errors"
	"strings"
	"testing"
)

const dg = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParse(t *testing.T) {
	tests := []struct {
		in, canonical, gun, tag, digest, registry string
	}{
		{in: "nginx", canonical: "docker.io/library/nginx:latest", gun: "docker.io/library/nginx", tag: "latest", registry: "docker.io"},
		{in: "nginx:1.25", canonical: "docker.io/library/nginx:1.25", gun: "docker.io/library/nginx", tag: "1.25", registry: "docker.io"},
		{in: "docker.io/nginx", canonical: "docker.io/library/nginx:latest", gun: "docker.io/library/nginx", tag: "latest", registry: "docker.io"},
		{in: "index.docker.io/library/nginx:1", canonical: "docker.io/library/nginx:1", gun: "docker.io/library/nginx", tag: "1", registry: "docker.io"},
		{in: "bitnami/redis", canonical: "docker.io/bitnami/redis:latest", gun: "docker.io/bitnami/redis", tag: "latest", registry: "docker.io"},
		{in: "127.0.0.1:5000/demo/app:v1", canonical: "127.0.0.1:5000/demo/app:v1", gun: "127.0.0.1:5000/demo/app", tag: "v1", registry: "127.0.0.1:5000"},
		{in: "localhost:5000/app", canonical: "localhost:5000/app:latest", gun: "localhost:5000/app", tag: "latest", registry: "localhost:5000"},
		{in: "localhost/app", canonical: "localhost/app:latest", gun: "localhost/app", tag: "latest", registry: "localhost"},
		{in: "MyRegistry.AzureCR.io/team/app:v2", canonical: "myregistry.azurecr.io/team/app:v2", gun: "myregistry.azurecr.io/team/app", tag: "v2", registry: "myregistry.azurecr.io"},
		{in: "reg.io/a/b/c/d:tag", canonical: "reg.io/a/b/c/d:tag", gun: "reg.io/a/b/c/d", tag: "tag", registry: "reg.io"},
		{in: "reg.io/app@" + dg, canonical: "reg.io/app@" + dg, gun: "reg.io/app", digest: dg, registry: "reg.io"},
		{in: "reg.io/app:v1@" + dg, canonical: "reg.io/app:v1@" + dg, gun: "reg.io/app", tag: "v1", digest: dg, registry: "reg.io"},
		{in: "reg.io:443/app:v1@" + dg, canonical: "reg.io/app:v1@" + dg, gun: "reg.io/app", tag: "v1", digest: dg, registry: "reg.io"},
		{in: "nginx@" + dg, canonical: "docker.io/library/nginx@" + dg, gun: "docker.io/library/nginx", digest: dg, registry: "docker.io"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if got := r.String(); got != tc.canonical {
				t.Errorf("String() = %q, want %q", got, tc.canonical)
			}
			if got := r.GUN(); got != tc.gun {
				t.Errorf("GUN() = %q, want %q", got, tc.gun)
			}
			if r.Tag() != tc.tag || r.Digest() != tc.digest || r.Registry() != tc.registry {
				t.Errorf("tag/digest/registry = %q/%q/%q, want %q/%q/%q", r.Tag(), r.Digest(), r.Registry(), tc.tag, tc.digest, tc.registry)
			}
			if r.Original() != tc.in {
				t.Errorf("Original() = %q, want %q", r.Original(), tc.in)
			}
			// The canonical form must parse to itself.
			r2, err := Parse(r.String())
			if err != nil || r2.String() != r.String() {
				t.Errorf("round trip of %q: %v %q", r.String(), err, r2.String())
			}
		})
	}
}

// TestRegistryAliases checks each spelling of a registry host against the
// canonical name the kubelet's server is known by (see host.go for why each
// one is merged or kept apart). The canonical form is what /mutate writes,
// so it must itself parse to the same name.
func TestRegistryAliases(t *testing.T) {
	tests := []struct {
		in, canonical, registry string
	}{
		// Default HTTPS port: the same server.
		{"myreg.example.com:443/team/app:1", "myreg.example.com/team/app:1", "myreg.example.com"},
		{"MyReg.Example.COM:443/team/app:1", "myreg.example.com/team/app:1", "myreg.example.com"},
		{"10.1.2.3:443/team/app:1", "10.1.2.3/team/app:1", "10.1.2.3"},
		{"localhost:443/app:1", "localhost/app:1", "localhost"},
		// Port 80 and other ports are other sockets under HTTPS: kept.
		{"myreg.example.com:80/team/app:1", "myreg.example.com:80/team/app:1", "myreg.example.com:80"},
		{"myreg.example.com:4443/team/app:1", "myreg.example.com:4443/team/app:1", "myreg.example.com:4443"},
		// Ports are numbers: a leading zero dials the same port.
		{"myreg.example.com:0443/team/app:1", "myreg.example.com/team/app:1", "myreg.example.com"},
		{"myreg.example.com:05000/team/app:1", "myreg.example.com:5000/team/app:1", "myreg.example.com:5000"},
		// Docker Hub's three names, with and without the default port.
		{"docker.io/myorg/app:1", "docker.io/myorg/app:1", "docker.io"},
		{"registry-1.docker.io/myorg/app:1", "docker.io/myorg/app:1", "docker.io"},
		{"index.docker.io/myorg/app:1", "docker.io/myorg/app:1", "docker.io"},
		{"Registry-1.Docker.IO/myorg/app:1", "docker.io/myorg/app:1", "docker.io"},
		{"registry-1.docker.io:443/myorg/app:1", "docker.io/myorg/app:1", "docker.io"},
		{"docker.io:443/myorg/app:1", "docker.io/myorg/app:1", "docker.io"},
		{"registry-1.docker.io/nginx", "docker.io/library/nginx:latest", "docker.io"},
		{"index.docker.io/nginx@" + dg, "docker.io/library/nginx@" + dg, "docker.io"},
		// Not Docker Hub: only the exact names are merged.
		{"docker.io.evil.com/myorg/app:1", "docker.io.evil.com/myorg/app:1", "docker.io.evil.com"},
		{"registry-2.docker.io/myorg/app:1", "registry-2.docker.io/myorg/app:1", "registry-2.docker.io"},
		{"registry-1.docker.io:5000/myorg/app:1", "registry-1.docker.io:5000/myorg/app:1", "registry-1.docker.io:5000"},
		// localhost: lower-cased, not merged with loopback addresses.
		{"LOCALHOST:5000/app:1", "localhost:5000/app:1", "localhost:5000"},
		{"LocalHost/app:1", "localhost/app:1", "localhost"},
		{"127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1", "127.0.0.1:5000"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if r.String() != tc.canonical || r.Registry() != tc.registry {
				t.Errorf("Parse(%q) = %q (registry %q), want %q (registry %q)", tc.in, r.String(), r.Registry(), tc.canonical, tc.registry)
			}
			if r2, err := Parse(r.String()); err != nil || r2.String() != r.String() {
				t.Errorf("canonical %q does not parse to itself: %q, %v", r.String(), r2.String(), err)
			}
			// What registry calls and pulls use must be the same server.
			if _, err := r.Name(); err != nil {
				t.Errorf("Name() of %q: %v", r.String(), err)
			}
		})
	}
}

func TestNormalizeRegistryErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"myreg.example.com.", "ends in a dot"},
		{"myreg.example.com.:443", "ends in a dot"},
		{"localhost.", "ends in a dot"},
		{"myreg.example.com:", "empty port"},
		{"myreg.example.com:0", "not between 1 and 65535"},
		{"myreg.example.com:65536", "not between 1 and 65535"},
		{"myreg.example.com:99999999999999999999", "not between 1 and 65535"},
		{"", "empty registry host"},
	} {
		if got, err := NormalizeRegistry(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NormalizeRegistry(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.want)
		}
	}
	// Through Parse the trailing dot gets the same precise message.
	for _, in := range []string{"myreg.example.com./team/app:1", "myreg.example.com.:443/team/app:1"} {
		if _, err := Parse(in); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "ends in a dot") {
			t.Errorf("Parse(%q) = %v, want ErrInvalid saying the host ends in a dot", in, err)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	for _, in := range []string{
		"", " nginx", "nginx ", "Nginx", "reg.io/Team/app", "reg.io/app:", "reg.io/app@sha256:short",
		"reg.io/app@md5:0123", "reg.io//app", "reg.io/app:v1:v2", "reg.io/app@" + dg + "@" + dg,
		"reg.io/app:" + strings.Repeat("x", 200), strings.Repeat("a/", 3000) + "b", "reg.io/app:tag with space",
		"-reg.io/app", "reg.io/" + strings.Repeat("a", 250) + ":v1",
	} {
		t.Run(in, func(t *testing.T) {
			if r, err := Parse(in); err == nil {
				t.Fatalf("Parse(%q) = %q, want error", in, r)
			} else if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not match ErrInvalid", in, err)
			}
		})
	}
}

func TestWithDigest(t *testing.T) {
	r := MustParse("nginx:1")
	p := r.WithDigest(dg)
	if got, want := p.String(), "docker.io/library/nginx:1@"+dg; got != want {
		t.Fatalf("WithDigest = %q, want %q", got, want)
	}
	if r.Digest() != "" {
		t.Fatal("WithDigest modified the receiver")
	}
	if got := p.WithoutDigest().String(); got != "docker.io/library/nginx:1" {
		t.Fatalf("WithoutDigest = %q", got)
	}
	n, err := p.Name()
	if err != nil || n.String() != "index.docker.io/library/nginx@"+dg {
		t.Fatalf("Name() = %v, %v", n, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"nginx", "reg.io:5000/a/b:c@" + dg, "localhost/x", "UPPER/x", "a@b", ":", "@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		// Whatever parses must have a canonical form that parses to itself.
		r2, err := Parse(r.String())
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", r.String(), s, err)
		}
		if r2.String() != r.String() || r2.GUN() != r.GUN() {
			t.Fatalf("canonical form unstable: %q -> %q", r.String(), r2.String())
		}
	})
}
