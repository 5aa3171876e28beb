#!/usr/bin/env bash
# Runs every Go fuzz target of the module for $FUZZTIME each. A crash fails the
# run; Go saves the input under testdata/fuzz, where it becomes a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-5s}"
status=0
while IFS= read -r line; do
	file="${line%%:*}"
	fn="$(sed -E 's/^.*func (Fuzz[A-Za-z0-9_]+).*/\1/' <<<"$line")"
	pkg="./$(dirname "$file")"
	echo "fuzz $pkg $fn ($FUZZTIME)"
	if ! go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/trustgate-fuzz.log 2>&1; then
		cat /tmp/trustgate-fuzz.log
		status=1
	fi
done < <(grep -rHE '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' --include='*_test.go' internal test bench 2>/dev/null | sort)
exit $status
