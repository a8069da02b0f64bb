#!/usr/bin/env bash
# pg-test-cluster.sh starts (or reuses) a throwaway PostgreSQL cluster for
# the tests and prints its DSN, which is all it prints on stdout; progress
# and errors go to stderr. `pg-test-cluster.sh stop` stops it.
#
#   SWITCHBACK_PG_DIR   where the cluster lives (default /tmp/switchback-pg)
#   SWITCHBACK_PG_PORT  its port on 127.0.0.1 (default 55432)
#
# It installs Debian's postgresql package when no initdb/pg_ctl is found.
# PostgreSQL refuses to run as root, so as root the cluster runs as the
# postgres OS user. It is safe to run several times at once: the test
# binaries of several packages each call it.
set -euo pipefail

dir=${SWITCHBACK_PG_DIR:-/tmp/switchback-pg}
port=${SWITCHBACK_PG_PORT:-55432}
data=$dir/data
dsn="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"

log() { echo "pg-test-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

case "${1:-start}" in
start | stop) ;;
*) die "usage: $0 [start|stop]" ;;
esac

# find_bin sets bin to the directory holding initdb and pg_ctl, newest
# PostgreSQL first, or returns 1.
find_bin() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
			bin=$d
			return 0
		fi
	done
	if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		bin=$(dirname "$(command -v pg_ctl)")
		return 0
	fi
	return 1
}

# as_pg runs a command as the user the cluster belongs to.
as_pg() {
	if [[ $(id -u) == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

if [[ ${1:-start} == stop ]]; then
	if [[ -f $data/PG_VERSION ]] && find_bin; then
		as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 &&
			as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2
	fi
	exit 0
fi

mkdir -p "$dir"
# The postgres user may not be allowed into the caller's directory.
cd /

# Serialize concurrent callers, from the install on. The lock is on fd 9,
# which every command that may start the server closes (9>&-): a postmaster
# inheriting it would hold the lock for ever.
exec 9>"$dir/.lock"
flock -w 900 9 || die "timed out waiting for $dir/.lock"

if ! find_bin; then
	[[ $(id -u) == 0 ]] || die "PostgreSQL is not installed and only root can install it (apt-get install postgresql)"
	log "installing PostgreSQL"
	# The package's own cluster may or may not start; ours is separate.
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update && apt-get install -y -o DPkg::Lock::Timeout=300 postgresql; } >&2 9>&- ||
		die "apt-get install postgresql failed"
	find_bin || die "no initdb/pg_ctl after installing postgresql"
fi

if [[ $(id -u) == 0 ]]; then
	id postgres >/dev/null 2>&1 || die "no postgres OS user to run the cluster as"
	chown postgres:postgres "$dir"
	as_pg test -w "$dir" -a -x "$dir" || die "user postgres cannot write $dir (is a parent directory closed to it?)"
fi

ready() {
	"$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres 9>&- &&
		"$bin/psql" -qtAX -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1 9>&-
}

if ready; then
	echo "$dsn"
	exit 0
fi

if [[ ! -f $data/PG_VERSION ]]; then
	# A half-made data directory from an interrupted run is useless.
	rm -rf "$data"
	log "creating a cluster in $data"
	# The C locale sorts text by bytes, as SQLite does.
	as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >&2 9>&- || die "initdb failed"
	# Trust on loopback only: this cluster is for tests on this machine.
	as_pg tee "$data/pg_hba.conf" >/dev/null <<EOF
local all all trust
host  all all 127.0.0.1/32 trust
EOF
	as_pg tee -a "$data/postgresql.conf" >/dev/null <<EOF

# pg-test-cluster.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = on
max_connections = 200
EOF
fi

# Running, but not answering on this port (started with another one)?
if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 9>&-; then
	log "restarting the cluster in $data on port $port"
	as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 9>&- || true
fi

log "starting PostgreSQL on 127.0.0.1:$port"
if ! as_pg "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 120 \
	-o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='$dir' -c fsync=on -c max_connections=200" \
	start >&2 9>&-; then
	tail -n 30 "$dir/postgres.log" >&2 || true
	die "pg_ctl start failed"
fi
ready || die "PostgreSQL started but does not answer on 127.0.0.1:$port"
echo "$dsn"
