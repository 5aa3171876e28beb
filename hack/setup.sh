#!/usr/bin/env bash
# Set-up from a bare Debian machine with Go: everything `make demo` and
# `make test` need, installed when missing, quickly skipped when present.
#
#   hack/setup.sh            Debian packages, helm, cosign, kube-apiserver
#   hack/setup.sh --no-kube  the same without kube-apiserver (for `make image`-only use)
#
# What and how long (measured on 2 busy cores, see README "Quick start"):
#   Debian packages notary, docker-registry, etcd-server           about 1.5 minutes (apt-get; sudo when not root)
#   helm v4.3.2 (go install, cached in the cache's bin/)            2 minutes on idle cores, 16 when busy; once
#   cosign CLI v3.1.3 for the cosign tests (go install, cached)     about 6 minutes, once
#   kubectl v1.37.2 when none is on PATH (hack/tools/kubectl)       1-5 minutes, once
#   kube-apiserver v1.37.2 (hack/kube-apiserver.sh, cached)        about 7-15 minutes, once
# A second run finds everything and takes about a second.
#
# It prints the folder of helm (and kubectl when built) last on stdout
# (callers add it to PATH; the Makefile does);
# progress goes to stderr.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/trustgate"
gobin="$cache/bin"
HELM_VERSION=v4.3.2
COSIGN_VERSION=v3.1.3 # test/harness/cosign.Version
KUBECTL_VERSION=v1.37.2
kube=1
[[ "${1:-}" == "--no-kube" ]] && kube=0

say() { printf 'setup: %s\n' "$*" >&2; }
start=$SECONDS

# Debian packages. Binary name : package name. (kubectl is built below:
# Debian's kubernetes-client 1.20 embeds a kustomize too old for deploy/.)
need=()
for pair in notary-server:notary notary:notary docker-registry:docker-registry etcd:etcd-server; do
	command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if ((${#need[@]})); then
	mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
	sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null || { say "need root or sudo to install: ${need[*]}"; exit 2; }
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null || { say "no apt-get: install ${need[*]} by hand (Debian package names)"; exit 2; }
	say "installing Debian packages ${need[*]} with apt-get (about a minute)"
	t=$SECONDS
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
	for b in notary-server notary docker-registry etcd; do
		command -v "$b" >/dev/null 2>&1 || { say "$b is still missing after apt-get install ${need[*]}"; exit 2; }
	done
	say "Debian packages installed in $((SECONDS - t)) s"
	# The packages ship systemd units; nothing here starts them, and the
	# tests always pick free ports, so they are left alone.
fi

# helm, built from its Go module into the cache (no download of release
# binaries: only the Go module proxy is reachable here).
mkdir -p "$gobin"
# A go-installed helm reports only "v4.3" (no release ldflags), so a stamp
# file records which version was built.
if [[ ! -x "$gobin/helm" || "$(cat "$gobin/helm.version" 2>/dev/null)" != "$HELM_VERSION" ]]; then
	say "building helm $HELM_VERSION into $gobin with go install (about 2-4 minutes on idle cores, once)"
	t=$SECONDS
	GOBIN="$gobin" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2
	echo "$HELM_VERSION" >"$gobin/helm.version"
	say "helm built in $((SECONDS - t)) s"
fi

# The cosign CLI the cosign tests sign with (test/harness/cosign looks in the
# same folder; it would install it itself, but here the cost shows as a step).
if [[ ! -x "$gobin/cosign" ]]; then
	say "building cosign $COSIGN_VERSION into $gobin with go install (about 6 minutes, once)"
	t=$SECONDS
	(cd "${TMPDIR:-/tmp}" && GOBIN="$gobin" GOFLAGS=-buildvcs=false go install "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION" >&2)
	say "cosign built in $((SECONDS - t)) s"
fi

# kubectl, when none is on PATH: built from the k8s.io/kubectl module (the
# API server's version) by the shim module hack/tools/kubectl.
if ! command -v kubectl >/dev/null 2>&1 && [[ ! -x "$gobin/kubectl" ]]; then
	say "building kubectl $KUBECTL_VERSION into $gobin (hack/tools/kubectl; about 1-5 minutes, once)"
	t=$SECONDS
	(cd "$root/hack/tools/kubectl" && GOFLAGS=-mod=mod go build \
		-ldflags "-X k8s.io/component-base/version.gitVersion=$KUBECTL_VERSION" -o "$gobin/kubectl.tmp" . >&2)
	mv "$gobin/kubectl.tmp" "$gobin/kubectl"
	say "kubectl built in $((SECONDS - t)) s"
fi

if ((kube)); then
	# Prints its own message when it builds (about 10-15 minutes, once).
	"$root/hack/kube-apiserver.sh" >/dev/null
fi

say "ready in $((SECONDS - start)) s (helm, cosign and kube-apiserver cached in $cache)"
echo "$gobin"
