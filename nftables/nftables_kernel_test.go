package nftables_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/nftables"
)

func dial(t testing.TB, ns *netnstest.NS) *nftables.Conn {
	t.Helper()
	c, err := nftables.Dial(&nftables.Config{NetNS: ns.FD(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// asNft turns what the Conn read into nft's view, sorted, to compare.
func asNft(objs nftables.Objects) ([]netnstest.NftCounter, []netnstest.NftQuota) {
	cs := make([]netnstest.NftCounter, 0, len(objs.Counters))
	for _, c := range objs.Counters {
		cs = append(cs, netnstest.NftCounter{Family: c.Family.String(), Table: c.Table, Name: c.Name, Packets: c.Packets, Bytes: c.Bytes})
	}
	qs := make([]netnstest.NftQuota, 0, len(objs.Quotas))
	for _, q := range objs.Quotas {
		qs = append(qs, netnstest.NftQuota{Family: q.Family.String(), Table: q.Table, Name: q.Name, Limit: q.Limit, Used: q.Used, Over: q.Over})
	}
	return sorted(cs), sorted(qs)
}

func sorted[T any](s []T) []T {
	slices.SortFunc(s, func(a, b T) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	return s
}

// stableObjects reads the objects between two readings of nft that agree,
// so that traffic the kernel makes on its own (neighbour discovery, MLD)
// cannot make the comparison flaky. It fails the test if, meanwhile, what
// the Conn read differs from what nft shows.
func stableObjects(t *testing.T, ns *netnstest.NS, c *nftables.Conn) nftables.Objects {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		refC, refQ := sorted(netnstest.NftCounters(t, ns)), sorted(netnstest.NftQuotas(t, ns))
		objs, err := c.Objects(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		afterC, afterQ := sorted(netnstest.NftCounters(t, ns)), sorted(netnstest.NftQuotas(t, ns))
		gotC, gotQ := asNft(objs)
		if cmp.Equal(refC, afterC) && cmp.Equal(refQ, afterQ) {
			if diff := cmp.Diff(refC, gotC); diff != "" {
				t.Fatalf("Objects counters differ from nft -j list counters (-nft +got):\n%s", diff)
			}
			if diff := cmp.Diff(refQ, gotQ); diff != "" {
				t.Fatalf("Objects quotas differ from nft -j list quotas (-nft +got):\n%s", diff)
			}
			return objs
		}
		if time.Now().After(deadline) {
			t.Fatal("the counters did not stay still for one reading in 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func find[T any](s []T, match func(T) bool) (T, bool) {
	for _, v := range s {
		if match(v) {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// TestKernelObjectsMatchNft reads named counters and quotas of tables of
// every family that real TCP and UDP traffic fed, and checks them against
// nft's own reading, before and after: reading never resets them.
func TestKernelObjectsMatchNft(t *testing.T) {
	netnstest.Require(t, "nft", "sysctl")
	f := netnstest.NewNftFixture(t)
	netnstest.NftLoad(t, f.B, `table arp static {
	counter fixed { packets 3 bytes 300 }
	quota spent { over 1000 bytes used 1000 bytes }
}`)
	c := dial(t, f.B)
	objs := stableObjects(t, f.B, c)

	counter := func(fam nftables.Family, table, name string) nftables.Counter {
		t.Helper()
		cnt, ok := find(objs.Counters, func(c nftables.Counter) bool {
			return c.Family == fam && c.Table == table && c.Name == name
		})
		if !ok {
			t.Fatalf("no counter %s %s %s in %+v", fam, table, name, objs.Counters)
		}
		return cnt
	}
	for _, want := range []struct {
		fam         nftables.Family
		table, name string
		exact       *netnstest.NftCounter
	}{
		{nftables.FamilyINet, "filter", "dns.v4", &f.UDP4},
		{nftables.FamilyINet, "filter", "dns/v6", &f.UDP6},
		{nftables.FamilyIPv4, "v4", "svc9000", &f.UDP4},
		{nftables.FamilyIPv6, "v6", "svc9000", &f.UDP6},
		{nftables.FamilyINet, "filter", "web", nil},
		{nftables.FamilyBridge, "br", "frames", nil},
		{nftables.FamilyNetdev, "nd", "ingress", nil},
		{nftables.FamilyARP, "a", "requests", nil},
		{nftables.FamilyARP, "static", "fixed", &netnstest.NftCounter{Packets: 3, Bytes: 300}},
	} {
		got := counter(want.fam, want.table, want.name)
		switch {
		case want.exact != nil && (got.Packets != want.exact.Packets || got.Bytes != want.exact.Bytes):
			t.Errorf("counter %s %s %s = %d packets %d bytes, want %d and %d", want.fam, want.table, want.name,
				got.Packets, got.Bytes, want.exact.Packets, want.exact.Bytes)
		case got.Packets == 0 || got.Bytes == 0:
			t.Errorf("counter %s %s %s counted nothing", want.fam, want.table, want.name)
		}
	}
	if len(objs.Counters) != 9 {
		t.Errorf("read %d counters, want 9", len(objs.Counters))
	}

	quotas := make(map[string]nftables.Quota)
	for _, q := range objs.Quotas {
		quotas[q.Family.String()+" "+q.Table+" "+q.Name] = q
	}
	web := counter(nftables.FamilyINet, "filter", "web")
	for key, want := range map[string]nftables.Quota{
		// 768 bytes went through a quota of 500: the kernel caps what it
		// reports at the limit.
		"inet filter small": {Family: nftables.FamilyINet, Table: "filter", Name: "small", Limit: 500, Used: 500, Exhausted: true},
		"inet filter big":   {Family: nftables.FamilyINet, Table: "filter", Name: "big", Limit: 10 << 20, Used: web.Bytes, Over: true},
		"arp static spent":  {Family: nftables.FamilyARP, Table: "static", Name: "spent", Limit: 1000, Used: 1000, Over: true, Exhausted: true},
	} {
		if got := quotas[key]; got != want {
			t.Errorf("quota %s = %+v, want %+v", key, got, want)
		}
	}
	if len(objs.Quotas) != 3 {
		t.Errorf("read %d quotas, want 3", len(objs.Quotas))
	}
	if q := quotas["inet filter small"]; q.Mode() != "until" || quotas["inet filter big"].Mode() != "over" {
		t.Errorf("modes: small %q, big %q; want until and over", q.Mode(), quotas["inet filter big"].Mode())
	}
}

// TestKernelRuleCountersMatchNft reads the anonymous counters of rules and
// checks them and their comments against nft -j list ruleset.
func TestKernelRuleCountersMatchNft(t *testing.T) {
	netnstest.Require(t, "nft", "sysctl")
	f := netnstest.NewNftFixture(t)
	c := dial(t, f.B)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ref := sorted(netnstest.NftRuleCounters(t, f.B))
		rules, err := c.RuleCounters(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		after := sorted(netnstest.NftRuleCounters(t, f.B))
		got := make([]netnstest.NftRuleCounter, 0, len(rules))
		for _, r := range rules {
			got = append(got, netnstest.NftRuleCounter{Family: r.Family.String(), Table: r.Table, Chain: r.Chain,
				Handle: r.Handle, Comment: r.Comment, Packets: r.Packets, Bytes: r.Bytes})
		}
		got = sorted(got)
		if !cmp.Equal(ref, after) {
			if time.Now().After(deadline) {
				t.Fatal("the rule counters did not stay still for one reading in 30s")
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if diff := cmp.Diff(ref, got); diff != "" {
			t.Fatalf("RuleCounters differs from nft -j list ruleset (-nft +got):\n%s", diff)
		}
		// The fixture's rules: two with comments, one without, all
		// counting, and the named counter references left out.
		comments := map[string]uint64{}
		for _, r := range rules {
			comments[r.Comment] = r.Packets
		}
		if len(rules) != 3 || comments["web in"] == 0 || comments["udp in"] != 12 || comments[""] == 0 {
			t.Errorf("rule counters = %+v; want \"web in\" counting, \"udp in\" at 12 packets and one without comment", rules)
		}
		return
	}
}

// TestKernelEmptyNamespace reads a namespace without any table.
func TestKernelEmptyNamespace(t *testing.T) {
	netnstest.Require(t)
	c := dial(t, netnstest.New(t))
	objs, err := c.Objects(context.Background())
	if err != nil || len(objs.Counters)+len(objs.Quotas) != 0 {
		t.Fatalf("Objects = %+v, %v; want nothing", objs, err)
	}
	rules, err := c.RuleCounters(context.Background())
	if err != nil || len(rules) != 0 {
		t.Fatalf("RuleCounters = %+v, %v; want nothing", rules, err)
	}
}

func TestKernelCancelledContext(t *testing.T) {
	netnstest.Require(t)
	c := dial(t, netnstest.New(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Objects(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Objects with a cancelled context: error = %v, want context.Canceled", err)
	}
	if _, err := c.Objects(context.Background()); err != nil {
		t.Fatalf("Objects after a cancelled one: %v", err)
	}
	c.Close()
	if _, err := c.Objects(context.Background()); err == nil {
		t.Fatal("Objects on a closed Conn succeeded")
	}
}

// manyCounters loads n named counters into table inet many of ns.
func manyCounters(t testing.TB, ns *netnstest.NS, table string, n int) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	for i := range n {
		fmt.Fprintf(&b, "\tcounter svc%d { packets %d bytes %d }\n", i, i, i*1500)
	}
	b.WriteString("}\n")
	netnstest.NftLoad(t, ns, b.String())
}

// TestKernelDumpWhileRulesetChanges reads 2,001 counters while another
// process deletes the first counter of the table and adds it back, which puts
// it at the end, hundreds of times a second. The kernel resumes a dump by
// position, so a dump that such a change interrupts skips a counter and sees
// another twice; the kernel flags it and the Conn must start it again. No
// reading may hold a counter twice. One reading may miss a counter, in the
// race the kernel does not flag (see Conn.dump), which this churn hits about
// once in a few thousand readings. Read without the restart, 1 to 5% of the
// readings were wrong and the test failed on a counter seen twice.
func TestKernelDumpWhileRulesetChanges(t *testing.T) {
	const churnCounters = 2001
	netnstest.Require(t, "nft")
	ns := netnstest.New(t)
	ns.Run(t, "nft", "add table inet many; add counter inet many first")
	manyCounters(t, ns, "many", churnCounters-1)
	c := dial(t, ns)

	// One nft process reads the changes from a pipe, each line one
	// transaction: every consistent view holds churnCounters counters.
	churn := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-i")
	in, err := churn.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := churn.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Killed rather than left to work through what the pipe holds.
		defer func() { _ = churn.Process.Kill(); in.Close(); _ = churn.Wait() }()
		// The counters in creation order: each line moves the first one.
		names := []string{"first"}
		for i := range churnCounters - 1 {
			names = append(names, fmt.Sprintf("svc%d", i))
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n := names[i%len(names)]
			if _, err := fmt.Fprintf(in, "delete counter inet many %s; add counter inet many %s\n", n, n); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	// nft may take a while to start on a busy machine: the readings start
	// once the churn has.
	for deadline := time.Now().Add(30 * time.Second); ; {
		objs, err := c.Objects(context.Background())
		if err == nil && len(objs.Counters) > 0 && objs.Counters[0].Name != "first" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ruleset did not change within 30s of starting nft -i (last reading: %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// 200 readings, or fewer on a busy machine.
	const maxReadings = 200
	stopAt := time.Now().Add(5 * time.Second)
	readings, failed, incomplete := 0, 0, 0
	for i := 0; i < maxReadings && time.Now().Before(stopAt); i++ {
		readings++
		objs, err := c.Objects(context.Background())
		if err != nil {
			// Changes in every attempt until the timeout: an error
			// that says so, never a partial answer.
			if !strings.Contains(err.Error(), "interrupted") {
				t.Fatal(err)
			}
			t.Logf("reading %d: %v", i, err)
			failed++
			continue
		}
		seen := make(map[string]bool, len(objs.Counters))
		for _, o := range objs.Counters {
			if seen[o.Name] {
				t.Fatalf("reading %d holds counter %s twice", i, o.Name)
			}
			seen[o.Name] = true
		}
		if len(seen) != churnCounters {
			incomplete++
			t.Logf("reading %d holds %d counters, want %d", i, len(seen), churnCounters)
		}
	}
	t.Logf("%d of %d readings failed, interrupted until the timeout; %d were incomplete", failed, readings, incomplete)
	// The dump restarts until its timeout (5s): a reading fails only if
	// the churn interrupted every attempt for that long.
	if failed > 0 {
		t.Errorf("%d of %d readings failed", failed, readings)
	}
	if incomplete > 1 {
		t.Errorf("%d of %d readings were incomplete", incomplete, readings)
	}
}

// BenchmarkKernelObjects measures one read of n named counters from the
// kernel.
func BenchmarkKernelObjects(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("counters=%d", n), func(b *testing.B) {
			netnstest.Require(b, "nft")
			ns := netnstest.New(b)
			manyCounters(b, ns, "many", n)
			c := dial(b, ns)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				objs, err := c.Objects(context.Background())
				if err != nil || len(objs.Counters) != n {
					b.Fatalf("Objects = %d counters, %v; want %d", len(objs.Counters), err, n)
				}
			}
		})
	}
}
