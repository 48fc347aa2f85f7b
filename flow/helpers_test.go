package flow

import "net/netip"

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// tcp4 returns a non-NATed TCP delta of the given tuple.
func tcp4(src, dst string, sport, dport uint16) delta {
	d := delta{Family: familyIPv4, Proto: ProtoTCP, Src: addr(src), Dst: addr(dst), SPort: sport, DPort: dport}
	d.ReplySrc, d.ReplyDst, d.ReplySPort, d.ReplyDPort = d.Dst, d.Src, d.DPort, d.SPort
	return d
}
