#!/usr/bin/env bash
# run.sh is the API benchmark (make bench): in one run, side by side, a bare
# net/http server answering a fixed JSON body (the HTTP ceiling of this
# machine) against Switchback's create and GET on SQLite and on PostgreSQL.
# docs/benchmarks.md explains it and holds the figures of a real run.
#
# The three servers run at once on loopback, idle but for the one under
# load. In each of BENCH_ROUNDS rounds every request is driven in turn at
# saturation (closed loop, BENCH_CONNS connections, BENCH_SAT_DURATION after
# BENCH_WARMUP), so each ratio to the ceiling compares runs made seconds
# apart; then each request once at half its median saturation rate (open
# loop, BENCH_HALF_DURATION). It prints a markdown table and checks the
# issue's targets.
#
# The load generator and the servers are not pinned: they share all the
# machine's cores, the same way for every server.
#
# It then runs the SIP benchmark (bench/sip.sh), the benchmark of bridged
# calls (bench/bridge.sh), the benchmark of streamed calls (bench/stream.sh),
# the benchmark of unauthenticated SIP traffic (bench/flood.sh) and the
# benchmark of several nodes behind Kamailio's dispatcher (bench/fleet.sh),
# with their results in $BENCH_OUT/sip, $BENCH_OUT/bridge, $BENCH_OUT/stream,
# $BENCH_OUT/flood and $BENCH_OUT/fleet; their headers list their own
# settings.
#
# Every server it starts takes free ports of its own (API and SIP on port
# 0, an RTP range apart), so the SQLite and PostgreSQL servers run side by
# side, and beside whatever else runs on the machine.
#
# BENCH_SHORT=1 runs the API, SIP, bridge, streaming and fleet benchmarks
# for a few seconds at a tiny load, to show that they run end to end
# (bench/short_test.go does, in make test); its figures mean nothing. They
# then run at once, each on its own ports, with the SIP, bridge, streaming
# and fleet benchmarks' output in $BENCH_OUT/sip.log, $BENCH_OUT/bridge.log,
# $BENCH_OUT/stream.log and $BENCH_OUT/fleet.log. The settings below still
# apply.
#
#   BENCH_ROUNDS        saturation rounds (default 5)
#   BENCH_SAT_DURATION  measured time of a saturation run (default 3s)
#   BENCH_WARMUP        unmeasured load before it (default 1s)
#   BENCH_HALF_DURATION measured time of a half-load run (default 5s)
#   BENCH_CONNS         connections at saturation (default 32)
#   BENCH_RATE_CONNS    most requests in flight at half load (default 128)
#   BENCH_SEED          transfers created for the GET runs to read (default 2000)
#   BENCH_PG            0 to leave PostgreSQL out (default 1)
#   BENCH_PG_DSN        a running PostgreSQL to use (its user may create
#                       databases), instead of starting the benchmark's own;
#                       the benchmark makes a database in it and drops it
#   BENCH_STRICT        1 to exit 1 when a target fails (default 0)
#   BENCH_OUT           directory for the results (default a new /tmp/switchback-bench.*)
#   SWITCHBACK_PG_DIR, SWITCHBACK_PG_PORT
#                       the PostgreSQL cluster, made and started by
#                       scripts/pg-test-cluster.sh; by default one of the
#                       benchmark's own (/tmp/switchback-bench-pg, port
#                       55439), stopped at the end, so the tests' cluster
#                       neither slows nor is slowed by it
set -euo pipefail
cd "$(dirname "$0")/.."

short=${BENCH_SHORT:-0}
export BENCH_SHORT=$short
if [[ $short == 1 ]]; then
	# Short and light: make test runs it beside the other packages' tests,
	# and a saturation run takes all the CPU it can.
	rounds=${BENCH_ROUNDS:-1}
	sat_duration=${BENCH_SAT_DURATION:-500ms}
	warmup=${BENCH_WARMUP:-100ms}
	half_duration=${BENCH_HALF_DURATION:-500ms}
	conns=${BENCH_CONNS:-2}
	rate_conns=${BENCH_RATE_CONNS:-8}
	seed=${BENCH_SEED:-20}
else
	rounds=${BENCH_ROUNDS:-5}
	sat_duration=${BENCH_SAT_DURATION:-3s}
	warmup=${BENCH_WARMUP:-1s}
	half_duration=${BENCH_HALF_DURATION:-5s}
	conns=${BENCH_CONNS:-32}
	rate_conns=${BENCH_RATE_CONNS:-128}
	seed=${BENCH_SEED:-2000}
fi
with_pg=${BENCH_PG:-1}
out=${BENCH_OUT:-$(mktemp -d /tmp/switchback-bench.XXXXXX)}
export SWITCHBACK_PG_DIR=${SWITCHBACK_PG_DIR:-/tmp/switchback-bench-pg}
export SWITCHBACK_PG_PORT=${SWITCHBACK_PG_PORT:-55439}

mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
work=$(mktemp -d /tmp/switchback-bench-work.XXXXXX)

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

server_pids=()
declare -A bench_jobs # the SIP, bridge and streaming benchmarks running beside, in the short mode
pg_dsn_admin=""
pg_db=""
pg_started=""

cleanup() {
	local p
	for p in "${bench_jobs[@]}" "${server_pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${bench_jobs[@]}" "${server_pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [[ -n $pg_db ]]; then
		psql "$pg_dsn_admin" -qtAX -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	if [[ -n $pg_started ]]; then
		bash scripts/pg-test-cluster.sh stop >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# start_server NAME CMD... runs CMD in the background, waits for the line
# "... on http://ADDR" on its stdout, and sets url[NAME] and pids[NAME].
declare -A url pids key
start_server() {
	local name=$1 u="" p
	shift
	"$@" >"$work/$name.out" 2>"$work/$name.err" &
	p=$!
	server_pids+=("$p")
	for _ in $(seq 600); do
		u=$(grep -oE 'on http://[0-9.:]+' "$work/$name.out" 2>/dev/null | head -n1 | sed 's/^on //') || true
		[[ -n $u ]] && break
		kill -0 "$p" 2>/dev/null || { cat "$work/$name.err" >&2; die "$name exited before listening"; }
		sleep 0.1
	done
	[[ -n $u ]] || die "$name did not start listening: $(cat "$work/$name.err")"
	url[$name]=$u
	pids[$name]=$p
}

# make_key NAME CONFIG puts a new demo-tenant key in key[NAME], as loadgen flags.
make_key() {
	local k id secret
	k=$("$work/switchback" keys create --config "$2" --tenant demo)
	id=$(sed -nE 's/.*asapp-api-id: (\S+).*/\1/p' <<<"$k" | head -n1)
	secret=$(sed -nE 's/.*asapp-api-secret: (\S+).*/\1/p' <<<"$k" | head -n1)
	[[ -n $id && -n $secret ]] || die "keys create printed no key: $k"
	key[$1]="-api-id $id -api-secret $secret"
}

# write_config FILE DRIVER DSN RTP_MIN: the demo tenant with a rate limit
# far above anything reachable here, transfers that outlive the run, and
# warn logs. The API and SIP take free ports, and RTP 1000 ports from
# RTP_MIN, so that two servers (and anything else) can run side by side.
write_config() {
	cat >"$1" <<EOF
api:
  listen: 127.0.0.1:0
sip:
  listen: 127.0.0.1:0
  rtpPorts: {min: $4, max: $(($4 + 999))}
store:
  driver: $2
  dsn: "$3"
tenants:
  - id: demo
    name: Benchmark tenant
    sipTTL: 1h
    phoneNumberTTL: 1h
    rateLimit:
      requestsPerSecond: 1000000000
      burst: 1000000000
log:
  level: warn
EOF
}

# load SERVER TARGET MODE [loadgen flags...] runs loadgen once and keeps its line.
load() {
	local server=$1 target=$2 mode=$3 line
	shift 3
	# shellcheck disable=SC2086 # key[] holds flags
	line=$("$work/loadgen" -url "${url[$server]}" -server "$server" -target "$target" -mode "$mode" \
		-server-pids "${pids[$server]}" -ids-file "$work/$server.ids" -seed "$seed" ${key[$server]:-} "$@")
	echo "$line" >>"$results"
	log "$server $target $mode: $(sed -E 's/.*"rps":([0-9.]+).*"p50_ms":([0-9.]+).*"p99_ms":([0-9.]+).*/\1 req\/s, p50 \2 ms, p99 \3 ms/' <<<"$line")"
}

start=$(date +%s)
if [[ $short == 1 ]]; then
	for b in sip bridge stream fleet; do
		BENCH_OUT=$out/$b bash "bench/$b.sh" >"$out/$b.log" 2>&1 &
		bench_jobs[$b]=$!
	done
fi
log "building (switchback without -race)"
go build -o "$work/switchback" ./cmd/switchback
go build -o "$work/ceiling" ./bench/ceiling
go build -o "$work/loadgen" ./bench/loadgen

servers=(ceiling sqlite)
start_server ceiling "$work/ceiling" -listen 127.0.0.1:0

mkdir -p "$work/sqlite"
write_config "$work/sqlite.yaml" sqlite "$work/sqlite/switchback.db" 10000
make_key sqlite "$work/sqlite.yaml"
start_server sqlite "$work/switchback" serve --config "$work/sqlite.yaml"

if [[ $with_pg == 1 ]]; then
	if [[ -n ${BENCH_PG_DSN:-} ]]; then
		log "using the PostgreSQL of BENCH_PG_DSN"
		pg_dsn_admin=$BENCH_PG_DSN
	else
		log "starting PostgreSQL (scripts/pg-test-cluster.sh, $SWITCHBACK_PG_DIR, port $SWITCHBACK_PG_PORT)"
		pg_started=1
		pg_dsn_admin=$(bash scripts/pg-test-cluster.sh)
	fi
	pg_db=switchback_bench_$(date +%s)_$$
	psql "$pg_dsn_admin" -qtAX -c "CREATE DATABASE $pg_db" >/dev/null
	# The same DSN, naming the new database.
	pg_dsn=$(sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\1/$pg_db#" <<<"$pg_dsn_admin")
	write_config "$work/postgres.yaml" postgres "$pg_dsn" 11000
	make_key postgres "$work/postgres.yaml"
	start_server postgres "$work/switchback" serve --config "$work/postgres.yaml"
	# PostgreSQL's CPU counts as the server's: its postmaster and backends.
	pg_data=$(psql "$pg_dsn_admin" -qtAX -c 'SHOW data_directory')
	pg_pid=$(head -n1 "$pg_data/postmaster.pid" 2>/dev/null) || pg_pid=""
	if [[ -n $pg_pid ]]; then
		pids[postgres]="${pids[postgres]},$pg_pid"
	else
		log "PostgreSQL's postmaster.pid is not readable here: its CPU is left out of the server's"
	fi
	servers+=(postgres)
fi

{
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
	echo "- CPU: $(nproc) cores, $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1); memory $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- $(uname -sr); $(go version | cut -d' ' -f3-)"
	echo "- SQLite: WAL, synchronous FULL, on $(df -T "$work" | awk 'NR == 2 { print $2 }')"
	if [[ $with_pg == 1 ]]; then
		echo "- PostgreSQL $(psql "$pg_dsn_admin" -qtAX -c 'SHOW server_version' | cut -d' ' -f1): fsync $(psql "$pg_dsn_admin" -qtAX -c 'SHOW fsync'), synchronous_commit $(psql "$pg_dsn_admin" -qtAX -c 'SHOW synchronous_commit'), on the same machine"
	fi
	echo "- $rounds rounds of saturation runs ($sat_duration after $warmup warm-up, $conns connections); half load: $half_duration open loop, up to $rate_conns in flight"
	echo "- load generator, servers and PostgreSQL share the $(nproc) cores, unpinned"
} >"$out/machine.md"

# Seed the transfers the GET runs read, outside any measurement.
for s in "${servers[@]:1}"; do
	# shellcheck disable=SC2086 # key[] holds flags
	"$work/loadgen" -url "${url[$s]}" -target get -mode seed \
		-ids-file "$work/$s.ids" -seed "$seed" ${key[$s]}
done

requests=("ceiling ceiling" "sqlite create" "sqlite get")
[[ $with_pg == 1 ]] && requests+=("postgres create" "postgres get")
for round in $(seq "$rounds"); do
	log "round $round of $rounds"
	for r in "${requests[@]}"; do
		# shellcheck disable=SC2086 # "server target"
		load $r sat -round "$round" -conns "$conns" -duration "$sat_duration" -warmup "$warmup"
	done
done
for r in "${requests[@]}"; do
	read -r server target <<<"$r"
	rate=$("$work/loadgen" rate-of -server "$server" -target "$target" -frac 0.5 "$results")
	load "$server" "$target" rate -rate "$rate" -conns "$rate_conns" -duration "$half_duration"
done

strict=()
[[ ${BENCH_STRICT:-0} == 1 ]] && strict=(-strict)
status=0
{
	cat "$out/machine.md"
	echo
	"$work/loadgen" report "${strict[@]}" "$results"
} >"$out/report.md" || status=$?
cat "$out/report.md"
log "took $(($(date +%s) - start))s; results in $out (results.jsonl, report.md, machine.md)"
if [[ $short == 1 ]]; then
	for b in sip bridge stream fleet; do
		s=0
		wait "${bench_jobs[$b]}" || s=$?
		unset "bench_jobs[$b]"
		cat "$out/$b.log" >&2
		if ((s != 0)); then
			log "bench/$b.sh failed (exit status $s)"
			status=$s
		fi
	done
	log "the short mode took $(($(date +%s) - start))s"
else
	BENCH_OUT=$out/sip bash bench/sip.sh || status=$?
	BENCH_OUT=$out/bridge bash bench/bridge.sh || status=$?
	BENCH_OUT=$out/stream bash bench/stream.sh || status=$?
	BENCH_OUT=$out/flood bash bench/flood.sh || status=$?
	BENCH_OUT=$out/fleet bash bench/fleet.sh || status=$?
fi
exit "$status"
