#!/usr/bin/env bash
# Runs every test of Switchback. Whatever the tests need is installed and
# started here or by the tests themselves (PostgreSQL: scripts/pg-test-cluster.sh,
# started on demand by internal/pgtest), so this works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null; then
	echo "test.sh: Go is required (https://go.dev/dl)" >&2
	exit 1
fi

bash scripts/deps.sh
bash scripts/python-deps.sh

# Start the throwaway PostgreSQL cluster once, up front, so parallel test
# binaries share it instead of racing to install it.
SWITCHBACK_TEST_POSTGRES_DSN=$(bash scripts/pg-test-cluster.sh)
export SWITCHBACK_TEST_POSTGRES_DSN

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...
