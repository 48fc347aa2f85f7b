#!/usr/bin/env bash
# Installs the Debian packages that the tests of netfilter_exporter call,
# when they are missing. Needs root (apt-get).
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
)
missing=()
for cmd in "${!want[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
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
