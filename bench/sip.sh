#!/usr/bin/env bash
# sip.sh is the SIP benchmark: in one run, side by side, SIPp driving
# complete calls against Switchback and against Kamailio answering
# statelessly (bench/sip/kamailio.cfg, the fast-C-server ceiling of this
# machine), then calls held up while the agent plays them audio.
# docs/benchmarks.md ("SIP calls") explains it and holds the figures of a
# real run.
#
#   1. Complete calls at fixed rates. At each rate in BENCH_SIP_RATES, SIPp
#      runs for BENCH_SIP_DURATION against Kamailio, then against
#      Switchback (bench/sip/uac_kamailio.xml, bench/sip/uac_switchback.xml):
#      INVITE with an SDP offer and X-ASAPP-CallTransferId, 200, ACK, then
#      the BYE of Switchback's menu (no greeting, default outcome at once),
#      or for Kamailio, which cannot hang up, the caller's own BYE. Every
#      Switchback call uses up one ACTIVE transfer created over the API
#      before the runs. Reported: calls complete and failed, the achieved
#      rate, INVITE->200 p50/p99, the server's CPU and memory.
#   2. Media. bench/sip (sipbench media) places BENCH_SIP_MEDIA_CALLS calls
#      at once whose agent plays a 60 s tone, holds them for
#      BENCH_SIP_MEDIA_HOLD, and counts each call's RTP packets: lost and
#      late (over 40 ms behind), and the server's CPU and memory per call.
#
# Everything runs on loopback and shares the machine's cores, unpinned.
# Switchback's API and SIP, Kamailio's SIP and each SIPp take free ports.
#
#   BENCH_SHORT            1 for a run of a few seconds at a tiny load, to show it runs
#                          (bench/short_test.go); the settings below still apply
#   BENCH_SIP_RATES        calls/s steps (default "500 1000 1500 2000 2500 3000"; "" for none)
#   BENCH_SIP_DURATION     seconds of calls per step (default 10)
#   BENCH_SIP_LIMIT        most calls SIPp keeps up at once (default 10000)
#   BENCH_SIP_KEEP_GOING   1 to run Switchback's higher steps after one failed (default 0:
#                          an overloaded server collapses, and each such step takes up to 30 s)
#   BENCH_SIP_KAMAILIO     0 to leave Kamailio out (default 1)
#   BENCH_SIP_CEILING_RATES  further steps for Kamailio alone, past Switchback's (default "5000 10000")
#   BENCH_SIP_CEILING_DURATION  seconds of calls per such step (default 5)
#   BENCH_SIP_MEDIA_CALLS  concurrent calls of the media test; 0 skips it (default 1000)
#   BENCH_SIP_MEDIA_HOLD   measured seconds with every call up (default 15)
#   BENCH_SIP_MEDIA_SEND   1 to also send the callers' audio (both directions) in a second media run (default 0)
#   BENCH_SIP_RTP_PORTS    Switchback's RTP ports, MIN-MAX (default 24000-31999; 12000-12999 in the short mode)
#   BENCH_STRICT           1 to exit 1 when a target fails (default 0)
#   BENCH_OUT              directory for the results (default a new /tmp/switchback-sipbench.*)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${BENCH_SHORT:-0} == 1 ]]; then
	rates=(${BENCH_SIP_RATES-20})
	duration=${BENCH_SIP_DURATION:-2}
	ceiling_rates=(${BENCH_SIP_CEILING_RATES-50})
	ceiling_duration=${BENCH_SIP_CEILING_DURATION:-1}
	media_calls=${BENCH_SIP_MEDIA_CALLS:-10}
	media_hold=${BENCH_SIP_MEDIA_HOLD:-2}
	pause=0.5 # between runs
	rtp_ports=${BENCH_SIP_RTP_PORTS:-12000-12999}
else
	rates=(${BENCH_SIP_RATES-500 1000 1500 2000 2500 3000})
	duration=${BENCH_SIP_DURATION:-10}
	ceiling_rates=(${BENCH_SIP_CEILING_RATES-5000 10000})
	ceiling_duration=${BENCH_SIP_CEILING_DURATION:-5}
	media_calls=${BENCH_SIP_MEDIA_CALLS:-1000}
	media_hold=${BENCH_SIP_MEDIA_HOLD:-15}
	pause=2
	rtp_ports=${BENCH_SIP_RTP_PORTS:-24000-31999}
fi
limit=${BENCH_SIP_LIMIT:-10000}
with_kamailio=${BENCH_SIP_KAMAILIO:-1}
keep_going=${BENCH_SIP_KEEP_GOING:-0}
media_send=${BENCH_SIP_MEDIA_SEND:-0}
out=${BENCH_OUT:-$(mktemp -d /tmp/switchback-sipbench.XXXXXX)}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
work=$(mktemp -d /tmp/switchback-sipbench-work.XXXXXX)

log() { echo "sipbench: $*" >&2; }
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
if ! command -v sipp >/dev/null || { [[ $with_kamailio == 1 ]] && ! command -v kamailio >/dev/null; }; then
	log "installing sip-tester and kamailio (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester kamailio >/dev/null ||
		die "sipp and kamailio are needed: apt-get install sip-tester kamailio"
fi
kamailio_bin=$(command -v kamailio || echo /usr/sbin/kamailio)

log "building (switchback without -race, bench/sip)"
go build -o "$work/switchback" ./cmd/switchback
go build -o "$work/sipbench" ./bench/sip
sb=$work/sipbench

# The media test's greeting: a tone longer than any call, so the agent
# sends audio for the whole of it.
"$sb" wav -o "$work/greeting.wav" -seconds 60

mkdir -p "$work/sqlite"
cat >"$work/switchback.yaml" <<EOF
api:
  listen: 127.0.0.1:0
store:
  driver: sqlite
  dsn: "$work/sqlite/switchback.db"
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: ${rtp_ports%-*}, max: ${rtp_ports#*-}}
  rtpTimeout: 1h
tenants:
  - id: bench
    name: SIP benchmark tenant
    sipTTL: 1h
    rateLimit: {requestsPerSecond: 1000000000, burst: 1000000000}
    sip:
      user: bench
      allow: [127.0.0.0/8]
      maxCalls: 100000
    agents:
      # Any task: no greeting, no wait, hand back at once (SYSTEM), by BYE.
      - task: ""
        menu: {digitTimeout: 0s, default: {transferType: SYSTEM}}
      # The media test: a 60 s greeting, then 30 s for a digit.
      - task: media
        menu: {greeting: "$work/greeting.wav", digitTimeout: 30s, default: {transferType: SYSTEM}}
log:
  level: warn
EOF

k=$("$work/switchback" keys create --config "$work/switchback.yaml" --tenant bench)
api_id=$(sed -nE 's/.*asapp-api-id: (\S+).*/\1/p' <<<"$k" | head -n1)
api_secret=$(sed -nE 's/.*asapp-api-secret: (\S+).*/\1/p' <<<"$k" | head -n1)
[[ -n $api_id && -n $api_secret ]] || die "keys create printed no key: $k"

"$work/switchback" serve --config "$work/switchback.yaml" >"$work/switchback.out" 2>"$out/switchback.log" &
sb_pid=$!
pids+=("$sb_pid")
api="" sip=""
for _ in $(seq 300); do
	api=$(grep -oE 'API on http://[0-9.:]+' "$work/switchback.out" 2>/dev/null | head -n1 | sed 's/^API on //') || true
	sip=$(grep -oE 'SIP on [0-9.:]+' "$work/switchback.out" 2>/dev/null | head -n1 | sed 's/^SIP on //') || true
	[[ -n $api && -n $sip ]] && break
	kill -0 "$sb_pid" 2>/dev/null || { cat "$out/switchback.log" >&2; die "switchback exited before listening"; }
	sleep 0.1
done
[[ -n $api && -n $sip ]] || die "switchback did not start: $(cat "$out/switchback.log")"
log "switchback (pid $sb_pid): API $api, SIP $sip"

if [[ $with_kamailio == 1 ]]; then
	kport=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	"$kamailio_bin" -f bench/sip/kamailio.cfg -DD -E -l "udp:127.0.0.1:$kport" -m 64 -M 8 \
		-w "$work" -P "$work/kamailio.pid" >"$out/kamailio.log" 2>&1 &
	kam_pid=$!
	pids+=("$kam_pid")
	for _ in $(seq 100); do
		grep -q "127.0.0.1:$kport" <(ss -Hlun 2>/dev/null) && break
		kill -0 "$kam_pid" 2>/dev/null || { cat "$out/kamailio.log" >&2; die "kamailio exited"; }
		sleep 0.1
	done
	log "kamailio (pid $kam_pid): SIP 127.0.0.1:$kport"
fi

{
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
	echo "- CPU: $(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1); memory $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- $(uname -sr); $(go version | cut -d' ' -f3-); $(sipp -v 2>/dev/null | grep -oE 'SIPp v[^ ]+' | head -n1); $("$kamailio_bin" -v 2>/dev/null | head -n1 | cut -d' ' -f1-3)"
	echo "- steps: ${rates[*]} calls/s, ${duration} s each; media: $media_calls calls held ${media_hold} s"
	echo "- load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.md"

# Every Switchback call uses up one ACTIVE transfer: create them all first,
# outside any measurement.
total=0
for r in "${rates[@]}"; do total=$((total + r * duration)); done
log "creating $total transfers for the steps and $media_calls for the media test"
if ((total > 0)); then
	"$sb" seed -url "$api" -api-id "$api_id" -api-secret "$api_secret" -n "$total" -task bench -o "$work/steps.ids"
fi
if ((media_calls > 0)); then
	n=$media_calls
	[[ $media_send == 1 ]] && n=$((2 * media_calls))
	"$sb" seed -url "$api" -api-id "$api_id" -api-secret "$api_secret" -n "$n" -task media -o "$work/media.ids"
fi
sleep "$pause" # let the store's checkpoint catch up

# The media test first, on a server that has taken no call yet, so its
# memory per call is not hidden in a heap grown by the steps.
if ((media_calls > 0)); then
	log "media: $media_calls calls, ${media_hold} s held"
	head -n "$media_calls" "$work/media.ids" >"$work/media-1.ids"
	"$sb" media -dest "$sip" -ids "$work/media-1.ids" -n "$media_calls" -hold "${media_hold}s" -pids "$sb_pid" -metrics "$api/metrics" >>"$results"
	if [[ $media_send == 1 ]]; then
		sleep "$pause"
		log "media, both directions: $media_calls calls, ${media_hold} s held"
		tail -n "$media_calls" "$work/media.ids" >"$work/media-2.ids"
		"$sb" media -send -dest "$sip" -ids "$work/media-2.ids" -n "$media_calls" -hold "${media_hold}s" -pids "$sb_pid" -metrics "$api/metrics" >>"$results"
	fi
	sleep "$pause"
fi

offset=0
sb_failed=""
for r in "${rates[@]}"; do
	calls=$((r * duration))
	csv=$work/step-$r.csv
	{ echo SEQUENTIAL; sed -n "$((offset + 1)),$((offset + calls))p" "$work/steps.ids"; } >"$csv"
	offset=$((offset + calls))
	if [[ $with_kamailio == 1 ]]; then
		"$sb" step -server kamailio -rate "$r" -duration "${duration}s" -limit "$limit" -inf "$csv" \
			-scenario bench/sip/uac_kamailio.xml -dest "127.0.0.1:$kport" -pids "$kam_pid" \
			-dir "$out/kamailio-$r" >>"$results"
		sleep 1
	fi
	if [[ -n $sb_failed ]]; then
		log "switchback $r cps: not run, $sb_failed cps failed (BENCH_SIP_KEEP_GOING=1 runs it)"
		continue
	fi
	"$sb" step -server switchback -rate "$r" -duration "${duration}s" -limit "$limit" -inf "$csv" \
		-scenario bench/sip/uac_switchback.xml -dest "$sip" -pids "$sb_pid" \
		-dir "$out/switchback-$r" >>"$results"
	if [[ $keep_going != 1 ]] && tail -n1 "$results" | grep -q '"sustained":false'; then
		sb_failed=$r
	fi
	sleep "$pause"
done

# Kamailio alone at higher rates, to find its own limit on this machine.
if [[ $with_kamailio == 1 ]]; then
	for r in "${ceiling_rates[@]}"; do
		calls=$((r * ceiling_duration))
		csv=$work/ceiling-$r.csv
		{ echo SEQUENTIAL; seq "$calls" | sed 's/^/kamailio-/'; } >"$csv"
		"$sb" step -server kamailio -rate "$r" -duration "${ceiling_duration}s" -limit "$limit" -inf "$csv" \
			-scenario bench/sip/uac_kamailio.xml -dest "127.0.0.1:$kport" -pids "$kam_pid" \
			-dir "$out/kamailio-$r" >>"$results"
		sleep 1
	done
fi

strict=()
[[ ${BENCH_STRICT:-0} == 1 ]] && strict=(-strict)
status=0
{
	cat "$out/machine.md"
	echo
	"$sb" report "${strict[@]}" "$results"
} >"$out/report.md" || status=$?
cat "$out/report.md"
log "took $(($(date +%s) - start))s; results in $out (results.jsonl, report.md, machine.md, the servers' logs, SIPp's files per step)"
exit "$status"
