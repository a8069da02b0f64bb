#!/usr/bin/env bash
# bridge.sh is the benchmark of bridged calls: RTP relayed both ways between
# a caller's leg and a return leg, by Switchback (media.Bridge, in
# bench/bridge's relay process) and by rtpengine from Debian in userspace
# (no kernel forwarding), side by side in one run. docs/benchmarks.md
# ("Bridged calls") explains it and holds the figures of real runs.
#
# Both relays run for the whole script on loopback. For each number of
# calls in BENCH_BRIDGE_CALLS, bench/bridge (bridgebench load) sets the
# calls up on one relay (rtpengine over its ng protocol: offer, answer;
# Switchback over its relay's line protocol), sends a 20 ms G.711 packet
# each way on every call every 20 ms for BENCH_BRIDGE_WARMUP and then
# BENCH_BRIDGE_DURATION, measures loss, added latency and the relay's CPU
# over the second, tears the calls down, and does the same on the other
# relay; the relay that goes first alternates by round. Then one step
# with the legs on different codecs (PCMU to PCMA), which both relays
# transcode.
#
# Everything shares the machine's cores, unpinned. Both relays' control
# ports are free ones; their RTP ranges are apart.
#
# A load that fails to run (the relay refused the calls, say) is logged and
# the others still run, but the script then exits 1 whatever BENCH_STRICT
# says: a report with a step missing is not a result.
#
#   BENCH_SHORT              1 for a run of a few seconds at a tiny load, to show it runs
#                            (bench/short_test.go); the settings below still apply
#   BENCH_BRIDGE_CALLS       concurrent calls a step (default "250 500 1000")
#   BENCH_BRIDGE_TRANSCODE   calls of the PCMU/PCMA step; 0 skips it (default 500)
#   BENCH_BRIDGE_DURATION    measured seconds a step (default 10)
#   BENCH_BRIDGE_WARMUP      seconds of load before them (default 2)
#   BENCH_BRIDGE_ROUNDS      rounds of every step (default 1)
#   BENCH_BRIDGE_RELAY_PORTS  RTP ports of Switchback's relay, MIN-MAX (default 24000-31999;
#                            13000-13999 in the short mode)
#   BENCH_BRIDGE_RTPENGINE_PORTS  rtpengine's, MIN-MAX (default 16000-23999; 14000-14999 in the short mode)
#   BENCH_STRICT             1 to exit 1 when a target fails (default 0)
#   BENCH_OUT                directory for the results (default a new /tmp/switchback-bridgebench.*)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${BENCH_SHORT:-0} == 1 ]]; then
	steps=(${BENCH_BRIDGE_CALLS-10})
	transcode=${BENCH_BRIDGE_TRANSCODE:-10}
	duration=${BENCH_BRIDGE_DURATION:-1}
	warmup=${BENCH_BRIDGE_WARMUP:-1}
	relay_ports=${BENCH_BRIDGE_RELAY_PORTS:-13000-13999}
	rtpengine_ports=${BENCH_BRIDGE_RTPENGINE_PORTS:-14000-14999}
else
	steps=(${BENCH_BRIDGE_CALLS-250 500 1000})
	transcode=${BENCH_BRIDGE_TRANSCODE:-500}
	duration=${BENCH_BRIDGE_DURATION:-10}
	warmup=${BENCH_BRIDGE_WARMUP:-2}
	relay_ports=${BENCH_BRIDGE_RELAY_PORTS:-24000-31999}
	rtpengine_ports=${BENCH_BRIDGE_RTPENGINE_PORTS:-16000-23999}
fi
rounds=${BENCH_BRIDGE_ROUNDS:-1}
out=${BENCH_OUT:-$(mktemp -d /tmp/switchback-bridgebench.XXXXXX)}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
work=$(mktemp -d /tmp/switchback-bridgebench-work.XXXXXX)

log() { echo "bridgebench: $*" >&2; }
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
if ! command -v rtpengine >/dev/null; then
	log "installing rtpengine-daemon (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rtpengine-daemon >/dev/null ||
		die "rtpengine is needed: apt-get install rtpengine-daemon"
fi
# Each call holds four sockets in each relay (RTP and RTCP, two legs).
ulimit -n 65536 2>/dev/null || true

log "building bench/bridge"
go build -o "$work/bridgebench" ./bench/bridge
bb=$work/bridgebench

"$bb" relay -control 127.0.0.1:0 -ports "$relay_ports" >"$work/relay.out" 2>"$out/switchback-relay.log" &
sb_pid=$!
pids+=("$sb_pid")
control=""
for _ in $(seq 100); do
	control=$(sed -n 's/^control on //p' "$work/relay.out" 2>/dev/null | head -n1) || true
	[[ -n $control ]] && break
	kill -0 "$sb_pid" 2>/dev/null || { cat "$out/switchback-relay.log" >&2; die "the Switchback relay exited"; }
	sleep 0.1
done
[[ -n $control ]] || die "the Switchback relay did not start"
log "switchback relay (pid $sb_pid): control $control, RTP ports $relay_ports"

# Userspace only: --table=-1 takes no kernel forwarding table, and without
# --no-fallback rtpengine runs without its kernel module.
ngport=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rtpengine --config-file=none --foreground --log-stderr --log-level=4 --table=-1 \
	--interface=127.0.0.1 --listen-ng="127.0.0.1:$ngport" --port-min="${rtpengine_ports%-*}" --port-max="${rtpengine_ports#*-}" \
	--num-threads="$(nproc)" --delete-delay=0 --timeout=60 >"$out/rtpengine.log" 2>&1 &
re_pid=$!
pids+=("$re_pid")
for _ in $(seq 100); do
	grep -q "127.0.0.1:$ngport" <(ss -Hlun 2>/dev/null) && break
	kill -0 "$re_pid" 2>/dev/null || { cat "$out/rtpengine.log" >&2; die "rtpengine exited"; }
	sleep 0.1
done
log "rtpengine (pid $re_pid, $(nproc) worker threads): ng 127.0.0.1:$ngport, RTP ports $rtpengine_ports"

{
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
	echo "- CPU: $(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1); memory $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- $(uname -sr); $(go version | cut -d' ' -f3-); rtpengine $(rtpengine --version 2>&1 | sed -n 's/^Version: //p') userspace (--table=-1)"
	echo "- steps: ${steps[*]} calls (PCMU both legs)$( ((transcode > 0)) && echo ", $transcode calls PCMU/PCMA"); ${warmup} s warm-up, ${duration} s measured; $rounds round(s)"
	echo "- load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.md"

# load RELAY CALLS CODECS ROUND runs one step on one relay.
load() {
	local relay=$1 calls=$2 codecs=$3 round=$4 control_addr pid
	if [[ $relay == switchback ]]; then
		control_addr=$control pid=$sb_pid
	else
		control_addr=127.0.0.1:$ngport pid=$re_pid
	fi
	timeout $((duration + warmup + 120)) "$bb" load -relay "$relay" -control "$control_addr" -pids "$pid" \
		-calls "$calls" -codecs "$codecs" -warmup "${warmup}s" -duration "${duration}s" -round "$round" >>"$results" || {
		log "$relay $calls calls $codecs: the load failed"
		failed+=("$relay $calls $codecs round $round")
	}
	sleep 1
}
failed=()

for round in $(seq "$rounds"); do
	order=(rtpengine switchback)
	((round % 2 == 0)) && order=(switchback rtpengine)
	for calls in "${steps[@]}"; do
		for relay in "${order[@]}"; do
			load "$relay" "$calls" PCMU/PCMU "$round"
		done
	done
	if ((transcode > 0)); then
		for relay in "${order[@]}"; do
			load "$relay" "$transcode" PCMU/PCMA "$round"
		done
	fi
done

strict=()
[[ ${BENCH_STRICT:-0} == 1 ]] && strict=(-strict)
status=0
{
	cat "$out/machine.md"
	echo
	"$bb" report "${strict[@]}" "$results"
} >"$out/report.md" || status=$?
cat "$out/report.md"
log "took $(($(date +%s) - start))s; results in $out (results.jsonl, report.md, machine.md, the relays' logs)"
if ((${#failed[@]} > 0)); then
	log "these loads failed to run: ${failed[*]}"
	exit 1
fi
exit "$status"
