#!/usr/bin/env bash
# stream.sh is the benchmark of streamed calls: each call's audio streamed
# over a WebSocket to an echo agent and back (the call runtime's websocket
# agent, internal/agent/websocket, dialing internal/agent/websocket/echo),
# against the same calls bridged by media.Bridge to an RTP echo, the
# RTP-only floor, side by side in one run. docs/benchmarks.md ("Streamed
# calls") explains it and holds the figures of real runs.
#
# Two processes run for the whole script on loopback: Switchback's side
# (bench/stream's "switchback": media Sessions and the call runtime, without
# SIP) and the agent's (the echo agent, RTP echoes, and the time it held
# each frame). For each number of calls in BENCH_STREAM_CALLS, bench/stream
# (streambench load) sets the calls up in one mode, sends 20 ms of stamped
# PCMU on each every 20 ms for BENCH_STREAM_WARMUP and then
# BENCH_STREAM_DURATION, measures what comes back, the added latency (the
# round trip less the agent's own time), and the processes' CPU and memory
# over the second, tears the calls down, and does the same in the other
# mode; the mode that goes first alternates by round.
#
# Everything shares the machine's cores, unpinned. The processes' control
# ports are free ones.
#
# A load that fails to run is logged and the others still run, but the
# script then exits 1 whatever BENCH_STRICT says.
#
#   BENCH_SHORT              1 for a run of a few seconds at a tiny load, to show it runs
#                            (bench/short_test.go); the settings below still apply
#   BENCH_STREAM_CALLS       concurrent calls a step (default "250 500 1000")
#   BENCH_STREAM_TARGET      calls the targets are judged at (default 1000)
#   BENCH_STREAM_DURATION    measured seconds a step (default 10)
#   BENCH_STREAM_WARMUP      seconds of load before them (default 2)
#   BENCH_STREAM_ROUNDS      rounds of every step (default 1)
#   BENCH_STREAM_PORTS       RTP ports of Switchback's side, MIN-MAX (default 24000-31999;
#                            15000-15999 in the short mode)
#   BENCH_STRICT             1 to exit 1 when a target fails (default 0)
#   BENCH_OUT                directory for the results (default a new /tmp/switchback-streambench.*)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${BENCH_SHORT:-0} == 1 ]]; then
	steps=(${BENCH_STREAM_CALLS-5})
	target=${BENCH_STREAM_TARGET:-5}
	duration=${BENCH_STREAM_DURATION:-1}
	warmup=${BENCH_STREAM_WARMUP:-1}
	ports=${BENCH_STREAM_PORTS:-15000-15999}
else
	steps=(${BENCH_STREAM_CALLS-250 500 1000})
	target=${BENCH_STREAM_TARGET:-1000}
	duration=${BENCH_STREAM_DURATION:-10}
	warmup=${BENCH_STREAM_WARMUP:-2}
	ports=${BENCH_STREAM_PORTS:-24000-31999}
fi
rounds=${BENCH_STREAM_ROUNDS:-1}
out=${BENCH_OUT:-$(mktemp -d /tmp/switchback-streambench.XXXXXX)}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
work=$(mktemp -d /tmp/switchback-streambench-work.XXXXXX)

log() { echo "streambench: $*" >&2; }
die() { log "$*"; exit 1; }

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

start=$(date +%s)
# A streamed call holds three sockets on Switchback's side (RTP, RTCP,
# the WebSocket), a bridged one four; the agent and the load one each.
ulimit -n 65536 2>/dev/null || true

log "building bench/stream"
go build -o "$work/streambench" ./bench/stream
sb=$work/streambench

# wait_line FILE PREFIX PID NAME prints what follows PREFIX on FILE's first
# line that starts with it, once PID has written it.
wait_line() {
	local v=""
	for _ in $(seq 100); do
		v=$(sed -n "s|^$2||p" "$1" 2>/dev/null | head -n1) || true
		[[ -n $v ]] && break
		kill -0 "$3" 2>/dev/null || { cat "$out/$4.log" >&2; die "the $4 process exited"; }
		sleep 0.1
	done
	[[ -n $v ]] || die "the $4 process did not start"
	echo "$v"
}

"$sb" agent -listen 127.0.0.1:0 >"$work/agent.out" 2>"$out/agent.log" &
agent_pid=$!
pids+=("$agent_pid")
agent_url=$(wait_line "$work/agent.out" "agent on " "$agent_pid" agent)
log "echo agent (pid $agent_pid): $agent_url/stream"

"$sb" switchback -control 127.0.0.1:0 -ports "$ports" -agent "ws${agent_url#http}/stream" \
	>"$work/switchback.out" 2>"$out/switchback.log" &
sb_pid=$!
pids+=("$sb_pid")
control=$(wait_line "$work/switchback.out" "control on " "$sb_pid" switchback)
log "switchback (pid $sb_pid): control $control, RTP ports $ports"

{
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
	echo "- CPU: $(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1); memory $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- $(uname -sr); $(go version | cut -d' ' -f3-)"
	echo "- steps: ${steps[*]} calls, streamed and bridged; ${warmup} s warm-up, ${duration} s measured; $rounds round(s)"
	echo "- load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.md"

# load MODE CALLS ROUND runs one step in one mode.
load() {
	local mode=$1 calls=$2 round=$3
	log "$mode, $calls calls, round $round (load average $(cut -d' ' -f1 /proc/loadavg))"
	timeout $((duration + warmup + 180)) "$sb" load -mode "$mode" -control "$control" -agent "$agent_url" \
		-pids "$sb_pid" -agent-pid "$agent_pid" -calls "$calls" -warmup "${warmup}s" -duration "${duration}s" \
		-round "$round" >>"$results" || {
		log "$mode $calls calls: the load failed"
		failed+=("$mode $calls round $round")
	}
	sleep 1
}
failed=()

for round in $(seq "$rounds"); do
	order=(bridge stream)
	((round % 2 == 0)) && order=(stream bridge)
	for calls in "${steps[@]}"; do
		for mode in "${order[@]}"; do
			load "$mode" "$calls" "$round"
		done
	done
done

strict=()
[[ ${BENCH_STRICT:-0} == 1 ]] && strict=(-strict)
status=0
{
	cat "$out/machine.md"
	echo
	"$sb" report -target-calls "$target" "${strict[@]}" "$results"
} >"$out/report.md" || status=$?
cat "$out/report.md"
log "took $(($(date +%s) - start))s; results in $out (results.jsonl, report.md, machine.md, the processes' logs)"
if ((${#failed[@]} > 0)); then
	log "these loads failed to run: ${failed[*]}"
	exit 1
fi
exit "$status"
