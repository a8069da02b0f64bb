#!/usr/bin/env bash
# Installs the Debian packages the tests drive as real, independent peers,
# when they are missing: SIPp (sip-tester). Safe to run again.
set -euo pipefail
need=()
command -v sipp >/dev/null || need+=(sip-tester)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: missing ${need[*]}; run as root or install them with apt-get" >&2
		exit 1
	fi
	echo "deps.sh: installing ${need[*]}" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
