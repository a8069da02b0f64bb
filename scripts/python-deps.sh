#!/usr/bin/env bash
# Installs the Python packages of scripts/requirements-test.txt into a
# virtualenv, .venv/ at the repository root, for the tests that run Python
# tools. Safe to run again, and at once from several places: when .venv
# already holds exactly that list it returns at once and says nothing.
# Progress and errors go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
reqs=scripts/requirements-test.txt
# Files $reqs includes (-r): a change to them reinstalls too.
included=examples/pipecat/requirements.txt

log() { echo "python-deps.sh: $*" >&2; }

# The stamp names the requirements and the interpreter the virtualenv was
# made with: a change to either reinstalls.
stamp_of() {
	{ sha256sum "$reqs" $included; "$1" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
	[ -x "$venv/bin/python" ] && [ -f "$venv/.requirements" ] &&
		[ "$(cat "$venv/.requirements")" = "$(stamp_of "$venv/bin/python" 2>/dev/null)" ]
}

if up_to_date; then
	exit 0
fi

mkdir -p "$venv"
exec 9>"$venv/.lock"
flock 9
if up_to_date; then # another run installed it while this one waited
	exit 0
fi

python=$(command -v python3 || true)
if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
	if [ "$(id -u)" != 0 ]; then
		log "missing python3 with venv; run as root or install python3 and python3-venv with apt-get"
		exit 1
	fi
	log "installing python3 and python3-venv"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >&2
	python=$(command -v python3)
fi

log "installing $reqs into $venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null ||
	[ "$("$venv/bin/python" -c 'import sys; print(sys.version)')" != "$("$python" -c 'import sys; print(sys.version)')" ]; then
	# Made anew, keeping the lock file that this run holds.
	find "$venv" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
	"$python" -m venv "$venv" >&2
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$reqs" >&2
stamp_of "$venv/bin/python" >"$venv/.requirements"
