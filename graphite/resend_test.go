package graphite

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// bulkSource returns snapshot 1, 2, ... at each call: Time is baseTime+n
// seconds, and it holds points counters s.<i>.pkts, all worth n. Once
// paused, it has nothing to send.
type bulkSource struct {
	points int

	mu     sync.Mutex
	n      int
	paused bool
}

func (s *bulkSource) Snapshot(context.Context) *tree.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused {
		return nil
	}
	s.n++
	snap := &tree.Snapshot{Time: time.Unix(int64(baseTime+s.n), 0), Samples: make([]tree.Sample, s.points)}
	for i := range snap.Samples {
		snap.Samples[i] = tree.Sample{Desc: counterDesc, Path: []string{"s", fmt.Sprint(i), "pkts"}, Value: float64(s.n)}
	}
	return snap
}

// pause makes the source stop producing snapshots and returns how many it
// produced.
func (s *bulkSource) pause() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = true
	return s.n
}

func (s *bulkSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// bulkLine is line i of snapshot n of a bulkSource.
func bulkLine(n, i int) string {
	return fmt.Sprintf("netfilter.s.%d.pkts %d %d", i, n, baseTime+n)
}

// swallower is a carbon that accepts connections and never reads from
// them, until it dies.
type swallower struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []*net.TCPConn
	onAccept func(net.Conn) // once woken up
}

func startSwallower(t *testing.T) *swallower {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &swallower{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c.(*net.TCPConn))
			if s.onAccept != nil {
				go s.onAccept(c)
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.die)
	return s
}

// held returns the bytes waiting, unread, in the receive queues of the
// swallower's connections: what their kernel acknowledged.
func (s *swallower) held(t *testing.T) []byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []byte
	for _, c := range s.conns {
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var ierr error
		if err := raw.Control(func(fd uintptr) {
			var n int
			if n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ); ierr != nil || n == 0 {
				return
			}
			b := make([]byte, n)
			n, _, ierr = unix.Recvfrom(int(fd), b, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			all = append(all, b[:max(n, 0)]...)
		}); err != nil {
			t.Fatal(err)
		}
		if ierr != nil {
			t.Fatal(ierr)
		}
	}
	return all
}

func (s *swallower) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// die closes the listener and the connections with their data unread,
// which resets them, as the kernel does for a carbon killed with SIGKILL.
func (s *swallower) die() {
	_ = s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// stalledHeld waits until the connection to the swallower has stalled, and
// returns the data the swallower holds: the data it holds no longer grows
// while the Writer's backlog does.
func stalledHeld(t *testing.T, w *Writer, s *swallower) []byte {
	t.Helper()
	var prev []byte
	prevBacklog, stable := 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for stable < 3 {
		time.Sleep(200 * time.Millisecond)
		cur, backlog := s.held(t), w.Stats().BacklogBytes
		if len(cur) > 0 && len(cur) == len(prev) && backlog > prevBacklog {
			stable++
		} else {
			stable = 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("the connection did not stall within 60s: carbon holds %d bytes, stats %+v", len(cur), w.Stats())
		}
		prev, prevBacklog = cur, backlog
	}
	return prev
}

// TestWriterCarbonDiesHoldingData runs the Writer against a carbon that
// accepts points and never reads them, until it dies, and then against a
// carbon that reads. Points count as sent only once carbon's kernel has
// acknowledged them; with the resend window the second carbon receives
// every line of every snapshot, once and in order; without it, it receives
// every line the first carbon's kernel did not acknowledge.
func TestWriterCarbonDiesHoldingData(t *testing.T) {
	for _, window := range []bool{true, false} {
		t.Run(fmt.Sprintf("window=%v", window), func(t *testing.T) {
			const points = 1000
			sw := startSwallower(t)
			addr := sw.ln.Addr().String()
			src := &bulkSource{points: points}
			cfg := testConfig(addr)
			cfg.Interval = 20 * time.Millisecond
			cfg.Timeout = 30 * time.Second // the stalled write waits for the carbon to die
			cfg.BacklogPoints, cfg.BacklogBytes = 0, 256<<20
			if window {
				cfg.ResendWindow, cfg.ResendWindowBytes = 5*time.Minute, 64<<20
			}
			w, err := New(cfg, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			stop := runWriter(t, w)

			held := stalledHeld(t, w, sw)
			acked := bytes.Count(held, []byte{'\n'})
			if n := sw.connections(); n != 1 {
				t.Fatalf("%d connections to the first carbon, want 1", n)
			}
			sw.die()
			waitFor(t, 10*time.Second, "the Writer to see the connection fail", func() bool { return w.Stats().WriteErrors > 0 })
			if st := w.Stats(); st.Sent != uint64(acked) {
				t.Errorf("after the first carbon died: points sent = %d, want the %d lines its kernel acknowledged", st.Sent, acked)
			}

			carbon := startCarbon(t, addr, 0)
			after := src.count() + 2
			waitFor(t, 30*time.Second, "snapshots after the reconnection", func() bool {
				return containsLine(carbon.received(), bulkLine(after, points-1))
			})
			stop()
			last := src.count()
			first := 1
			if !window {
				first = acked + 1
			}
			want := (last * points) - (first - 1)
			waitFor(t, 30*time.Second, "every line", func() bool { return len(carbon.received()) >= want })
			got := carbon.received()
			if len(got) != want {
				t.Errorf("second carbon received %d lines, want %d", len(got), want)
			}
			for k, l := range got {
				j := first - 1 + k
				if wl := bulkLine(j/points+1, j%points); l != wl {
					t.Fatalf("line %d of the second carbon = %q, want %q: every line once, in order", k, l, wl)
				}
			}
			st := w.Stats()
			wantResent := uint64(0)
			if window {
				wantResent = uint64(acked)
			}
			if st.Sent != uint64(last*points) || st.Resent != wantResent || st.Dropped != 0 || st.BacklogPoints != 0 {
				t.Errorf("stats = %+v, want %d sent, %d resent, none dropped or left", st, last*points, wantResent)
			}
			t.Logf("the first carbon held %d lines (%d bytes) unread; stats %+v", acked, len(held), st)
		})
	}
}

// wake makes the swallower read every connection it holds, and every new
// one, as a carbon that was stalled and recovers: it returns the lines read
// so far.
func (s *swallower) wake(t *testing.T) func() []string {
	t.Helper()
	var mu sync.Mutex
	var lines []string
	read := func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			mu.Lock()
			lines = append(lines, strings.TrimSuffix(l, "\n"))
			mu.Unlock()
		}
	}
	s.mu.Lock()
	for _, c := range s.conns {
		go read(c)
	}
	s.onAccept = read
	s.mu.Unlock()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lines...)
	}
}

// TestWriterStalledCarbonGetsEveryLineOnce runs the Writer against a carbon
// that stops reading for longer than the write timeout, and then reads
// again. The Writer gives up on the stalled connection, resets it and
// reconnects: what the stalled carbon's kernel acknowledged stays for it to
// read, what it did not is written on the next connection, and the resend
// window is not replayed, as carbon lost nothing. Every line arrives exactly
// once, which a carbon-aggregator needs.
func TestWriterStalledCarbonGetsEveryLineOnce(t *testing.T) {
	const points = 2000 // 2,000 points a 20 ms snapshot fill the sockets in about a second
	sw := startSwallower(t)
	src := &bulkSource{points: points}
	cfg := testConfig(sw.ln.Addr().String())
	cfg.Interval = 20 * time.Millisecond
	cfg.Timeout = 300 * time.Millisecond
	cfg.BacklogPoints, cfg.BacklogBytes = 0, 256<<20
	cfg.ResendWindow, cfg.ResendWindowBytes = 5*time.Minute, 64<<20
	w, err := New(cfg, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWriter(t, w)
	waitFor(t, 30*time.Second, "writes to time out", func() bool { return w.Stats().WriteErrors >= 2 })
	received := sw.wake(t)
	after := src.count() + 2
	waitFor(t, 30*time.Second, "snapshots after the carbon woke up", func() bool {
		return containsLine(received(), bulkLine(after, points-1))
	})
	// The source stops producing so that the Writer can catch up: then
	// every point must be acknowledged, none left, before the stop, which
	// has only the short Timeout to flush.
	last := src.pause()
	caughtUp := func() bool {
		st := w.Stats()
		return st.Sent == uint64(last*points) && st.BacklogPoints == 0 && len(received()) >= last*points
	}
	for deadline := time.Now().Add(60 * time.Second); !caughtUp(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the Writer has not caught up: %d lines arrived, want %d; stats %+v", len(received()), last*points, w.Stats())
		}
	}
	stop()
	got := received()
	seen := make(map[string]int, len(got))
	for _, l := range got {
		seen[l]++
	}
	for n := 1; n <= last; n++ {
		for i := range points {
			if c := seen[bulkLine(n, i)]; c != 1 {
				t.Fatalf("line %q arrived %d times, want once (%d lines from %d connections)", bulkLine(n, i), c, len(got), sw.connections())
			}
		}
	}
	if len(got) != last*points {
		t.Errorf("%d lines arrived, want %d", len(got), last*points)
	}
	st := w.Stats()
	if st.Sent != uint64(last*points) || st.BacklogPoints != 0 || st.Resent != 0 || st.Dropped != 0 || st.WriteErrors < 2 {
		t.Errorf("stats = %+v, want %d sent, none left, resent or dropped, write errors", st, last*points)
	}
}
