package nflog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
)

// tally counts what a Listener received, by group and prefix.
type tally struct {
	mu   sync.Mutex
	got  map[string]*netnstest.NflogRule
	keys map[string]map[string]int // group/prefix -> "family proto src dport hook in"
}

func newTally() *tally {
	return &tally{got: map[string]*netnstest.NflogRule{}, keys: map[string]map[string]int{}}
}

func ruleKey(group uint16, prefix string) string { return fmt.Sprintf("%d/%q", group, prefix) }

func (t *tally) add(ps []Packet) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range ps {
		p := &ps[i]
		k := ruleKey(p.Group, string(p.Prefix))
		r := t.got[k]
		if r == nil {
			r = &netnstest.NflogRule{Group: p.Group, Prefix: string(p.Prefix)}
			t.got[k] = r
			t.keys[k] = map[string]int{}
		}
		r.Packets++
		r.Bytes += uint64(p.Length)
		t.keys[k][fmt.Sprintf("%d %d %s %d %d %d", p.Family, p.Proto, p.Src, p.DPort, p.Hook, p.InDev)]++
	}
}

// matches reports whether the tally equals what the rules counted.
func (t *tally) matches(rules []netnstest.NflogRule) (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var diff []string
	for _, r := range rules {
		g := t.got[ruleKey(r.Group, r.Prefix)]
		if g == nil {
			g = &netnstest.NflogRule{Group: r.Group, Prefix: r.Prefix}
		}
		if *g != r {
			diff = append(diff, fmt.Sprintf("got %v, the rule counted %v", g, r))
		}
	}
	if len(t.got) != len(rules) {
		diff = append(diff, fmt.Sprintf("%d group/prefix pairs received, want %d", len(t.got), len(rules)))
	}
	return len(diff) == 0, strings.Join(diff, "\n")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t *testing.T, l *Listener, fn func([]Packet)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, fn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		l.Close()
	})
}

func TestKernelCountsEqualRuleCounters(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "ip6tables")
	f := netnstest.NewNflogFixture(t)
	l, err := Listen(&Config{NetNS: f.B.FD(), Groups: []uint16{5, 6, 7}, ReadBuffer: 4 << 20, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tl := newTally()
	run(t, l, tl.add)
	f.Send(t, 20)
	waitFor(t, 30*time.Second, func() (bool, string) { return tl.matches(f.Rules(t)) })

	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var received uint64
	for _, g := range st.Groups {
		if g.Lost != 0 {
			t.Errorf("group %d lost %d packets", g.Group, g.Lost)
		}
		received += g.Received
	}
	if received != 20*7 || st.DecodeErrors != 0 {
		t.Errorf("stats %+v: want 140 received, no decode error", st)
	}
	// The keys: family, protocol, source, destination port, hook (input)
	// and the input interface of every packet.
	ifc, err := interfaceIndex(f.B, f.IfB)
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	want := map[string]map[string]int{
		ruleKey(5, "ssh-attempt "):            {fmt.Sprintf("2 6 %s 22 1 %d", v4, ifc): 20, fmt.Sprintf("10 6 %s 22 1 %d", v6, ifc): 20},
		ruleKey(5, "udp6 in "):                {fmt.Sprintf("10 17 %s 9000 1 %d", v6, ifc): 20},
		ruleKey(6, ""):                        {fmt.Sprintf("2 17 %s 9001 1 %d", v4, ifc): 20, fmt.Sprintf("10 17 %s 9001 1 %d", v6, ifc): 20},
		ruleKey(7, netnstest.NflogIPv4Prefix): {fmt.Sprintf("2 17 %s 9002 1 %d", v4, ifc): 20},
		ruleKey(7, netnstest.NflogIPv6Prefix): {fmt.Sprintf("10 17 %s 9002 1 %d", v6, ifc): 20},
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for k, w := range want {
		if fmt.Sprint(tl.keys[k]) != fmt.Sprint(w) {
			t.Errorf("%s: keys %v, want %v", k, tl.keys[k], w)
		}
	}
}

// interfaceIndex returns the index of interface name in ns.
func interfaceIndex(ns *netnstest.NS, name string) (int, error) {
	var idx int
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(name)
		if err == nil {
			idx = ifc.Index
		}
		return err
	})
	return idx, err
}

func TestKernelGroupHeldNamesTheHolder(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t)
	first, err := Listen(&Config{NetNS: ns.FD(), Groups: []uint16{9}})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	_, err = Listen(&Config{NetNS: ns.FD(), Groups: []uint16{8, 9}})
	t.Log(err)
	if !errors.Is(err, errGroupHeld) {
		t.Fatalf("second bind: error = %v, want %v", err, errGroupHeld)
	}
	for _, want := range []string{"group 9", "netlink port ", fmt.Sprintf("process %d ", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// Group 8, bound before 9 failed, was released with the socket.
	again, err := Listen(&Config{NetNS: ns.FD(), Groups: []uint16{8}})
	if err != nil {
		t.Fatalf("group 8 after the failed Listen: %v", err)
	}
	again.Close()
	// Another namespace's group 9 is its own.
	other, err := Listen(&Config{NetNS: netnstest.New(t).FD(), Groups: []uint16{9}})
	if err != nil {
		t.Fatalf("group 9 in another namespace: %v", err)
	}
	other.Close()
}

// TestKernelLossIsExact pauses the reader: the listener is bound with a
// small buffer and does not receive while a burst is logged, so that the
// kernel drops most of it. Received plus lost must equal the rule's own
// counter, once a last packet has revealed the gap at the end.
func TestKernelLossIsExact(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "ip6tables")
	f := netnstest.NewNflogFixture(t)
	l, err := Listen(&Config{NetNS: f.B.FD(), Groups: []uint16{6}, ReadBuffer: 64 << 10, MaxReadBuffer: 4 << 20, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const burst = 20000
	c := f.A.Dial(t, "udp4", "192.0.2.2:9001")
	payload := make([]byte, 32)
	for i := range burst {
		if _, err := c.Write(payload); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	// The reader starts only now.
	tl := newTally()
	run(t, l, tl.add)
	stats := func() GroupStats {
		st, err := l.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.Groups[0]
	}
	plain := func() netnstest.NflogRule {
		for _, r := range f.Rules(t) {
			if r.Group == 6 {
				return r
			}
		}
		t.Fatal("no rule of group 6")
		return netnstest.NflogRule{}
	}
	// Until a message arrives after the drops, the loss at the end of the
	// burst is invisible: send one packet at a time until the numbers add
	// up.
	waitFor(t, 60*time.Second, func() (bool, string) {
		g, r := stats(), plain()
		if g.Received+g.Lost == r.Packets {
			return true, ""
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		return false, fmt.Sprintf("received %d + lost %d != %d logged", g.Received, g.Lost, r.Packets)
	})
	g, r := stats(), plain()
	t.Logf("logged %d, received %d, lost %d", r.Packets, g.Received, g.Lost)
	if g.Lost == 0 {
		t.Errorf("no loss with a %d-byte buffer and a paused reader: the test proves nothing", 64<<10)
	}
	// The loss made the buffer grow.
	waitFor(t, 10*time.Second, func() (bool, string) {
		st, err := l.Stats()
		return err == nil && st.BufferGrowths > 0 && st.ReadBuffer > 128<<10, fmt.Sprintf("after the loss: %+v, %v", st, err)
	})
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if got := tl.got[ruleKey(6, "")]; got == nil || got.Packets != g.Received {
		t.Errorf("handed to fn %v, counted received %d", got, g.Received)
	}
}

// invalidRuleset counts what conntrack finds invalid, where it is found:
// packets coming in at prerouting, the namespace's own at output.
const invalidRuleset = `
table inet track {
	counter inv_in { }
	counter inv_out { }
	chain pre {
		type filter hook prerouting priority 0;
		ct state invalid counter name "inv_in"
	}
	chain out {
		type filter hook output priority 0;
		ct state invalid counter name "inv_out"
	}
}
`

func TestKernelConntrackInvalidReasons(t *testing.T) {
	netnstest.Require(t, "nft")
	a, b := netnstest.New(t), netnstest.New(t)
	netnstest.Link(t, a, b, "192.0.2.1/24", "192.0.2.2/24")
	netnstest.NftLoad(t, b, invalidRuleset)
	before := map[string]string{}
	for _, s := range []string{SysctlLoggerIPv4, SysctlLoggerIPv6, SysctlLogInvalid} {
		v, err := readSysctl(b.FD(), s)
		if err != nil {
			t.Fatal(err)
		}
		before[s] = v
	}
	l, err := Listen(&Config{NetNS: b.FD(), Groups: []uint16{InvalidGroup}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	changes, err := EnableInvalidLogging(b.FD())
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 {
		t.Errorf("changed %+v, want the two loggers and nf_conntrack_log_invalid", changes)
	}
	var mu sync.Mutex
	reasons := map[string]uint64{}
	run(t, l, func(ps []Packet) {
		mu.Lock()
		defer mu.Unlock()
		for i := range ps {
			r, ok := InvalidReason(nil, ps[i].Prefix)
			dir := "out"
			if ps[i].InDev != 0 {
				dir = "in"
			}
			if !ok {
				r = []byte("not invalid: " + string(ps[i].Prefix))
			}
			reasons[dir+" "+string(r)]++
		}
	})
	netnstest.SendTCPFlags(t, a, "192.0.2.1", "192.0.2.2", 80, 0x03, 7) // SYN+FIN
	waitFor(t, 30*time.Second, func() (bool, string) {
		byName := map[string]uint64{}
		for _, c := range netnstest.NftCounters(t, b) {
			byName[c.Name] = c.Packets
		}
		mu.Lock()
		defer mu.Unlock()
		var in, out uint64
		for k, n := range reasons {
			if strings.HasPrefix(k, "in ") {
				in += n
			} else {
				out += n
			}
		}
		ok := in == byName["inv_in"] && out == byName["inv_out"] && reasons["in invalid tcp flag combination"] == 7
		return ok, fmt.Sprintf("reasons %v, counters %v", reasons, byName)
	})
	t.Logf("reasons %v", reasons)
	if err := RestoreSysctls(b.FD(), changes); err != nil {
		t.Fatal(err)
	}
	for s, v := range before {
		if got, err := readSysctl(b.FD(), s); err != nil || got != v {
			t.Errorf("%s after restore: %q %v, want %q", s, got, err, v)
		}
	}
}

// TestKernelGroupHeldByUlogd2 binds a group ulogd2 holds: the error names
// ulogd, as the README's way out describes.
func TestKernelGroupHeldByUlogd2(t *testing.T) {
	netnstest.Require(t, "ulogd")
	ns := netnstest.New(t)
	dir := t.TempDir()
	plugins := "/usr/lib/x86_64-linux-gnu/ulogd"
	conf := fmt.Sprintf(`[global]
logfile="%[1]s/ulogd.log"
plugin="%[2]s/ulogd_inppkt_NFLOG.so"
plugin="%[2]s/ulogd_raw2packet_BASE.so"
plugin="%[2]s/ulogd_filter_IFINDEX.so"
plugin="%[2]s/ulogd_filter_IP2STR.so"
plugin="%[2]s/ulogd_filter_PRINTPKT.so"
plugin="%[2]s/ulogd_output_LOGEMU.so"
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU

[log1]
group=5

[emu1]
file="%[1]s/packets.log"
`, dir, plugins)
	if err := os.WriteFile(dir+"/ulogd.conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &lockedWriter{w: &strings.Builder{}}
	ns.Start(t, log, "ulogd", "-c", dir+"/ulogd.conf")
	// Binding before ulogd2 does would make ulogd2 fail: wait until the
	// namespace lists the group as bound.
	waitFor(t, 20*time.Second, func() (bool, string) {
		out, _ := ns.Try("cat", "/proc/net/netfilter/nfnetlink_log")
		for line := range strings.SplitSeq(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "5" {
				return true, ""
			}
		}
		return false, "ulogd2 has not bound group 5; its log:\n" + log.String()
	})
	_, err := Listen(&Config{NetNS: ns.FD(), Groups: []uint16{5}})
	if !errors.Is(err, errGroupHeld) {
		t.Fatalf("error %v, want %v", err, errGroupHeld)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "ulogd") || !strings.Contains(err.Error(), "group 5") {
		t.Errorf("error %q does not name ulogd and the group", err)
	}
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// TestKernelRunStopsAndRunsAgain stops Run with its context while it waits
// in the network poller, in bounded time, and runs it again on the same
// Listener: the packets logged in between and after are all received,
// none lost.
func TestKernelRunStopsAndRunsAgain(t *testing.T) {
	netnstest.Require(t, "nft", "iptables", "ip6tables")
	f := netnstest.NewNflogFixture(t)
	l, err := Listen(&Config{NetNS: f.B.FD(), Groups: []uint16{6}, ReadBuffer: 4 << 20, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var got atomic.Int64
	count := func(ps []Packet) { got.Add(int64(len(ps))) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, count) }()
	f.Send(t, 5)
	waitFor(t, 10*time.Second, func() (bool, string) { return got.Load() == 10, fmt.Sprintf("%d of 10 packets", got.Load()) })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context's end")
	}
	f.Send(t, 5) // queued on the socket while nothing runs
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- l.Run(ctx, count) }()
	f.Send(t, 5)
	waitFor(t, 10*time.Second, func() (bool, string) { return got.Load() == 30, fmt.Sprintf("%d of 30 packets", got.Load()) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st, _ := l.Stats(); st.Groups[0].Received != 30 || st.Groups[0].Lost != 0 {
		t.Errorf("stats %+v, want 30 received and none lost", st.Groups)
	}
}
