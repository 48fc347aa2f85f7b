package graphite

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// flowSource returns snapshots of series conntrack flow series shaped as
// with --conntrack.group-by=family,proto,src,sport,dport: five samples each,
// with the paths and values of a busy NAT gateway. Snapshot n has Time
// baseTime+n. The samples are built once and updated in place, so the
// snapshot is valid until the next call.
type flowSource struct {
	mu      sync.Mutex
	n       int
	samples []tree.Sample
}

var (
	flowsDesc   = tree.NewDesc("netfilter_conntrack_flows_total", "", tree.Counter, "family", "proto", "src", "sport", "dport")
	flowPktDesc = tree.NewDesc("netfilter_conntrack_flow_packets_total", "", tree.Counter, "direction", "family", "proto", "src", "sport", "dport")
	flowBytDesc = tree.NewDesc("netfilter_conntrack_flow_bytes_total", "", tree.Counter, "direction", "family", "proto", "src", "sport", "dport")
)

func newFlowSource(series int) *flowSource {
	s := &flowSource{samples: make([]tree.Sample, 0, 5*series)}
	dports := []string{"53", "80", "123", "443", "8080"}
	for i := range series {
		vals := []string{"ipv4", "udp",
			"198.18." + strconv.Itoa(i>>8&0xff) + "." + strconv.Itoa(i&0xff),
			strconv.Itoa(1024 + i%16384), dports[i%len(dports)]}
		path := func(leaf ...string) []string {
			return append(append([]string{"conntrack"}, vals...), leaf...)
		}
		orig := append([]string{"orig"}, vals...)
		reply := append([]string{"reply"}, vals...)
		s.samples = append(s.samples,
			tree.Sample{Desc: flowsDesc, LabelValues: vals, Path: path("flows")},
			tree.Sample{Desc: flowPktDesc, LabelValues: orig, Path: path("orig", "pkts")},
			tree.Sample{Desc: flowBytDesc, LabelValues: orig, Path: path("orig", "bytes")},
			tree.Sample{Desc: flowPktDesc, LabelValues: reply, Path: path("reply", "pkts")},
			tree.Sample{Desc: flowBytDesc, LabelValues: reply, Path: path("reply", "bytes")},
		)
	}
	return s
}

func (s *flowSource) Snapshot(context.Context) *tree.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	for i := range s.samples {
		// Flows in the thousands, packets in the millions, bytes in the
		// billions.
		s.samples[i].Value = float64((i%5*3+1)*(1000+i)) * float64(s.n) * 1e3
	}
	return &tree.Snapshot{Time: time.Unix(int64(baseTime+s.n), 0), Samples: s.samples}
}

func (s *flowSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// countingCarbon is a plaintext listener that counts the lines it reads per
// timestamp, and the malformed ones.
type countingCarbon struct {
	ln net.Listener

	mu        sync.Mutex
	perTime   map[int64]int
	bytes     int
	malformed []string
}

func startCountingCarbon(t testing.TB) *countingCarbon {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &countingCarbon{ln: ln, perTime: make(map[int64]int)}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				c.read(conn)
			}()
		}
	}()
	return c
}

func (c *countingCarbon) read(conn net.Conn) {
	r := bufio.NewReaderSize(conn, 1<<20)
	counts := make(map[int64]int)
	size := 0
	flush := func() {
		c.mu.Lock()
		for ts, n := range counts {
			c.perTime[ts] += n
		}
		c.bytes += size
		c.mu.Unlock()
		clear(counts)
		size = 0
	}
	defer flush()
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		size += len(line)
		// "path value timestamp\n", checked with few instrumented
		// accesses: the race detector makes a byte loop slow.
		last := bytes.LastIndexByte(line, ' ')
		ts, err := strconv.ParseInt(string(line[last+1:len(line)-1]), 10, 64)
		if bytes.Count(line, []byte{' '}) != 2 || err != nil {
			c.mu.Lock()
			c.malformed = append(c.malformed, string(line))
			c.mu.Unlock()
			continue
		}
		counts[ts]++
		if r.Buffered() == 0 {
			flush()
		}
	}
}

func (c *countingCarbon) total() (lines, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.perTime {
		lines += n
	}
	return lines, c.bytes
}

// TestWriterKeepsUpWith100kSeries pushes snapshots of 100,000 conntrack
// series (500,000 points each) through a real TCP listener with the default
// backlog and resend window: every point of every push must arrive, and
// none may be dropped.
func TestWriterKeepsUpWith100kSeries(t *testing.T) {
	const series, points = 100_000, 500_000
	carbon := startCountingCarbon(t)
	src := newFlowSource(series)
	backlogPoints, backlogBytes, err := ParseBacklogSize(DefaultBacklogSize)
	if err != nil {
		t.Fatal(err)
	}
	windowBytes, err := ParseWindowSize(DefaultResendWindowSize)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{
		Address:           carbon.ln.Addr().String(),
		Prefix:            "netfilter",
		Interval:          100 * time.Millisecond, // as fast as snapshots can be taken
		Timeout:           30 * time.Second,
		BacklogPoints:     backlogPoints,
		BacklogBytes:      backlogBytes,
		ResendWindow:      DefaultResendWindow,
		ResendWindowBytes: windowBytes,
	}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWriter(t, w)
	waitFor(t, 2*time.Minute, "two snapshots", func() bool { return src.count() >= 2 })
	stop()
	pushes := src.count() // the final snapshot included
	waitFor(t, 30*time.Second, "every acknowledged point", func() bool {
		lines, _ := carbon.total()
		return uint64(lines) == w.Stats().Sent
	})

	st := w.Stats()
	lines, size := carbon.total()
	if len(carbon.malformed) > 0 {
		t.Fatalf("%d malformed lines, such as %q", len(carbon.malformed), carbon.malformed[0])
	}
	for n := 1; n <= pushes; n++ {
		if got := carbon.perTime[int64(baseTime+n)]; got != points {
			t.Errorf("push %d of %d: %d points arrived, want %d", n, pushes, got, points)
		}
	}
	if lines != pushes*points || st.Sent != uint64(pushes*points) || st.Dropped != 0 || st.Resent != 0 || st.BacklogPoints != 0 {
		t.Errorf("%d points arrived; stats = %+v; want %d sent, none dropped, resent or left", lines, st, pushes*points)
	}
	t.Logf("%d pushes of %d points, %.1f bytes per point, %.1f MB per push",
		pushes, points, float64(size)/float64(lines), float64(size)/float64(pushes)/1e6)
}
