#!/usr/bin/env bash
# The short benchmark run behind `make bench` (issue 6): builds trustgate (if
# `make build` did not), the floor server and the anchor (its own Go module),
# runs the hot-path micro-benchmarks, then bench/scenarios, which starts a real
# notary-server, trustgate and the floor on 127.0.0.1 and rewrites
# BENCHMARKS.md. Everything after the builds takes under 3 minutes.
#
# Environment: OUT (default BENCHMARKS.md), BENCH_ARGS (extra flags for
# bench/scenarios, e.g. "--warm-duration 20s --keep"), MICRO_BENCHTIME
# (default 2000x), PROFILE=DIR (measure a trustgate built with the pprof
# overlay of bench/profile and write CPU profiles of its warm path to DIR;
# inspect with `go tool pprof -top DIR/trustgate-warm-saturation.pprof`).
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"
OUT="${OUT:-BENCHMARKS.md}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/trustgate-bench.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

for bin in notary notary-server; do
	command -v "$bin" >/dev/null || { echo "bench: $bin not found (apt-get install notary)" >&2; exit 1; }
done

echo "bench: building trustgate, floor, anchor" >&2
profile_args=()
if [[ -n "${PROFILE:-}" ]]; then
	# The overlay adds one file to package main without touching the tree.
	mkdir -p "$PROFILE"
	printf '{"Replace":{"%s":"%s"}}\n' "$PWD/cmd/trustgate/zz_bench_pprof.go" "$PWD/bench/profile/pprof.go.overlay" >"$tmp/overlay.json"
	trustgate="$PROFILE/trustgate"
	"$GO" build -overlay "$tmp/overlay.json" -o "$trustgate" ./cmd/trustgate
	profile_args=(--profile "$PROFILE")
elif [[ -x bin/trustgate ]]; then
	trustgate=bin/trustgate
else
	trustgate="$tmp/trustgate"
	"$GO" build -o "$trustgate" ./cmd/trustgate
fi
"$GO" build -o "$tmp/floor" ./bench/floor
(cd bench/anchor && "$GO" build -o "$tmp/anchor" .)

echo "bench: hot-path micro-benchmarks" >&2
"$GO" test -count=1 -run '^$' -bench . -benchmem -benchtime "${MICRO_BENCHTIME:-2000x}" ./bench/ \
	| grep -E '^(Benchmark|goos|goarch|cpu)' >"$tmp/micro.txt"

echo "bench: scenarios" >&2
# shellcheck disable=SC2086
"$GO" run ./bench/scenarios \
	--trustgate "$trustgate" --floor "$tmp/floor" --anchor "$tmp/anchor" \
	--micro "$tmp/micro.txt" --analysis bench/analysis.md "${profile_args[@]}" \
	--out "$OUT" --command "${PROFILE:+PROFILE=$PROFILE }make bench${BENCH_ARGS:+ (BENCH_ARGS=$BENCH_ARGS)}" ${BENCH_ARGS:-}

echo "bench: notaryv1 against the real notary-server" >&2
{
	echo
	echo "## notaryv1 against the real notary-server (Go benchmarks)"
	echo
	echo "\`CI=true go test -run '^\$' -bench . -benchtime 100x ./test/integration/dct/\`: the verifier alone"
	echo "(no webhook), against Debian's notary-server over TLS on 127.0.0.1. Cold: a new verifier, nothing"
	echo "cached. Warm: metadata held and the timestamp fresh. WarmRevalidate: held, but the timestamp"
	echo "re-checked. req/op is HTTP requests per verification."
	echo
	echo '```'
	CI=true "$GO" test -count=1 -run '^$' -bench . -benchtime 100x ./test/integration/dct/ | grep -E '^Benchmark'
	echo '```'
} >>"$OUT"
