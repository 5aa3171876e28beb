package imageref

import (
	"fmt"
	"strconv"
	"strings"
)

// How registry hosts are normalized. References (Parse) and policy patterns
// (policy.CompilePattern) both go through NormalizeRegistry, so a rule can
// never miss a reference because the two spelt one server differently: that
// mismatch let `myreg.example.com:443/team/app` and
// `registry-1.docker.io/myorg/app` past `verify` rules (issue 9, item 2).
//
// The aim is the host the kubelet (containerd, CRI-O) contacts. Only spellings
// that reach the same registry under every node configuration are merged;
// everything else stays a distinct name, which a `verify` rule followed by
// `unmatched: deny` refuses and `unmatched: allow` admits (as it admits any
// other host no rule names).
//
//   - Case: DNS names are case-insensitive, so the host is lower-cased
//     (`MyReg.Example.com` is `myreg.example.com`). Paths keep their case and
//     upper case there is refused, as the kubelet does.
//   - Docker Hub: `docker.io`, `index.docker.io` and `registry-1.docker.io`
//     are one service. distribution/reference rewrites index.docker.io to
//     docker.io, and containerd sends docker.io to registry-1.docker.io, so a
//     pod naming any of the three pulls from Docker Hub: all become
//     `docker.io` (with `library/` for one-segment paths, as for docker.io).
//   - Ports are compared as numbers (`:0443` is `:443`, `:05000` is `:5000`).
//   - Port 443: the default port of HTTPS, which is how containerd and CRI-O
//     reach every registry not configured otherwise, so `host:443` is the
//     same server as `host` and the port is dropped. The pinned form /mutate
//     writes (`host/path:tag@digest`) is therefore pulled from that same
//     server.
//   - Port 80 stays: a registry is reached over HTTPS unless the node marks
//     it insecure, so `host:80` is TLS on port 80, another socket than
//     `host`. Node configuration (containerd hosts.d, registries.conf) is
//     keyed by the name as written, so `host:80` is plain HTTP only where
//     `host:80` itself is configured so; a policy for such a registry names
//     `host:80`.
//   - A trailing dot (`myreg.example.com.`) is refused with its own message:
//     the reference grammar the kubelet parses with does not allow it, so no
//     pod can pull such an image and a pattern with it could match nothing.
//   - `localhost` is lower-cased and otherwise kept: it is not merged with
//     127.0.0.1 or ::1, because node configuration can send the names to
//     different servers (kind's local registry maps `localhost:5001` to
//     another host in containerd's hosts.d) and rewriting one into the other
//     would break such pulls. IP addresses and other DNS names of a server
//     are likewise distinct names.
const (
	// DockerHub is the registry name used for Docker Hub images in canonical
	// references and policy patterns; go-containerregistry calls it index.docker.io.
	DockerHub = "docker.io"

	httpsDefaultPort = 443
)

// dockerHubAliases are the hosts that serve Docker Hub's registry API.
var dockerHubAliases = map[string]bool{
	DockerHub:              true,
	"index.docker.io":      true,
	"registry-1.docker.io": true,
}

// IsRegistryHost reports whether the first segment of a reference names a
// registry host rather than the first path component of a Docker Hub image:
// it does when it contains '.' or ':' or is localhost, the rule of
// distribution/reference (which also lets any upper case through as a host;
// trustgate refuses upper-case paths instead).
func IsRegistryHost(segment string) bool {
	return strings.ContainsAny(segment, ".:") || strings.EqualFold(segment, "localhost")
}

// NormalizeRegistry returns the canonical spelling of a registry host[:port]
// as written in a reference or pattern (glob characters pass through
// untouched). See the comment above for each decision.
func NormalizeRegistry(host string) (string, error) {
	h := strings.ToLower(host)
	if h == "" {
		return "", fmt.Errorf("empty registry host")
	}
	hostOnly, port, hasPort := strings.Cut(h, ":")
	if strings.HasSuffix(hostOnly, ".") {
		return "", errTrailingDot(host)
	}
	if hasPort && port == "" {
		return "", fmt.Errorf("registry %q: empty port after ':'", host)
	}
	if hasPort && strings.Trim(port, "0123456789") == "" {
		// Ports are numbers: "0443" dials 443, so compare and write them as
		// numbers. (A pattern's port may be a glob, which passes through.)
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("registry %q: port %s is not between 1 and 65535", host, port)
		}
		h = hostOnly + ":" + strconv.Itoa(n)
		if n == httpsDefaultPort {
			h = hostOnly
		}
	}
	if dockerHubAliases[h] {
		h = DockerHub
	}
	return h, nil
}

func errTrailingDot(host string) error {
	return fmt.Errorf("registry host %q ends in a dot: the image reference grammar (and so the kubelet) refuses it; write it without the dot", host)
}
