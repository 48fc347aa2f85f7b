#!/usr/bin/env bash
# Installs the Debian packages that the tests of netfilter_exporter call,
# when they are missing. Needs root (apt-get). With command names as
# arguments (scripts/install-deps.sh ip nfacct), only the packages of those
# commands (make demo installs what the demo runs, not the test suite).
set -euo pipefail

# command -> Debian package
declare -A want=(
	[ip]=iproute2
	[iptables]=iptables
	[nft]=nftables
	[nfacct]=nfacct
	[conntrack]=conntrack
	[promtool]=prometheus
	[carbon-cache]=graphite-carbon
	[carbon-c-relay]=carbon-c-relay
	[whisper-fetch]=python3-whisper
	[setpriv]=util-linux
	[sysctl]=procps
	[python3]=python3
	[ulogd]=ulogd2
	[systemd-analyze]=systemd
	[systemd-socket-activate]=systemd
	[git]=git
	[getcap]=libcap2-bin
	[man]=man-db
	[lintian]=lintian
	[rpm]=rpm
	[chromium]=chromium
)
cmds=("$@")
if [ ${#cmds[@]} -eq 0 ]; then
	cmds=("${!want[@]}")
fi
missing=()
for cmd in "${cmds[@]}"; do
	[ -n "${want[$cmd]:-}" ] || { echo "install-deps: no package known for command $cmd" >&2; exit 1; }
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
# Python modules, for Debian's python3 (the tests run /usr/bin/python3).
# module -> Debian package
declare -A want_py=(
	[prometheus_client.openmetrics.parser]=python3-prometheus-client
)
if [ $# -eq 0 ]; then
	for mod in "${!want_py[@]}"; do
		/usr/bin/python3 -c "import $mod" >/dev/null 2>&1 || missing+=("${want_py[$mod]}")
	done
fi
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${missing[*]}; run as root or install them" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# One package may provide several commands.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
