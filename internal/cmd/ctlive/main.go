// Command ctlive measures live accounting on a large, idle conntrack table:
// it starts netfilter_exporter (default flags) on a fresh network namespace,
// fills the namespace's table with N entries through ctnetlink, waits until
// a dump has listed them all, then for a window reports the exporter's
// average CPU (which the adaptive poll interval bounds), its peak resident
// memory, its poll interval and dump figures, and the /metrics latency
// scraped every second while dumps run. At the end it flushes the table and
// checks that every flow is counted as ended exactly once.
//
// It needs root and raises the global nf_conntrack_max and hash size for
// the run, restoring them afterwards. In its namespace it sets
// nf_conntrack_acct, nf_conntrack_timestamp and nf_conntrack_events to 1
// before creating the entries, so that every one carries counters and
// timestamps and sends DESTROY whatever listeners exist on the host.
// Entries are in the benchmark range 198.18.0.0/15; no packet is sent.
//
//	go run ./internal/cmd/ctlive -n 1000000 -window 5m
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/proc"
)

var (
	n        = flag.Int("n", 1000000, "entries in the table")
	window   = flag.Duration("window", 5*time.Minute, "how long CPU and scrape latency are measured on the idle table")
	exporter = flag.String("exporter", "./netfilter_exporter", "exporter binary")
	expArgs  = flag.String("exporter-args", "", "extra exporter flags, space-separated")
)

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "ctlive: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	if os.Geteuid() != 0 {
		return errors.New("ctlive needs root")
	}
	restore, err := ctload.RaiseLimits(*n)
	if err != nil {
		return err
	}
	defer restore()
	name := fmt.Sprintf("ctlive-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	nsFile, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		return err
	}
	defer nsFile.Close()
	// nf_conntrack_events=1: with the default 2, an entry created while no
	// conntrack listener existed (host-wide since Linux 6.3) never sends
	// DESTROY, and the flush would be counted from the dumps alone.
	if out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-q", "-w",
		"net.netfilter.nf_conntrack_acct=1", "net.netfilter.nf_conntrack_timestamp=1",
		"net.netfilter.nf_conntrack_events=1").CombinedOutput(); err != nil {
		return fmt.Errorf("sysctl: %v: %s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	args := append([]string{"--web.listen-address=" + addr, "--netns=/var/run/netns/" + name, "--log.level=warn",
		"--no-collector.nfacct"}, strings.Fields(*expArgs)...)
	cmd := exec.Command(*exporter, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	url := "http://" + addr + "/metrics"
	if err := waitFor(url, 10*time.Second, func(m metrics) bool { return m.has("netfilter_conntrack_dumps_total") }); err != nil {
		return fmt.Errorf("exporter: %w", err)
	}

	start := time.Now()
	// Entries outlive the measurement: none times out during the window.
	if err := ctload.CreateTimeout(int(nsFile.Fd()), *n, 4*3600); err != nil {
		return fmt.Errorf("creating entries: %w", err)
	}
	fmt.Printf("created %d entries in %v\n", *n, time.Since(start).Round(time.Millisecond))
	if err := waitFor(url, 5*time.Minute, func(m metrics) bool { return m.sum("netfilter_conntrack_flows_active") == float64(*n) }); err != nil {
		return fmt.Errorf("no dump listed every entry: %w", err)
	}
	fmt.Printf("a dump listed them all %v after they were created\n", time.Since(start).Round(time.Millisecond))

	pid := cmd.Process.Pid
	cpu0, err := proc.CPUTime(pid)
	if err != nil {
		return err
	}
	m0, err := scrape(url)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var latencies []time.Duration
	for time.Since(t0) < *window {
		time.Sleep(time.Second)
		s := time.Now()
		if _, err := scrape(url); err != nil {
			return err
		}
		latencies = append(latencies, time.Since(s))
	}
	elapsed := time.Since(t0)
	cpu1, err := proc.CPUTime(pid)
	if err != nil {
		return err
	}
	m1, err := scrape(url)
	if err != nil {
		return err
	}
	hwm, err := proc.StatusMB(pid, "VmHWM")
	if err != nil {
		return err
	}
	slices.Sort(latencies)
	dumps := m1.sum("netfilter_conntrack_dumps_total") - m0.sum("netfilter_conntrack_dumps_total")
	dumpCPU := m1.sum("netfilter_conntrack_dump_cpu_seconds_total") - m0.sum("netfilter_conntrack_dump_cpu_seconds_total")
	fmt.Printf("idle table of %d entries, %v window:\n", *n, elapsed.Round(time.Second))
	fmt.Printf("  exporter CPU           %.2f%% of one core (%.1f CPU-s)\n", 100*float64(cpu1-cpu0)/float64(elapsed), (cpu1 - cpu0).Seconds())
	fmt.Printf("  dumps                  %v, %.2f CPU-s each, last %.2f s wall\n", dumps, dumpCPU/max(dumps, 1), m1.sum("netfilter_conntrack_dump_duration_seconds"))
	fmt.Printf("  poll interval          %.1f s\n", m1.sum("netfilter_conntrack_poll_interval_seconds"))
	fmt.Printf("  peak RSS               %.1f MB (flow table %.1f MB)\n", hwm, m1.sum("netfilter_conntrack_flow_table_bytes")/1e6)
	fmt.Printf("  /metrics latency       median %v, max %v (%d scrapes)\n",
		latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), len(latencies))

	start = time.Now()
	if err := ctload.Flush(int(nsFile.Fd())); err != nil {
		return err
	}
	var m metrics
	err = waitFor(url, 5*time.Minute, func(got metrics) bool {
		m = got
		return m.sum("netfilter_conntrack_flows_total") >= float64(*n)
	})
	if err != nil {
		return fmt.Errorf("after the flush: %w", err)
	}
	fmt.Printf("flush: %v flows counted as ended in %v (%v DESTROY events, %v lost, %v closed out from the dumps)\n",
		m.sum("netfilter_conntrack_flows_total"), time.Since(start).Round(time.Millisecond), m.sum("netfilter_conntrack_destroy_events_total"),
		m.sum("netfilter_conntrack_events_lost_total"), m.sum("netfilter_conntrack_flows_closed_out_total"))
	if got := m.sum("netfilter_conntrack_flows_total"); got != float64(*n) {
		return fmt.Errorf("%v flows counted as ended, want %d", got, *n)
	}
	if hwm, err = proc.StatusMB(pid, "VmHWM"); err == nil {
		fmt.Printf("peak RSS after the flush: %.1f MB\n", hwm)
	}
	return nil
}

// metrics are the samples of one scrape, by name, label values summed.
type metrics map[string]float64

func (m metrics) sum(name string) float64 { return m[name] }

func (m metrics) has(name string) bool {
	_, ok := m[name]
	return ok
}

func scrape(url string) (metrics, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := metrics{}
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			m[name] += v
		}
	}
	return m, s.Err()
}

func waitFor(url string, timeout time.Duration, cond func(metrics) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := scrape(url)
		if err == nil && cond(m) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met after %v (last error %v)", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
