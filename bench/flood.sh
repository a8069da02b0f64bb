#!/usr/bin/env bash
# flood.sh is the benchmark of unauthenticated SIP traffic: bench/flood
# runs `switchback serve` with a tenant that takes digest credentials from
# any address, sends it INVITEs without credentials from BENCH_FLOOD_SOURCES
# loopback addresses (127.10.0.1 and up) at BENCH_FLOOD_RATE a second for
# BENCH_FLOOD_DURATION while it places calls that authenticate, and watches
# the server for BENCH_FLOOD_AFTER more. It reports the server's live heap
# and RSS before, at the end and after, the bytes the flood got back per
# byte it sent, and the calls' success and INVITE->200 latency.
# docs/benchmarks.md ("Unauthenticated flood") explains it and holds the
# figures of a real run.
#
# The server is built from the working tree, or is BENCH_FLOOD_BIN; with
# BENCH_FLOOD_BEFORE set to a git revision, the same run is made first
# against that revision's build, for a before/after comparison.
#
#   BENCH_FLOOD_SOURCES    source addresses (default 2000)
#   BENCH_FLOOD_RATE       INVITEs a second (default 2500)
#   BENCH_FLOOD_DURATION   flood length (default 40s)
#   BENCH_FLOOD_AFTER      watch after the flood (default 60s)
#   BENCH_FLOOD_WARMUP     calls before the baseline is taken (default 20s)
#   BENCH_FLOOD_CALL_RATE  authenticated calls a second, from the warm-up on (default 2.5)
#   BENCH_FLOOD_BIN        switchback binary to run instead of building one
#   BENCH_FLOOD_BEFORE     git revision to run first, for comparison (default none)
#   BENCH_STRICT           1 to exit 1 when a target fails (default 0)
#   BENCH_OUT              directory for the results (default a new /tmp/switchback-floodbench.*)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-$(mktemp -d /tmp/switchback-floodbench.XXXXXX)}
mkdir -p "$out"
work=$(mktemp -d /tmp/switchback-floodbench-work.XXXXXX)
trap 'rm -rf "$work"' EXIT

log() { echo "floodbench: $*" >&2; }

args=(-sources "${BENCH_FLOOD_SOURCES:-2000}" -rate "${BENCH_FLOOD_RATE:-2500}"
	-duration "${BENCH_FLOOD_DURATION:-40s}" -after "${BENCH_FLOOD_AFTER:-60s}"
	-warmup "${BENCH_FLOOD_WARMUP:-20s}" -call-rate "${BENCH_FLOOD_CALL_RATE:-2.5}")
strict=()
[[ ${BENCH_STRICT:-0} == 1 ]] && strict=(-strict)

go build -o "$work/flood" ./bench/flood

status=0
if [[ -n ${BENCH_FLOOD_BEFORE:-} ]]; then
	rev=$(git rev-parse --short "$BENCH_FLOOD_BEFORE")
	log "building $rev for the comparison"
	mkdir -p "$work/before"
	git archive "$rev" | tar -x -C "$work/before"
	(cd "$work/before" && go build -o "$work/switchback-before" ./cmd/switchback)
	# The earlier build may miss the targets: that is the comparison.
	"$work/flood" -bin "$work/switchback-before" -label "before ($rev)" -out "$out/before" \
		"${args[@]}" | tee "$out/report-before.md" || true
fi

bin=${BENCH_FLOOD_BIN:-}
if [[ -z $bin ]]; then
	go build -o "$work/switchback" ./cmd/switchback
	bin=$work/switchback
fi
label="switchback ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ", modified"))"
"$work/flood" -bin "$bin" -label "$label" -out "$out/after" "${args[@]}" "${strict[@]}" | tee "$out/report.md" || status=$?
log "results in $out"
exit "$status"
