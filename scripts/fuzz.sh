#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME (default 30s). New crashers land in
# the package's testdata/fuzz and become regression cases of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${FUZZTIME:-30s}
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "== $pkg $f"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg"
	done
done
