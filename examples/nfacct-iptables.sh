#!/bin/sh
# A recipe for nfacct accounting that netfilter_exporter exports.
#
# It creates one nfacct object per address family and service, named
# <family>.<service> so that Graphite shows a family/service hierarchy and
# --nfacct.name-labels=family,service gives Prometheus labels, and rules that
# count the traffic of each service in both directions. Run it as root on the
# firewall (or inside a namespace: ip netns exec fw sh nfacct-iptables.sh).
#
#   iptables  -m nfacct --nfacct-name NAME   adds the packet to object NAME
#   nfacct list                              shows the counters (never use
#                                            "nfacct list reset": it zeroes
#                                            them for every reader)
set -eu

services="http:80 https:443 dns:53"

for family in ipv4 ipv6; do
	case $family in
	ipv4) ipt=iptables ;;
	ipv6) ipt=ip6tables ;;
	esac
	# A chain of our own keeps the rules together and easy to remove.
	$ipt -N NFACCT 2>/dev/null || $ipt -F NFACCT
	for entry in $services; do
		name=${entry%%:*}
		port=${entry#*:}
		nfacct add "$family.$name"
		for proto in tcp udp; do
			[ "$name" = dns ] || [ "$proto" = tcp ] || continue
			$ipt -A NFACCT -p "$proto" --dport "$port" -m nfacct --nfacct-name "$family.$name"
			$ipt -A NFACCT -p "$proto" --sport "$port" -m nfacct --nfacct-name "$family.$name"
		done
	done
	# Everything else, for a total.
	nfacct add "$family.total"
	$ipt -A NFACCT -m nfacct --nfacct-name "$family.total"
	for chain in INPUT OUTPUT FORWARD; do
		$ipt -C "$chain" -j NFACCT 2>/dev/null || $ipt -I "$chain" -j NFACCT
	done
done
