package graphite

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netnstest"
	"github.com/netfilter-exporter/netfilter_exporter/tree"
)

// carbonCache is a real carbon-cache on the host's loopback, with its own
// configuration and whisper files under dir.
type carbonCache struct {
	dir, addr string
	cmd       *exec.Cmd
	done      chan struct{}
	log       *os.File
}

// freePort returns a loopback port nobody listens on.
func freePort(t testing.TB) int {
	t.Helper()
	_, p, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// newCarbonCache writes the configuration of a carbon-cache that writes at
// most maxUpdates whisper updates per second, as a busy carbon-cache does:
// a point waits in its memory for seconds before it reaches whisper.
func newCarbonCache(t testing.TB, maxUpdates int) *carbonCache {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	for _, d := range []string{conf, filepath.Join(dir, "whisper"), filepath.Join(dir, "log")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	line, pickle, query := freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`[cache]
STORAGE_DIR = %[1]s/
LOCAL_DATA_DIR = %[1]s/whisper/
CONF_DIR = %[1]s/conf/
LOG_DIR = %[1]s/log/
PID_DIR = %[1]s/
DATABASE = whisper
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = %[2]d
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = %[3]d
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = %[4]d
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = %[5]d
`, dir, maxUpdates, line, pickle, query)
	if err := os.WriteFile(filepath.Join(conf, "carbon.conf"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "storage-schemas.conf"), []byte("[all]\npattern = .*\nretentions = 1s:1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "carbon.out"))
	if err != nil {
		t.Fatal(err)
	}
	c := &carbonCache{dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(line)), log: log}
	t.Cleanup(func() {
		c.stop(syscall.SIGTERM)
		log.Close()
	})
	return c
}

// start runs carbon-cache in the foreground and waits until it listens.
func (c *carbonCache) start(t testing.TB) {
	t.Helper()
	c.cmd = exec.Command("carbon-cache", "--config="+filepath.Join(c.dir, "conf", "carbon.conf"), "--debug", "start")
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(c.cmd, c.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", c.addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-c.done:
			out, _ := os.ReadFile(c.log.Name())
			t.Fatalf("carbon-cache exited at start:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("carbon-cache does not listen on %s after 30s: %v", c.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends sig to carbon-cache and waits for it to exit.
func (c *carbonCache) stop(sig syscall.Signal) {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
}

// whisper returns the values whisper holds for a dotted path, by timestamp.
func (c *carbonCache) whisper(path string, from int64) (map[int64]float64, error) {
	file := filepath.Join(c.dir, "whisper", strings.ReplaceAll(path, ".", "/")+".wsp")
	out, err := exec.Command("whisper-fetch", "--from="+strconv.FormatInt(from-1, 10), file).Output()
	if err != nil {
		return nil, fmt.Errorf("whisper-fetch %s: %w", file, err)
	}
	vals := make(map[int64]float64)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || f[1] == "None" {
			continue
		}
		ts, err1 := strconv.ParseInt(f[0], 10, 64)
		v, err2 := strconv.ParseFloat(f[1], 64)
		if err1 == nil && err2 == nil {
			vals[ts] = v
		}
	}
	return vals, nil
}

// clockSource returns, at each call, snapshot n = 1, 2, ... stamped start+n
// seconds, holding metrics gauges m.<i> worth n. With an Interval of one
// second it keeps pace with the clock without ever stamping the future, and
// gives every second exactly one point.
type clockSource struct {
	start   int64
	metrics int

	mu sync.Mutex
	n  int
}

func (s *clockSource) Snapshot(context.Context) *tree.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	snap := &tree.Snapshot{Time: time.Unix(s.start+int64(s.n), 0)}
	for i := range s.metrics {
		snap.Samples = append(snap.Samples, tree.Sample{Desc: gaugeDesc, Path: []string{"m", strconv.Itoa(i)}, Value: float64(s.n)})
	}
	return snap
}

func (s *clockSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// carbonKill pushes points every second to a real carbon-cache that writes
// at most maxUpdates whisper updates a second, kills it with SIGKILL after
// 8 pushes, restarts it 3 pushes later, and returns, once carbon had time to
// write everything, the seconds of the metrics whisper lacks, the Writer's
// stats, and the number of seconds pushed. window selects the default
// resend window, or none.
func carbonKill(tb testing.TB, window bool, metrics, maxUpdates int) (missing []string, st Stats, seconds int) {
	tb.Helper()
	carbon := newCarbonCache(tb, maxUpdates)
	carbon.start(tb)
	src := &clockSource{start: time.Now().Unix() - 1, metrics: metrics}
	cfg := Config{
		Address:      carbon.addr,
		Prefix:       "nfe",
		Interval:     time.Second,
		Timeout:      5 * time.Second,
		BacklogBytes: 64 << 20,
	}
	if window {
		cfg.ResendWindow = DefaultResendWindow
		cfg.ResendWindowBytes, _ = ParseWindowSize(DefaultResendWindowSize)
	}
	w, err := New(cfg, src, nil)
	if err != nil {
		tb.Fatal(err)
	}
	stop := runWriter(tb, w)

	waitFor(tb, 30*time.Second, "8 pushes", func() bool { return src.count() >= 8 })
	carbon.stop(syscall.SIGKILL)
	killedAt := src.count()
	waitFor(tb, 30*time.Second, "3 pushes while carbon is down", func() bool { return src.count() >= killedAt+3 })
	carbon.start(tb)
	restartedAt := src.count()
	waitFor(tb, 60*time.Second, "5 pushes after the restart", func() bool {
		return src.count() >= restartedAt+5 && w.Stats().BacklogPoints == 0
	})
	stop()
	seconds = src.count()
	st = w.Stats()
	// carbon-cache writes everything it holds within seconds.
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing = missing[:0]
		for i := range metrics {
			path := "nfe.m." + strconv.Itoa(i)
			vals, err := carbon.whisper(path, src.start+1)
			if err != nil {
				missing = append(missing, err.Error())
				continue
			}
			for n := 1; n <= seconds; n++ {
				if v, ok := vals[src.start+int64(n)]; !ok || v != float64(n) {
					missing = append(missing, fmt.Sprintf("%s at second %d: %v (stored %v)", path, n, v, ok))
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing, st, seconds
		}
		time.Sleep(time.Second)
	}
}

// TestEndToEndCarbonKilledKeepsEverySecond pushes points every second to a
// real carbon-cache that writes them to whisper seconds after receiving
// them, kills it with SIGKILL, restarts it, and checks that whisper holds
// every second of every metric: what the killed carbon held in memory was
// sent again from the resend window.
func TestEndToEndCarbonKilledKeepsEverySecond(t *testing.T) {
	netnstest.Require(t, "carbon-cache", "whisper-fetch")
	// 20 metrics at one point a second, 5 updates a second: each metric
	// reaches whisper every 4 seconds, with the points of 4 seconds.
	missing, st, seconds := carbonKill(t, true, 20, 5)
	if st.Resent == 0 || st.Dropped != 0 || st.WriteErrors+st.ConnectErrors == 0 {
		t.Errorf("stats = %+v, want resends after the kill, no drops", st)
	}
	if len(missing) > 0 {
		t.Errorf("whisper lacks %d points of seconds 1..%d, such as %q", len(missing), seconds, missing[:min(5, len(missing))])
	}
}

// BenchmarkCarbonCacheLoss measures what a carbon-cache killed with SIGKILL
// loses: the points of 20 metrics pushed every second that whisper lacks
// once it is restarted, without the resend window and with it, for a
// carbon-cache slowed to 5 whisper updates a second and one at Debian's
// default of 500. Run it with -benchtime=1x.
func BenchmarkCarbonCacheLoss(b *testing.B) {
	netnstest.Require(b, "carbon-cache", "whisper-fetch")
	for _, maxUpdates := range []int{5, 500} {
		for _, window := range []bool{false, true} {
			b.Run(fmt.Sprintf("max-updates=%d/window=%v", maxUpdates, window), func(b *testing.B) {
				var lost, seconds int
				for b.Loop() {
					missing, _, n := carbonKill(b, window, 20, maxUpdates)
					lost, seconds = len(missing), n
				}
				b.ReportMetric(float64(lost), "points-lost")
				b.ReportMetric(float64(lost)/20, "seconds-lost/metric")
				b.ReportMetric(float64(seconds*20), "points-pushed")
			})
		}
	}
}
