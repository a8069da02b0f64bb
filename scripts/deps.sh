#!/usr/bin/env bash
# Installs the Debian packages the tests drive as real, independent peers,
# when they are missing: SIPp (sip-tester), the baresip softphone, the
# Kamailio SIP proxy, and rtpengine (for the benchmark of bridged calls,
# which bench/short_test.go runs in its short mode). Safe to run again: it
# installs only what is missing and says nothing when nothing is.
set -euo pipefail
# kamailio is installed in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v baresip >/dev/null || need+=(baresip)
command -v kamailio >/dev/null || need+=(kamailio)
command -v rtpengine >/dev/null || need+=(rtpengine-daemon)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps.sh: missing ${need[*]}; run as root or install them with apt-get" >&2
		exit 1
	fi
	echo "deps.sh: installing ${need[*]}" >&2
	apt-get update -qq >&2
	# Without recommends, baresip is its core (the modules the tests load)
	# rather than the GTK, X11, FFmpeg and GStreamer front-ends.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
