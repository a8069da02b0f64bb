#!/usr/bin/env bash
# fleet.sh is the benchmark of several nodes: in one run, side by side,
# SIPp placing complete calls through Kamailio's dispatcher
# (deploy/kamailio/switchback.cfg, as shipped) in front of
#
#   two-nodes  two `switchback serve` on one PostgreSQL database
#              (127.0.0.2 and 127.0.0.3);
#   one-node   one `switchback serve` on a database of its own (127.0.0.4);
#   ceiling    SIPp answering each call and handing it back by BYE at once
#              (bench/fleet/uas_ceiling.xml, 127.0.0.5): the dispatcher's
#              stateful forwarding with nothing behind it, its ceiling on
#              this machine;
#
# each behind a Kamailio of its own (three, all running the same file),
# then the cost of the fleet-wide limit of a tenant's calls
# (tenants[].sip.maxCalls, a call slot claimed in the store with each
# match): bench/sip.sh's calls, straight to one node on PostgreSQL, against
# `sipbench serve` (serve's wiring, bench/sip/profserve.go) with the limit
# and with -call-limit=false. docs/benchmarks.md ("Several nodes")
# explains it and holds the figures of a real run.
#
#   1. Dispatcher. In each of BENCH_FLEET_ROUNDS rounds, at each rate of
#      BENCH_FLEET_RATES, SIPp (bench/fleet/uac_dispatcher.xml) places
#      complete calls for BENCH_FLEET_DURATION through each Kamailio in turn
#      (the order turns with the round): INVITE with an SDP offer and
#      X-ASAPP-CallTransferId, 200, the ACK along the recorded route, then
#      the node's BYE (its menu hands the call back at once), answered 200.
#      Each call uses up one ACTIVE transfer, created before its step
#      through the API of the node (of both nodes, half each) and not
#      measured. A server's higher rates are skipped once it fails one.
#      The ceiling then runs alone at BENCH_FLEET_CEILING_RATES.
#   2. Call slots. The same, straight to one node (bench/sip's
#      uac_switchback.xml), for each tenant limit of BENCH_FLEET_SLOTS
#      ("none" is -call-limit=false: no slot claimed), at
#      BENCH_FLEET_SLOT_RATES, in turn, BENCH_FLEET_ROUNDS rounds.
#
# Reported (sipbench fleet-report): per step, calls complete and failed,
# the rate the 200s came at, INVITE->200, the CPU of each part (Kamailio,
# the nodes, PostgreSQL, the ceiling's SIPp) and per call, the calls each
# node took; per round, the highest rate with zero failures (every lower
# one too) and the ratios: two nodes / one node, each / the ceiling, and
# with the call limit / without.
#
# Everything runs on loopback and shares the machine's cores, unpinned:
# SIPp, Kamailio, the nodes and PostgreSQL. On a 2-core machine two nodes
# get no more CPU than one; see docs/benchmarks.md for what the ratio
# means there.
#
#   BENCH_SHORT                 1 for a run of a few seconds at a tiny load (bench/short_test.go)
#   BENCH_FLEET_PARTS           what to run (default "dispatcher slots")
#   BENCH_FLEET_ROUNDS          rounds (default 3)
#   BENCH_FLEET_RATES           calls/s steps of part 1 (default "100 150 200 250 300 400 500")
#   BENCH_FLEET_CEILING_RATES   further steps for the ceiling alone (default "600 800 1000 1250 1500 1750 2000 2500")
#   BENCH_FLEET_DURATION        seconds of calls per step (default 10)
#   BENCH_FLEET_SLOTS           tenant limits of part 2 (default "none 100000 100")
#   BENCH_FLEET_SLOT_RATES      calls/s steps of part 2 (default BENCH_FLEET_RATES)
#   BENCH_FLEET_KEEP_GOING      1 to run a server's higher steps after one failed (default 0)
#   BENCH_PG_DSN                a running PostgreSQL to use (its user may create databases);
#                               by default the benchmark starts its own with
#                               scripts/pg-test-cluster.sh (BENCH_FLEET_PG_DIR, default
#                               /tmp/switchback-fleetbench-pg; BENCH_FLEET_PG_PORT, default
#                               55441) and stops it at the end. Its databases are dropped.
#   BENCH_STRICT                1 to exit 1 when a target fails (default 0)
#   BENCH_OUT                   directory for the results (default a new /tmp/switchback-fleetbench.*)
set -euo pipefail
cd "$(dirname "$0")/.."

parts=${BENCH_FLEET_PARTS:-dispatcher slots}
if [[ ${BENCH_SHORT:-0} == 1 ]]; then
	rounds=${BENCH_FLEET_ROUNDS:-1}
	rates=(${BENCH_FLEET_RATES-20})
	ceiling_rates=(${BENCH_FLEET_CEILING_RATES-50})
	duration=${BENCH_FLEET_DURATION:-2}
	slots=(${BENCH_FLEET_SLOTS-none 100})
	pause=0.5
else
	rounds=${BENCH_FLEET_ROUNDS:-3}
	rates=(${BENCH_FLEET_RATES-100 150 200 250 300 400 500})
	ceiling_rates=(${BENCH_FLEET_CEILING_RATES-600 800 1000 1250 1500 1750 2000 2500})
	duration=${BENCH_FLEET_DURATION:-10}
	slots=(${BENCH_FLEET_SLOTS-none 100000 100})
	pause=2
fi
slot_rates=(${BENCH_FLEET_SLOT_RATES-${rates[*]}})
keep_going=${BENCH_FLEET_KEEP_GOING:-0}
out=${BENCH_OUT:-$(mktemp -d /tmp/switchback-fleetbench.XXXXXX)}
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
work=$(mktemp -d /tmp/switchback-fleetbench-work.XXXXXX)
chmod 755 "$work" # Kamailio may run as another user

log() { echo "fleetbench: $(date +%T) $*" >&2; }
die() { log "$*"; exit 1; }

# terminate PID...: stops processes this script started. A node drains on
# SIGTERM, letting its calls end; a second one ends them at once.
terminate() {
	local p running
	for p in "$@"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for _ in $(seq 20); do
		running=0
		for p in "$@"; do
			kill -0 "$p" 2>/dev/null && running=1
		done
		((running)) || break
		sleep 0.1
	done
	for p in "$@"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "$@"; do
		wait "$p" 2>/dev/null || true
	done
}

pids=()
pg_admin="" pg_started="" dbs=()
cleanup() {
	terminate "${pids[@]}"
	for d in "${dbs[@]}"; do
		psql "$pg_admin" -qtAX -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
	done
	if [[ -n $pg_started ]]; then
		SWITCHBACK_PG_DIR=$pg_dir SWITCHBACK_PG_PORT=$pg_port bash scripts/pg-test-cluster.sh stop >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# stop PID...: terminates processes, and forgets them.
stop() {
	local q keep=()
	terminate "$@"
	for q in "${pids[@]}"; do
		[[ " $* " == *" $q "* ]] || keep+=("$q")
	done
	pids=("${keep[@]}")
}

start=$(date +%s)
if ! command -v sipp >/dev/null || ! { command -v kamailio >/dev/null || [[ -x /usr/sbin/kamailio ]]; }; then
	log "installing sip-tester and kamailio (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester kamailio >/dev/null ||
		die "sipp and kamailio are needed: apt-get install sip-tester kamailio"
fi
kamailio_bin=$(command -v kamailio || echo /usr/sbin/kamailio)

log "building (switchback without -race, bench/sip)"
go build -o "$work/switchback" ./cmd/switchback
go build -o "$work/sipbench" ./bench/sip
sb=$work/sipbench

if [[ -n ${BENCH_PG_DSN:-} ]]; then
	log "using the PostgreSQL of BENCH_PG_DSN"
	pg_admin=$BENCH_PG_DSN
else
	pg_dir=${BENCH_FLEET_PG_DIR:-/tmp/switchback-fleetbench-pg}
	pg_port=${BENCH_FLEET_PG_PORT:-55441}
	log "starting PostgreSQL (scripts/pg-test-cluster.sh, $pg_dir, port $pg_port)"
	pg_started=1
	pg_admin=$(SWITCHBACK_PG_DIR=$pg_dir SWITCHBACK_PG_PORT=$pg_port bash scripts/pg-test-cluster.sh)
fi
pg_data=$(psql "$pg_admin" -qtAX -c 'SHOW data_directory')
pg_pid=$(head -n1 "$pg_data/postmaster.pid" 2>/dev/null) || pg_pid=""
[[ -n $pg_pid ]] || log "PostgreSQL's postmaster.pid is not readable here: its CPU is left out"

# new_db NAME: a new database, dropped at the end; prints its DSN.
new_db() {
	local db=fleetbench_$1_$(date +%s)_$$
	psql "$pg_admin" -qtAX -c "CREATE DATABASE $db" >/dev/null
	dbs+=("$db")
	sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/$db#" <<<"$pg_admin"
}

# write_config FILE DSN NODE_ID IP RTP_MIN MAX_CALLS: a node on IP (its
# API and SIP on free ports), RTP on 1000 ports from RTP_MIN, tenant bench
# as in bench/sip.sh: any address of loopback, transfers that outlive the
# run, its menu handing every call back at once by BYE. The node's lease
# lasts 60 s without a renewal instead of 15: on a shared machine the disk
# has stalled PostgreSQL's commits for over 10 s, which fences a node (it
# exits) and would end the run (docs/benchmarks.md, "Several nodes").
write_config() {
	cat >"$1" <<EOF
api:
  listen: $4:0
store:
  driver: postgres
  dsn: "$2"
node: {id: $3, ttl: 60s}
sip:
  listen: $4:0
  externalAddress: $4
  rtpPorts: {min: $5, max: $(($5 + 999))}
tenants:
  - id: bench
    name: Fleet benchmark tenant
    sipTTL: 1h
    rateLimit: {requestsPerSecond: 1000000000, burst: 1000000000}
    sip:
      user: bench
      allow: [127.0.0.0/8]
      maxCalls: $6
    agents:
      - task: ""
        menu: {digitTimeout: 0s, default: {transferType: SYSTEM}}
log:
  level: warn
EOF
}

# make_key NAME CONFIG: an API key of tenant bench in the config's
# database, in key_id[NAME] and key_secret[NAME].
declare -A key_id key_secret api sip pid
make_key() {
	local k
	k=$("$work/switchback" keys create --config "$2" --tenant bench)
	key_id[$1]=$(sed -nE 's/.*asapp-api-id: (\S+).*/\1/p' <<<"$k" | head -n1)
	key_secret[$1]=$(sed -nE 's/.*asapp-api-secret: (\S+).*/\1/p' <<<"$k" | head -n1)
	[[ -n ${key_id[$1]} && -n ${key_secret[$1]} ]] || die "keys create printed no key: $k"
}

# start_node NAME CMD...: runs a Switchback server and waits for its API
# and SIP addresses (api[NAME], sip[NAME], pid[NAME]).
start_node() {
	local name=$1 a="" s="" p
	shift
	"$@" >"$work/$name.out" 2>"$out/$name.log" &
	p=$!
	pids+=("$p")
	for _ in $(seq 600); do
		a=$(grep -oE 'API on http://[0-9.:]+' "$work/$name.out" 2>/dev/null | head -n1 | sed 's/^API on //') || true
		s=$(grep -oE 'SIP on [0-9.:]+' "$work/$name.out" 2>/dev/null | head -n1 | sed 's/^SIP on //') || true
		[[ -n $a && -n $s ]] && break
		kill -0 "$p" 2>/dev/null || { cat "$out/$name.log" >&2; die "$name exited before listening"; }
		sleep 0.1
	done
	[[ -n $a && -n $s ]] || die "$name did not start: $(cat "$out/$name.log")"
	api[$name]=$a sip[$name]=$s pid[$name]=$p
	log "$name (pid $p): API $a, SIP $s"
}

free_udp_port() {
	python3 -c 'import socket, sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}

# wait_udp ADDR PID NAME: waits until something listens on UDP ADDR.
wait_udp() {
	for _ in $(seq 100); do
		grep -q "$1" <(ss -Hlun 2>/dev/null) && return 0
		kill -0 "$2" 2>/dev/null || { cat "$out/$3.log" >&2; die "$3 exited"; }
		sleep 0.1
	done
	die "$3 does not listen on $1"
}

# start_dispatcher NAME DEST...: deploy/kamailio/switchback.cfg as
# shipped, on a free port of 127.0.0.1, with DEST (host:port) in its set 1;
# only its address, node list and control socket are set (-A). Its
# address goes in sip[NAME], its pid in pid[NAME].
start_dispatcher() {
	local name=$1 port p d i=0
	shift
	mkdir -p "$work/$name"
	for d in "$@"; do
		i=$((i + 1))
		echo "1 sip:$d 8 0 duid=$name-$i;maxload=0"
	done >"$work/$name/dispatcher.list"
	port=$(free_udp_port 127.0.0.1)
	# Shared memory for the transactions of a few seconds at the highest
	# rate (tm keeps each for 5 s once it ends).
	"$kamailio_bin" -f deploy/kamailio/switchback.cfg -DD -E \
		-A "LISTEN=udp:127.0.0.1:$port" -A "DISPATCHER_LIST=\"$work/$name/dispatcher.list\"" \
		-A "CTL_SOCKET=\"unix:$work/$name/ctl\"" \
		-m 512 -M 16 -w "$work/$name" -P "$work/$name/kamailio.pid" >"$out/$name.log" 2>&1 &
	p=$!
	pids+=("$p")
	wait_udp "127.0.0.1:$port" "$p" "$name"
	sip[$name]=127.0.0.1:$port pid[$name]=$p
	log "$name (pid $p): Kamailio on 127.0.0.1:$port, dispatching to $*"
}

# seed NAME N NODE...: N new transfers for NAME's steps, created through
# the nodes' APIs (split evenly), their ids shuffled into $work/NAME.ids.
seed() {
	local name=$1 n=$2 i=0 k each
	shift 2
	each=$(((n + $# - 1) / $#))
	for k in "$@"; do
		i=$((i + 1))
		"$sb" seed -url "${api[$k]}" -api-id "${key_id[$k]}" -api-secret "${key_secret[$k]}" \
			-n "$each" -conns 32 -task bench -o "$work/$name.$i.ids" 2>>"$work/seed.log" &
	done
	wait_jobs
	cat "$work/$name".*.ids | shuf | head -n "$n" >"$work/$name.ids"
	rm -f "$work/$name".*.ids
}

# wait_jobs waits for the background jobs started since the servers, and
# fails if one failed.
wait_jobs() {
	local j s=0
	for j in $(jobs -p); do
		[[ " ${pids[*]} " == *" $j "* ]] && continue
		wait "$j" || s=$?
	done
	((s == 0)) || { tail -n 20 "$work/seed.log" >&2; die "creating transfers failed"; }
}

# handbacks NAME: calls node NAME has handed back so far.
handbacks() {
	curl -fsS "${api[$1]}/metrics" | awk '/^switchback_handbacks_total\{/ { n += $NF } END { printf "%d\n", n }'
}

{
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
	echo "- CPU: $(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1); memory $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- $(uname -sr); $(go version | cut -d' ' -f3-); $(sipp -v 2>/dev/null | grep -oE 'SIPp v[^ ]+' | head -n1); $("$kamailio_bin" -v 2>/dev/null | head -n1 | cut -d' ' -f1-3); PostgreSQL $(psql "$pg_admin" -qtAX -c 'SHOW server_version' | cut -d' ' -f1) (fsync $(psql "$pg_admin" -qtAX -c 'SHOW fsync'), synchronous_commit $(psql "$pg_admin" -qtAX -c 'SHOW synchronous_commit'))"
	echo "- $rounds rounds; dispatcher steps ${rates[*]} calls/s (ceiling also ${ceiling_rates[*]}); call slots: ${slots[*]} at ${slot_rates[*]} calls/s; ${duration} s each"
	echo "- load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.md"

# step NAME ROUND RATE CSV SCENARIO DEST PART...: one SIPp run, its line
# in the results. NAME's nodes (nodes[NAME]) have their calls counted.
declare -A nodes failed_at
step() {
	local name=$1 round=$2 r=$3 csv=$4 scen=$5 dest=$6 n before=() i=0 line
	shift 6
	for n in ${nodes[$name]:-}; do before+=("$(handbacks "$n")"); done
	line=$("$sb" step -server "$name" -round "$round" -rate "$r" -duration "${duration}s" -inf "$csv" \
		-scenario "$scen" -dest "$dest" "$@" -dir "$out/steps/$name-$round-$r")
	echo "$line" >>"$results"
	for n in ${nodes[$name]:-}; do
		echo "{\"kind\":\"spread\",\"server\":\"$name\",\"round\":$round,\"rate\":$r,\"node\":\"$n\",\"calls\":$(($(handbacks "$n") - before[i]))}" >>"$results"
		i=$((i + 1))
	done
	if [[ $keep_going != 1 ]] && grep -q '"sustained":false' <<<"$line"; then
		failed_at[$name.$round]=$r
	fi
}

# csv_for NAME N: a SIPp injection file of N fresh transfer ids of NAME.
csv_for() {
	{ echo SEQUENTIAL; cat "$work/$1.ids"; } >"$work/$1.csv"
}

# alive NAME: fails the run unless every process of NAME's server runs.
declare -A procs
alive() {
	local p
	for p in ${procs[$1]}; do
		kill -0 "$p" 2>/dev/null && continue
		tail -n 5 "$out"/*.log >&2
		die "$1: process $p has exited (the logs in $out say why)"
	done
}

# run_server_step NAME ROUND RATE: seeds and runs one step of a server
# of part 1 or 2, unless it failed a lower rate this round.
declare -A scenario seeders partargs
run_server_step() {
	local name=$1 round=$2 r=$3 calls
	if [[ -n ${failed_at[$name.$round]:-} ]]; then
		log "round $round: $name $r cps not run: it failed at ${failed_at[$name.$round]} cps (BENCH_FLEET_KEEP_GOING=1 runs it)"
		return
	fi
	calls=$((r * duration))
	alive "$name"
	if [[ -n ${seeders[$name]:-} ]]; then
		# shellcheck disable=SC2086 # a list of nodes
		seed "$name" "$calls" ${seeders[$name]}
	else
		seq "$calls" | sed "s/^/$name-$round-$r-/" >"$work/$name.ids"
	fi
	csv_for "$name"
	sleep "$pause"
	# shellcheck disable=SC2086 # flags
	step "$name" "$round" "$r" "$work/$name.csv" "${scenario[$name]}" "${sip[$name]}" ${partargs[$name]}
}

# warm NAME: a few calls, not measured, so that each server has its
# connections and caches before its first step.
warm() {
	local name=$1 line
	if [[ -n ${seeders[$name]:-} ]]; then
		# shellcheck disable=SC2086
		seed "$name" 50 ${seeders[$name]}
	else
		seq 50 | sed "s/^/$name-warm-/" >"$work/$name.ids"
	fi
	csv_for "$name"
	line=$("$sb" step -server "$name" -rate 50 -duration 1s -inf "$work/$name.csv" -scenario "${scenario[$name]}" \
		-dest "${sip[$name]}" -dir "$out/steps/warm-$name" 2>>"$work/warm.log") ||
		{ tail -n 20 "$work/warm.log" >&2; die "$name: the warm-up calls did not run"; }
	echo "$line" >>"$out/warmup.jsonl"
	grep -q '"failed":0,' <<<"$line" || { tail -n 3 "$work/warm.log" >&2; die "$name: warm-up calls failed"; }
}

if [[ " $parts " == *" dispatcher "* ]]; then
	log "part 1: two nodes, one node and the ceiling behind Kamailio's dispatcher"
	fleet_dsn=$(new_db fleet)
	solo_dsn=$(new_db solo)
	write_config "$work/node-a.yaml" "$fleet_dsn" node-a 127.0.0.2 15000 100000
	write_config "$work/node-b.yaml" "$fleet_dsn" node-b 127.0.0.3 16000 100000
	write_config "$work/solo.yaml" "$solo_dsn" solo 127.0.0.4 17000 100000
	make_key fleet "$work/node-a.yaml"
	make_key solo "$work/solo.yaml"
	start_node node-a "$work/switchback" serve --config "$work/node-a.yaml"
	start_node node-b "$work/switchback" serve --config "$work/node-b.yaml"
	start_node solo "$work/switchback" serve --config "$work/solo.yaml"
	for n in node-a node-b; do key_id[$n]=${key_id[fleet]} key_secret[$n]=${key_secret[fleet]}; done
	key_id[solo]=${key_id[solo]} key_secret[solo]=${key_secret[solo]}

	uas_port=$(free_udp_port 127.0.0.5)
	uas_mport=$(free_udp_port 127.0.0.5)
	# -aa: the dispatcher's OPTIONS probes get their 200.
	sipp -sf bench/fleet/uas_ceiling.xml -i 127.0.0.5 -p "$uas_port" -mp "$uas_mport" -buff_size 4194304 -aa \
		-nostdin -trace_err -error_file "$out/ceiling-uas-errors.log" >"$out/ceiling-uas.log" 2>&1 &
	uas_pid=$!
	pids+=("$uas_pid")
	wait_udp "127.0.0.5:$uas_port" "$uas_pid" ceiling-uas
	log "ceiling's SIPp (pid $uas_pid): 127.0.0.5:$uas_port"

	start_dispatcher two-nodes "${sip[node-a]}" "${sip[node-b]}"
	start_dispatcher one-node "${sip[solo]}"
	start_dispatcher ceiling "127.0.0.5:$uas_port"
	nodes[two-nodes]="node-a node-b" nodes[one-node]=solo
	seeders[two-nodes]="node-a node-b" seeders[one-node]=solo
	for s in two-nodes one-node ceiling; do scenario[$s]=bench/fleet/uac_dispatcher.xml; done
	pg_part=()
	[[ -n $pg_pid ]] && pg_part=(-part "postgres=$pg_pid")
	partargs[two-nodes]="-part kamailio=${pid[two-nodes]} -part node-a=${pid[node-a]} -part node-b=${pid[node-b]} ${pg_part[*]}"
	partargs[one-node]="-part kamailio=${pid[one-node]} -part node=${pid[solo]} ${pg_part[*]}"
	partargs[ceiling]="-part kamailio=${pid[ceiling]} -part sipp-uas=$uas_pid"
	procs[two-nodes]="${pid[two-nodes]} ${pid[node-a]} ${pid[node-b]}"
	procs[one-node]="${pid[one-node]} ${pid[solo]}"
	procs[ceiling]="${pid[ceiling]} $uas_pid"
	# The first probes (every 2 s) have found the nodes up.
	sleep 2.5
	for s in two-nodes one-node ceiling; do warm "$s"; done

	servers=(ceiling one-node two-nodes)
	for round in $(seq "$rounds"); do
		log "part 1, round $round of $rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
		# The order of the servers turns with the round.
		k=$(((round - 1) % 3))
		order=("${servers[@]:k}" "${servers[@]:0:k}")
		for r in "${rates[@]}"; do
			for s in "${order[@]}"; do
				run_server_step "$s" "$round" "$r"
			done
		done
		for r in "${ceiling_rates[@]}"; do
			run_server_step ceiling "$round" "$r"
		done
	done
	stop "${pid[two-nodes]}" "${pid[one-node]}" "${pid[ceiling]}" "$uas_pid" "${pid[node-a]}" "${pid[node-b]}" "${pid[solo]}"
fi

if [[ " $parts " == *" slots "* ]]; then
	log "part 2: one node on PostgreSQL, tenant call limits ${slots[*]}"
	names=()
	i=0
	for lim in "${slots[@]}"; do
		name=slots-$lim
		dsn=$(new_db "slots_$lim")
		max=$lim
		flags=()
		if [[ $lim == none ]]; then
			max=100000
			flags=(-call-limit=false)
		fi
		write_config "$work/$name.yaml" "$dsn" "$name" "127.0.0.$((2 + i))" $((15000 + 1000 * i)) "$max"
		make_key "$name" "$work/$name.yaml"
		start_node "$name" "$sb" serve --config "$work/$name.yaml" -pprof 127.0.0.1:0 "${flags[@]}"
		seeders[$name]=$name scenario[$name]=bench/sip/uac_switchback.xml
		pg_part=()
		[[ -n $pg_pid ]] && pg_part=(-part "postgres=$pg_pid")
		partargs[$name]="-part node=${pid[$name]} ${pg_part[*]}"
		procs[$name]=${pid[$name]}
		names+=("$name")
		i=$((i + 1))
	done
	for s in "${names[@]}"; do warm "$s"; done
	for round in $(seq "$rounds"); do
		log "part 2, round $round of $rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
		k=$(((round - 1) % ${#names[@]}))
		order=("${names[@]:k}" "${names[@]:0:k}")
		for r in "${slot_rates[@]}"; do
			for s in "${order[@]}"; do
				run_server_step "$s" "$round" "$r"
			done
		done
	done
	for s in "${names[@]}"; do stop "${pid[$s]}"; done
fi

strict=()
[[ ${BENCH_STRICT:-0} == 1 ]] && strict=(-strict)
status=0
{
	cat "$out/machine.md"
	echo
	"$sb" fleet-report "${strict[@]}" "$results"
} >"$out/report.md" || status=$?
cat "$out/report.md"
log "took $(($(date +%s) - start))s; results in $out (results.jsonl, report.md, machine.md, the servers' logs, SIPp's files per step)"
exit "$status"
