#!/usr/bin/env bash
# Builds kube-apiserver (once) from the k8s.io/kubernetes module for the
# end-to-end tests and prints the binary's path. The binary is cached in the
# user's cache folder, keyed by version, so fresh clones and CI reuse it.
set -euo pipefail
VERSION=v1.37.2
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/trustgate/kube-apiserver-$VERSION"
bin="$cache/kube-apiserver"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
echo "trustgate: building kube-apiserver $VERSION once into $cache (about 10 minutes on 2 cores; later runs reuse it)" >&2
cd "$here/test/tools/kube-apiserver"
# go.sum is committed; tidy only fills what a fresh module cache lacks.
GOFLAGS="-mod=mod -buildvcs=false" go build -o "$bin.tmp" . >&2
mv "$bin.tmp" "$bin"
echo "$bin"
