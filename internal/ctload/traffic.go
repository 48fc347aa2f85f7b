package ctload

import (
	"encoding/binary"
	"fmt"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
)

// TrafficDevice is the device CreateTraffic sends its packets out of, in
// the namespace it fills: one end of a veth pair whose other end, in the
// same namespace, stays down, so that the device drops what it transmits
// (the kernel has no dummy device everywhere). No packet leaves the
// namespace and none comes back. It has 198.19.0.254/24; the packets go
// to 198.19.0.1, as Create's entries do.
const TrafficDevice = "nfeload0"

// MaxTrafficSources bounds CreateTraffic's sources: they are numbered up
// from 198.18.0.0, within 198.18.0.0/16.
const MaxTrafficSources = 1 << 16

// CreateTraffic makes n UDP entries in the conntrack table of the
// namespace named name (as `ip netns` names it) by sending one packet for
// each, so that, with nf_conntrack_acct on in the namespace, every entry
// carries counters, as on a firewall: 1 packet of 29 to 92 bytes in the
// original direction, none in reply. Packet i comes from source address i
// mod sources, numbered up from 198.18.0.0, and goes out of TrafficDevice to
// 198.19.0.1 port 53 from a source port unique to its source. The caller
// sets the namespace's UDP timeouts if the entries must outlast 30 s.
// Sending the same again (SendTraffic) adds a packet to every entry.
func CreateTraffic(name string, fd, n, sources int) error {
	if err := checkTraffic(n, sources); err != nil {
		return err
	}
	if err := setupTraffic(name); err != nil {
		return err
	}
	return SendTraffic(fd, n, sources)
}

// checkTraffic checks CreateTraffic's numbers.
func checkTraffic(n, sources int) error {
	if sources < 1 || sources > MaxTrafficSources {
		return fmt.Errorf("%d traffic sources: want 1 to %d", sources, MaxTrafficSources)
	}
	if per := (n + sources - 1) / sources; per > 64000 {
		return fmt.Errorf("%d flows from %d sources: at most 64,000 a source", n, sources)
	}
	return nil
}

// setupTraffic makes TrafficDevice in the namespace named name, and turns
// conntrack on there.
func setupTraffic(name string) error {
	for _, args := range [][]string{
		{"link", "add", TrafficDevice, "type", "veth", "peer", "name", TrafficDevice + "p"},
		{"addr", "add", "198.19.0.254/24", "dev", TrafficDevice},
		{"link", "set", TrafficDevice, "up"},
		// No neighbour resolution: the packets go straight to the device.
		{"neigh", "add", "198.19.0.1", "lladdr", "02:00:00:00:00:01", "dev", TrafficDevice, "nud", "permanent"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	// Conntrack tracks a namespace's packets only once a rule needs it.
	nft := exec.Command("ip", "netns", "exec", name, "nft", "-f", "-")
	nft.Stdin = strings.NewReader("table ip nfeload {\n\tchain out {\n\t\ttype filter hook output priority 0\n\t\tct state new accept\n\t}\n}\n")
	if out, err := nft.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: a rule that turns conntrack on: %v: %s", err, out)
	}
	return nil
}

// SendTraffic sends CreateTraffic's packets again in the namespace whose
// descriptor is fd, which CreateTraffic set up: one more packet for each
// of its entries, in the original direction.
func SendTraffic(fd, n, sources int) error {
	if err := checkTraffic(n, sources); err != nil {
		return err
	}
	return netns.Do(fd, func() error {
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(s)
		to := &unix.SockaddrInet4{Addr: [4]byte{198, 19, 0, 1}}
		var pkt [20 + 8 + 64]byte
		for i := range n {
			size := 20 + 8 + 1 + i%64
			p := pkt[:size]
			// IPv4: the kernel fills in the total length, the checksum
			// and the ID of a raw socket's header.
			p[0], p[1] = 0x45, 0
			p[6], p[7] = 0x40, 0 // don't fragment
			p[8], p[9] = 64, unix.IPPROTO_UDP
			binary.BigEndian.PutUint32(p[12:], 0xc6120000+uint32(i%sources))
			copy(p[16:20], to.Addr[:])
			// UDP, without a checksum.
			binary.BigEndian.PutUint16(p[20:], uint16(1024+i/sources))
			binary.BigEndian.PutUint16(p[22:], 53)
			binary.BigEndian.PutUint16(p[24:], uint16(size-20))
			if err := unix.Sendto(s, p, 0, to); err != nil {
				return fmt.Errorf("sending packet %d: %w", i, err)
			}
		}
		return nil
	})
}
