package ctload

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
)

// Create adds n UDP entries to the conntrack table of the namespace whose
// descriptor is netns (0: the caller's), many requests per system call.
// They run from 198.18.0.0/16 to 198.19.0.1, ports 53, 80, 123, 443 and
// 8080, with a 600 s timeout; no packet is sent.
func Create(netns, n int) error {
	return CreateTimeout(netns, n, 600)
}

// CreateTimeout is Create with entries that time out after timeout seconds,
// for measurements that must outlast the default 600.
func CreateTimeout(netns, n int, timeout uint32) error {
	return create(netns, n, timeout, nil)
}

// DeniedNet and AcceptedNet are the sources of CreateMixed's entries: the
// share it is given from DeniedNet, the rest from AcceptedNet. Both are in
// the benchmark range 198.18.0.0/15.
var (
	DeniedNet   = netip.MustParsePrefix("198.18.0.0/16")
	AcceptedNet = netip.MustParsePrefix("198.19.128.0/17")
)

// CreateMixed is Create with a share denied (0 to 1) of the n entries
// from DeniedNet, spread evenly through the burst, and the others from
// AcceptedNet, for measurements of filters that deny DeniedNet. It returns
// how many entries it put in AcceptedNet.
func CreateMixed(netns, n int, denied float64) (accepted int, err error) {
	if denied < 0 || denied > 1 {
		return 0, fmt.Errorf("denied share %v: want 0 to 1", denied)
	}
	// Entry i is accepted when the running count of accepted entries,
	// (i+1)*(1-denied) rounded down, goes up at i; in parts per million,
	// so that a tenth of a million is 100,000 exactly.
	ppm := int(math.Round((1 - denied) * 1e6))
	isAccepted := func(i int) bool {
		return (i+1)*ppm/1e6 > i*ppm/1e6
	}
	for i := range n {
		if isAccepted(i) {
			accepted++
		}
	}
	return accepted, create(netns, n, 600, isAccepted)
}

// create adds n entries that time out after timeout seconds; with
// accepted, the entries it reports are from AcceptedNet.
func create(netns, n int, timeout uint32, accepted func(i int) bool) error {
	c, err := netlink.Dial(syscall.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetWriteBuffer(8 << 20); err != nil {
		return err
	}
	dst := netip.MustParseAddr("198.19.0.1")
	const batch = 256
	msgs := make([]netlink.Message, 0, batch)
	ports := []uint16{53, 80, 123, 443, 8080}
	// Each source address has 16,384 source ports: j counts the entries
	// of one network, so that no two entries share a tuple.
	var nth [2]int
	for i := 0; i < n; i++ {
		net, base := 0, uint32(0xc6120000) // 198.18.x.y
		if accepted != nil && accepted(i) {
			net, base = 1, 0xc6138000 // 198.19.128.0 and up
		}
		j := nth[net]
		nth[net]++
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], base|uint32(j>>14))
		src := netip.AddrFrom4(a)
		f := conntrack.NewFlow(17, 0, src, dst, uint16(1024+j%16384), ports[i%len(ports)], timeout, 0)
		attrs, err := marshalFlow(f)
		if err != nil {
			return err
		}
		m, err := netfilter.MarshalNetlink(netfilter.Header{
			SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: 0, Family: netfilter.ProtoIPv4,
			Flags: netlink.Request | netlink.Create | netlink.Excl,
		}, attrs)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
		if len(msgs) == batch || i == n-1 {
			if _, err := c.SendMessages(msgs); err != nil {
				return err
			}
			msgs = msgs[:0]
		}
	}
	// A final acknowledged request makes sure every create was processed.
	_, err = c.Execute(netlink.Message{Header: netlink.Header{
		Type:  netlink.HeaderType(uint16(netfilter.NFSubsysCTNetlink)<<8 | 5),
		Flags: netlink.Request | netlink.Dump | netlink.Acknowledge,
	}, Data: []byte{0, 0, 0, 0}})
	return err
}

// marshalFlow encodes a flow as the attributes of a NEW request.
func marshalFlow(f conntrack.Flow) ([]netfilter.Attribute, error) {
	tuple := func(typ uint16, src, dst netip.Addr, sport, dport uint16) netfilter.Attribute {
		p := func(t uint16, v uint16) netfilter.Attribute {
			a := netfilter.Attribute{Type: t}
			a.PutUint16(v)
			return a
		}
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: src.AsSlice()}, {Type: 2, Data: dst.AsSlice()}}},
			{Type: 2, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: []byte{17}}, p(2, sport), p(3, dport)}},
		}}
	}
	timeout := netfilter.Attribute{Type: 7}
	timeout.PutUint32(f.Timeout)
	return []netfilter.Attribute{
		tuple(1, f.TupleOrig.IP.SourceAddress, f.TupleOrig.IP.DestinationAddress, f.TupleOrig.Proto.SourcePort, f.TupleOrig.Proto.DestinationPort),
		tuple(2, f.TupleReply.IP.SourceAddress, f.TupleReply.IP.DestinationAddress, f.TupleReply.Proto.SourcePort, f.TupleReply.Proto.DestinationPort),
		timeout,
	}, nil
}

// Flush destroys every entry of the namespace's conntrack table, which
// makes the kernel send one DESTROY event per entry.
func Flush(netns int) error {
	c, err := conntrack.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Flush()
}

// ListenerSocket finds, in the text of a namespace's /proc/net/netlink, the
// netfilter socket that joined the conntrack DESTROY group, and returns the
// bytes queued on it and the kernel's count of messages it dropped. It
// reads the kernel's view, without asking the listener anything.
func ListenerSocket(procNetNetlink string) (rmem, drops int64, ok bool) {
	// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
	for _, line := range strings.Split(procNetNetlink, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 9 && f[1] == "12" && f[3] == "00000004" {
			r, err1 := strconv.ParseInt(f[4], 10, 64)
			d, err2 := strconv.ParseInt(f[8], 10, 64)
			return r, d, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

// RaiseLimits raises the host's nf_conntrack_max and nf_conntrack_buckets
// (which only the initial namespace may change) to hold n entries and a
// quarter more, and returns a function that puts them back.
func RaiseLimits(n int) (func(), error) {
	files := []string{"/proc/sys/net/netfilter/nf_conntrack_max", "/proc/sys/net/netfilter/nf_conntrack_buckets"}
	var old []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		old = append(old, strings.TrimSpace(string(b)))
	}
	restore := func() {
		for i, f := range files {
			_ = os.WriteFile(f, []byte(old[i]), 0o644)
		}
	}
	want := strconv.Itoa(n + n/4)
	for i, f := range files {
		if cur, _ := strconv.Atoi(old[i]); cur >= n+n/4 {
			continue
		}
		if err := os.WriteFile(f, []byte(want), 0o644); err != nil {
			restore()
			return nil, fmt.Errorf("raising %s to %s: %w", f, want, err)
		}
	}
	return restore, nil
}
