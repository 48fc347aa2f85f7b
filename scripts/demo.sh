#!/usr/bin/env bash
# make demo: netfilter_exporter on a throwaway namespace, in one command (root).
#
# It makes two network namespaces joined by a veth pair (192.0.2.1 <-> 192.0.2.2),
# nfacct objects and matching iptables rules in the second, a web and a DNS-like
# server there and a little real traffic from the first; runs the exporter on it
# with conntrack accounting on and a Graphite feed to a printer on loopback; and
# prints a few live /metrics lines and the Graphite lines it pushes. Everything is
# removed on exit or Ctrl-C. DEMO_DURATION=N stops after N seconds.
set -euo pipefail

BIN=${BIN:-./netfilter_exporter}
DURATION=${DEMO_DURATION:-0}
PORT=${DEMO_PORT:-19862}
GPORT=${DEMO_GRAPHITE_PORT:-12003}
A=nfe-demo-a-$$
B=nfe-demo-b-$$
pids=()
exporter=

cleanup() {
	trap - EXIT INT TERM
	# The exporter first, while the Graphite printer still takes its last
	# push (the printer ignores a terminal's Ctrl-C for that reason).
	if [ -n "$exporter" ]; then
		kill "$exporter" 2>/dev/null || true
		wait "$exporter" 2>/dev/null || true
	fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# Whatever still runs inside the namespaces goes too.
	for ns in "$A" "$B"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
	done
	wait 2>/dev/null || true
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
	echo "demo: cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it makes network namespaces)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "demo: $BIN not built; run make demo" >&2; exit 1; }

echo "demo: namespaces $A (client) and $B (server, watched)"
ip netns add "$A"
ip netns add "$B"
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip -n "$A" link add va type veth peer name vb netns "$B"
ip -n "$A" addr add 192.0.2.1/24 dev va
ip -n "$B" addr add 192.0.2.2/24 dev vb
ip -n "$A" link set va up
ip -n "$B" link set vb up

inb() { ip netns exec "$B" "$@"; }
# nfacct objects and the rules that feed them.
inb nfacct add demo.http
inb nfacct add demo.dns
inb iptables -A INPUT -p tcp --dport 80 -m nfacct --nfacct-name demo.http
inb iptables -A INPUT -p udp --dport 53 -m nfacct --nfacct-name demo.dns
# A conntrack rule makes conntrack run in the namespace; short timeouts make
# flows end, and their DESTROY events arrive, within seconds.
inb iptables -A INPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT
inb sysctl -q -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 net.netfilter.nf_conntrack_udp_timeout=2

# Servers in B, a Graphite printer on loopback.
inb python3 -m http.server 80 --bind 192.0.2.2 >/dev/null 2>&1 &
pids+=($!)
inb python3 -c '
import signal, socket
signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it quietly
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.2", 53))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)' &
pids+=($!)
python3 -u -c '
import signal, socket, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the cleanup ends it, after the exporter
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1)
while True:
    c, _ = l.accept()
    for line in c.makefile():
        if ".nfacct.demo." in line or ".conntrack.ipv4." in line:
            print("graphite> " + line, end="")' "$GPORT" &
pids+=($!)
# The exporter's first push must find the printer listening.
for _ in $(seq 1 200); do
	(exec 3<>"/dev/tcp/127.0.0.1/$GPORT") 2>/dev/null && break
	sleep 0.1
done

"$BIN" --netns="/var/run/netns/$B" --conntrack.enable-accounting \
	--web.listen-address="127.0.0.1:$PORT" \
	--graphite.address="127.0.0.1:$GPORT" --graphite.interval=5s --log.level=warn &
exporter=$!
echo "demo: exporter on http://127.0.0.1:$PORT/metrics, Graphite lines below; Ctrl-C to stop"

traffic() {
	ip netns exec "$A" bash -c '
		exec 3<>/dev/tcp/192.0.2.2/80 && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3 >/dev/null
		exec 4<>/dev/udp/192.0.2.2/53 && printf "query" >&4 && exec 4>&-' 2>/dev/null || true
}

show() {
	python3 - "$PORT" <<'PY'
import signal, sys, urllib.request
signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it quietly
body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("netfilter_nfacct_packets_total", "netfilter_nfacct_bytes_total",
                        "netfilter_conntrack_flows_total", "netfilter_conntrack_flow_bytes_total",
                        "netfilter_conntrack_destroy_events_total", "netfilter_conntrack_events_lost_total")):
        print("metrics> " + line)
PY
}

start=$SECONDS
while [ "$DURATION" -eq 0 ] || [ $((SECONDS - start)) -lt "$DURATION" ]; do
	traffic
	# The kernel removes an ended flow, and sends its DESTROY event, when its
	# garbage collector gets to it: on an idle namespace that can take up to
	# a minute. Listing the table makes it reap ended flows at once.
	inb conntrack -L >/dev/null 2>&1 || true
	sleep 1
	if [ $(((SECONDS - start) % 5)) -eq 0 ]; then
		show || true
	fi
done
