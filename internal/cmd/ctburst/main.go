// Command ctburst measures how conntrack DESTROY listeners cope with a
// burst: it creates N flows through ctnetlink in a fresh network namespace,
// flushes them, and reports for each listener how many events it counted,
// how long it took to drain them, its CPU time per million events and its
// peak resident memory.
//
// It runs, one after the other on identical bursts, netfilter_exporter (with
// default flags, or with live accounting off: -tools
// exporter,exporter-live-off compares the two interleaved in one run),
// `conntrack -E -e DESTROY` and ulogd2 (NFCT, hash off,
// DESTROY only, the sample configuration's buffer sizes). With -denied, a
// share of the flows comes from a network that the exporter-filter tools'
// configuration file denies (198.18.0.0/16), and the rest from
// 198.19.128.0/17: the filtered exporter is expected to count the rest
// exactly, and the others every flow. It needs root and
// raises the global nf_conntrack_max and hash size for the burst, restoring
// them afterwards. It sets nf_conntrack_events to 1 in its namespace before
// creating the flows, so that every flow sends DESTROY whatever listeners
// exist on the host when it is created. Flows are only table entries in the
// benchmark address range 198.18.0.0/15; no packet is sent, unless
// -traffic is given: then each flow is made by a UDP packet from
// 198.18.0.0/16 sent out of a veth device of the namespace whose peer is
// down, so that its events carry counters; no packet leaves the namespace.
//
//	go run ./internal/cmd/ctburst -n 1000000
//	go run ./internal/cmd/ctburst -n 1000000 -traffic -sources 65536 -tools exporter,exporter-top
//	go run ./internal/cmd/ctburst -n 1000000 -denied 0.9 -poll 250ms -tools exporter-filter,exporter-filter-userspace,exporter
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netfilter-exporter/netfilter_exporter/internal/ctload"
	"github.com/netfilter-exporter/netfilter_exporter/internal/proc"
)

var (
	n        = flag.Int("n", 1000000, "flows in the burst")
	tools    = flag.String("tools", "exporter,conntrack,ulogd", "listeners to measure, in order: exporter, exporter-recvmmsg (with --conntrack.receive-method=recvmmsg), exporter-top (with --conntrack.top.count=10), exporter-live-off (with --conntrack.poll-interval=0), exporter-filter (with -config, filters in the kernel), exporter-filter-userspace (the same with --conntrack.filter-place=userspace), baseline, baseline-filter... (those of the -baseline binary), conntrack, ulogd")
	exporter = flag.String("exporter", "./netfilter_exporter", "exporter binary")
	baseline = flag.String("baseline", "", "a second exporter binary, measured with the same flags as the exporter tool by the baseline tool (an older build, to compare)")
	denied   = flag.Float64("denied", 0, "share of the flows (0 to 1) from 198.18.0.0/16, which the exporter-filter tools deny; the rest come from 198.19.128.0/17. 0 keeps every flow in 198.18.0.0/16, as without the flag")
	config   = flag.String("config", "", "configuration file of the exporter-filter tools (default: one denying 198.18.0.0/16, written by ctburst); they are expected to count the flows outside 198.18.0.0/16")
	expArgs  = flag.String("exporter-args", "", "extra exporter flags, space-separated")
	settle   = flag.Duration("settle", 3*time.Second, "a listener that counted nothing new for this long is done")
	poll     = flag.Duration("poll", 10*time.Millisecond, "how often the listener's count is read while it drains (for the exporter, a whole /metrics scrape: raise it with many series, where scrapes this often would take the CPU the listener needs)")
	limit    = flag.Duration("timeout", 60*time.Second, "longest wait for a listener to drain")
	acct     = flag.Bool("acct", false, "turn nf_conntrack_acct and nf_conntrack_timestamp on in the namespace before creating the flows, so that every event carries counters and timestamps, as in production")
	traffic  = flag.Bool("traffic", false, "make the flows by sending one UDP packet for each out of a device in the namespace whose peer is down, instead of through ctnetlink, so that every DESTROY event carries counters (implies -acct), which top talkers need; once a dump has listed them (-listed), each flow sends one more, so that every DESTROY has a delta live accounting did not count yet")
	sources  = flag.Int("sources", 64, "with -traffic, how many source addresses the flows come from, numbered up from 198.18.0.0 (at most 65,536)")
	runs     = flag.Int("runs", 1, "measure every listener this many times, in turn, and print the median and range of each")
	perfOut  = flag.String("perf", "", "record each listener from the flush until it has drained with `perf record -g`, into PREFIX-<listener>-<run>.data (perf's own cost is then in the CPU figures: profile and measure in separate runs)")
	listed   = flag.Bool("listed", true, "with live accounting, flush once a dump has listed every flow created, as on a running firewall whose flows dumps have seen (the adaptive interval then puts the next dump tens of seconds away); false flushes at once, whatever dump is running")
	paused   = flag.Bool("paused", false, "stop each listener (SIGSTOP) during the flush and resume it afterwards, so that drain time and CPU measure the listener alone on a full buffer; give the exporter a buffer that holds the burst")
)

// result is what one listener did with one burst.
type result struct {
	tool          string
	counted, want int64
	drain         time.Duration
	cpu           time.Duration
	peakRSS       float64 // MB
	create, flush time.Duration
	note          string
}

func main() {
	flag.Parse()
	if *traffic {
		*acct = true
		if *denied > 0 {
			fatal(errors.New("-traffic and -denied do not go together: the traffic's sources are in the denied network"))
		}
	}
	if os.Geteuid() != 0 {
		fatal(errors.New("ctburst needs root"))
	}
	restore, err := ctload.RaiseLimits(*n)
	if err != nil {
		fatal(err)
	}
	defer restore()

	if *denied <= 0 && strings.Contains(*tools, "exporter-filter") {
		fatal(errors.New("the exporter-filter tools need -denied: without it every flow is in the denied network"))
	}
	if *config == "" {
		f, err := os.CreateTemp("", "ctburst-*.yml")
		if err != nil {
			fatal(err)
		}
		defer os.Remove(f.Name())
		if _, err := fmt.Fprintf(f, "filters:\n  deny:\n    - {src: [%s]}\n", ctload.DeniedNet); err != nil {
			fatal(err)
		}
		f.Close()
		*config = f.Name()
	}

	var results []result
	for run := range max(*runs, 1) {
		for _, tool := range strings.Split(*tools, ",") {
			r, err := measure(strings.TrimSpace(tool), run+1)
			if err != nil {
				fmt.Fprintf(os.Stderr, "ctburst: %s: %v\n", tool, err)
				continue
			}
			results = append(results, r)
		}
	}
	fmt.Printf("\nburst of %d DESTROY events (nf_conntrack_events=1)", *n)
	if *acct {
		fmt.Print(", with counters and timestamps (nf_conntrack_acct, nf_conntrack_timestamp)")
	}
	if *traffic {
		fmt.Printf(", flows made by one packet each from %d sources", *sources)
	}
	if *denied > 0 {
		fmt.Printf(", %.0f%% of the flows from %s (denied by %s)", 100**denied, ctload.DeniedNet, *config)
	}
	fmt.Print("\n\n")
	fmt.Println("| listener | counted/expected | drain (s) | CPU-s per 1M events | peak RSS (MB) | create (s) | flush (s) | notes |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		fmt.Printf("| %s | %d/%d (%.1f%%) | %.2f | %.2f | %.1f | %.2f | %.2f | %s |\n",
			r.tool, r.counted, r.want, 100*float64(r.counted)/float64(r.want), r.drain.Seconds(),
			r.cpu.Seconds()*1e6/float64(*n), r.peakRSS, r.create.Seconds(), r.flush.Seconds(), r.note)
	}
	if *runs > 1 {
		summarize(results)
	}
}

// summarize prints, per listener, the median and range of each figure
// over the runs.
func summarize(results []result) {
	var order []string
	by := make(map[string][]result)
	for _, r := range results {
		if by[r.tool] == nil {
			order = append(order, r.tool)
		}
		by[r.tool] = append(by[r.tool], r)
	}
	fmt.Printf("\nmedian [min-max] over %d runs\n\n", *runs)
	fmt.Println("| listener | runs | counted/expected | drain (s) | CPU-s per 1M events | peak RSS (MB) |")
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, tool := range order {
		rs := by[tool]
		stat := func(f func(result) float64) string {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			slices.Sort(v)
			return fmt.Sprintf("%.2f [%.2f-%.2f]", v[len(v)/2], v[0], v[len(v)-1])
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", tool, len(rs),
			stat(func(r result) float64 { return 100 * float64(r.counted) / float64(r.want) })+"%",
			stat(func(r result) float64 { return r.drain.Seconds() }),
			stat(func(r result) float64 { return r.cpu.Seconds() * 1e6 / float64(*n) }),
			stat(func(r result) float64 { return r.peakRSS }))
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "ctburst: %v\n", err)
	os.Exit(1)
}

// namespace is a throwaway network namespace.
type namespace struct {
	name string
	f    *os.File
}

func newNamespace(tool string) (*namespace, error) {
	name := fmt.Sprintf("ctburst-%d-%s", os.Getpid(), tool)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	f, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		return nil, err
	}
	ns := &namespace{name: name, f: f}
	// With nf_conntrack_events=2, the kernel's default, a flow gets the
	// event extension only if a conntrack listener existed when it was
	// created (tracked host-wide since Linux 6.3), and a flow without it
	// never sends DESTROY: some bursts counted 0 events. With 1 every flow
	// sends it, whatever else runs on the host.
	settings := []string{"net.netfilter.nf_conntrack_events=1"}
	if *acct {
		settings = append(settings, "net.netfilter.nf_conntrack_acct=1", "net.netfilter.nf_conntrack_timestamp=1")
	}
	if *traffic {
		// An unreplied UDP flow times out after 30 s: the burst must
		// outlast its creation and the wait for a dump.
		settings = append(settings, "net.netfilter.nf_conntrack_udp_timeout=600")
	}
	if out, err := exec.Command("ip", append([]string{"netns", "exec", name, "sysctl", "-qw"}, settings...)...).CombinedOutput(); err != nil {
		ns.close()
		return nil, fmt.Errorf("setting %s: %v: %s", strings.Join(settings, " "), err, out)
	}
	return ns, nil
}

func (ns *namespace) close() {
	ns.f.Close()
	_ = exec.Command("ip", "netns", "del", ns.name).Run()
}

// tableEntries reads the entry count of the namespace's table.
func tableEntries(ns *namespace) (int, error) {
	out, err := exec.Command("ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/netfilter/nf_conntrack_count").Output()
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// listener is one tool under measurement.
type listener interface {
	pid() int
	// count is what the tool has counted so far, or -1 while it is known
	// to be still working. It is polled, so it must cost the listener
	// nothing: the exporter is asked only once its socket is empty.
	count() int64
	stop() string
}

func measure(tool string, run int) (r result, err error) {
	r.tool = tool
	ns, err := newNamespace(tool)
	if err != nil {
		return r, err
	}
	defer ns.close()
	dir, err := os.MkdirTemp("", "ctburst")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)

	var l listener
	// filtered tells whether the listener applies the filters of -config:
	// it is then expected to count only the flows they accept.
	filtered := false
	// baseline, baseline-filter...: the exporter tools with the -baseline
	// binary.
	variant := tool
	if v, ok := strings.CutPrefix(tool, "baseline"); ok {
		variant = "exporter" + v
	}
	switch variant {
	case "exporter", "exporter-recvmmsg", "exporter-top", "exporter-live-off", "exporter-filter", "exporter-filter-userspace":
		var extra []string
		switch variant {
		case "exporter-recvmmsg":
			extra = []string{"--conntrack.receive-method=recvmmsg"}
		case "exporter-top":
			extra = []string{"--conntrack.top.count=10"}
		case "exporter-live-off":
			extra = []string{"--conntrack.poll-interval=0"}
		case "exporter-filter":
			extra, filtered = []string{"--config.file=" + *config}, true
		case "exporter-filter-userspace":
			extra, filtered = []string{"--config.file=" + *config, "--conntrack.filter-place=userspace"}, true
		}
		extra = append(extra, strings.Fields(*expArgs)...)
		bin, name := *exporter, "netfilter_exporter"
		if variant != tool {
			if *baseline == "" {
				return r, errors.New("the baseline tool needs -baseline")
			}
			bin, name = *baseline, "baseline "+filepath.Base(*baseline)
		}
		r.tool = name + " (default flags)"
		if len(extra) > 0 {
			r.tool = name + " " + strings.Join(extra, " ")
		}
		l, err = startExporter(ns, bin, extra)
	case "conntrack":
		r.tool = "conntrack -E -e DESTROY"
		l, err = startConntrack(ns)
	case "ulogd":
		r.tool = "ulogd2 NFCT (hash off, DESTROY, sample buffers)"
		l, err = startUlogd(ns, dir)
	default:
		return r, fmt.Errorf("unknown tool %q", tool)
	}
	if err != nil {
		return r, err
	}
	defer func() { r.note += l.stop() }()

	start := time.Now()
	accepted := *n
	switch {
	case *traffic:
		err = ctload.CreateTraffic(ns.name, int(ns.f.Fd()), *n, *sources)
	case *denied > 0:
		accepted, err = ctload.CreateMixed(int(ns.f.Fd()), *n, *denied)
	default:
		err = ctload.Create(int(ns.f.Fd()), *n)
	}
	if err != nil {
		return r, fmt.Errorf("creating flows: %w", err)
	}
	r.create = time.Since(start)
	r.want = int64(*n)
	if filtered {
		r.want = int64(accepted)
	}
	if got, err := tableEntries(ns); err != nil || got != *n {
		return r, fmt.Errorf("table holds %d entries after creating %d (%v)", got, *n, err)
	}

	if w, ok := l.(interface {
		waitListed(int64) (bool, error)
	}); ok && *listed {
		waited, err := w.waitListed(r.want)
		if err != nil {
			return r, err
		}
		if waited {
			r.note += "flushed after a dump listed the table; "
			if *traffic {
				// The dump counted every flow: one more packet
				// each gives every DESTROY a delta to count.
				if err := ctload.SendTraffic(int(ns.f.Fd()), *n, *sources); err != nil {
					return r, fmt.Errorf("sending to the listed flows: %w", err)
				}
				r.note += "every flow sent a packet after it; "
			}
		}
	}

	// The exporter's dumps (live accounting) that run during the drain
	// are in its CPU figure: say how much of it they took.
	dumps, _ := l.(interface{ dumpCPU() float64 })
	var dump0 float64
	if dumps != nil {
		l.count() // a scrape: the event socket is empty before the flush
		dump0 = dumps.dumpCPU()
	}
	var stopPerf func() error
	if *perfOut != "" {
		if stopPerf, err = startPerf(fmt.Sprintf("%s-%s-%d.data", *perfOut, tool, run), l.pid()); err != nil {
			return r, err
		}
	}
	user0, sys0, err := proc.Times(l.pid())
	if err != nil {
		return r, err
	}
	if *paused {
		if err := syscall.Kill(l.pid(), syscall.SIGSTOP); err != nil {
			return r, err
		}
		start := time.Now()
		if err := ctload.Flush(int(ns.f.Fd())); err != nil {
			return r, fmt.Errorf("flush: %w", err)
		}
		r.flush = time.Since(start)
		r.note = "paused during the flush, drain from resume; "
		if err := syscall.Kill(l.pid(), syscall.SIGCONT); err != nil {
			return r, err
		}
	}
	flushStart := time.Now()
	flushDone := make(chan error, 1)
	// flushing is set while the flush runs: the kernel sends the last
	// event as the flush ends, so no listener can be done before, and
	// its count is not asked for (for the exporter, a scrape, whose cost
	// would be counted as the listener's).
	var flushing atomic.Bool
	flushing.Store(!*paused)
	go func() {
		if *paused {
			flushDone <- nil
			return
		}
		err := ctload.Flush(int(ns.f.Fd()))
		r.flush = time.Since(flushStart)
		flushing.Store(false)
		flushDone <- err
	}()

	last, lastChange := int64(0), time.Now()
	for time.Since(flushStart) < *limit {
		time.Sleep(*poll)
		c := int64(-1)
		if !flushing.Load() {
			c = l.count()
		}
		if c < 0 || c != last {
			lastChange = time.Now()
		}
		if c >= 0 {
			last = c
		}
		if c >= r.want || (c >= 0 && time.Since(lastChange) > *settle) {
			break
		}
	}
	if err := <-flushDone; err != nil {
		return r, fmt.Errorf("flush: %w", err)
	}
	r.counted = last
	r.drain = lastChange.Sub(flushStart)
	user1, sys1, err := proc.Times(l.pid())
	if err != nil {
		return r, err
	}
	r.cpu = user1 + sys1 - user0 - sys0
	r.note += fmt.Sprintf("user %.2f s, kernel %.2f s; ", (user1 - user0).Seconds(), (sys1 - sys0).Seconds())
	if dumps != nil {
		r.note += fmt.Sprintf("table dumps %.2f CPU-s of it; ", dumps.dumpCPU()-dump0)
	}
	if stopPerf != nil {
		if err := stopPerf(); err != nil {
			return r, err
		}
		r.note += "perf recording; "
	}
	r.peakRSS, err = proc.StatusMB(l.pid(), "VmHWM")
	return r, err
}

// startPerf starts `perf record -g` on process pid, into file out, and
// returns the function that stops it and waits for the file.
func startPerf(out string, pid int) (func() error, error) {
	cmd := exec.Command("perf", "record", "-g", "-q", "-o", out, "-p", strconv.Itoa(pid))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf record: %w", err)
	}
	// perf attaches before it says so only on a terminal: give it time.
	time.Sleep(500 * time.Millisecond)
	return func() error {
		_ = cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		// perf ends itself with the signal once the file is written.
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGINT {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("perf record: %w", err)
		}
		return nil
	}, nil
}

// process is a listener that is a child process.
type process struct {
	cmd     *exec.Cmd
	counter func() int64
	cleanup func() string
}

// exporterProcess is the exporter: a process whose scrapes also read the
// processor time of its table dumps.
type exporterProcess struct {
	process
	dumpSeconds *atomic.Uint64 // float64 bits
	// dumpEntries is what the latest dump listed, -1 while the exporter
	// exports no dump figures (live accounting off).
	dumpEntries *atomic.Int64
	scrape      func() (int64, error)
}

// waitListed waits until a dump of the exporter has listed want entries,
// unless its live accounting is off, and reports whether it was on.
func (p *exporterProcess) waitListed(want int64) (bool, error) {
	deadline := time.Now().Add(2 * *limit)
	for {
		if _, err := p.scrape(); err != nil {
			return false, err
		}
		got := p.dumpEntries.Load()
		if got < 0 || got >= want {
			return got >= 0, nil
		}
		if time.Now().After(deadline) {
			return true, fmt.Errorf("no dump listed the %d flows within %v (the latest listed %d)", want, 2**limit, got)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// dumpCPU returns the processor time of the exporter's table dumps as of
// the latest scrape, in seconds.
func (p *exporterProcess) dumpCPU() float64 {
	return math.Float64frombits(p.dumpSeconds.Load())
}

func (p *process) pid() int     { return p.cmd.Process.Pid }
func (p *process) count() int64 { return p.counter() }
func (p *process) stop() string {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	if p.cleanup != nil {
		return p.cleanup()
	}
	return ""
}

func startExporter(ns *namespace, bin string, extra []string) (listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"--web.listen-address=" + addr, "--netns=/var/run/netns/" + ns.name, "--log.level=warn"}
	args = append(args, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// A process inside the namespace, to read its /proc/net/netlink.
	sleeper := exec.Command("ip", "netns", "exec", ns.name, "sleep", "3600")
	if err := sleeper.Start(); err != nil {
		return nil, err
	}
	url := "http://" + addr + "/metrics"
	var lost, destroys, filteredEvents, flowBytes, talkerBytes atomic.Int64
	var dumpSeconds atomic.Uint64
	var dumpEntries atomic.Int64
	scrape := func() (int64, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var flows, seriesBytes, topBytes float64
		entries := int64(-1)
		s := bufio.NewScanner(resp.Body)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			line := s.Text()
			if strings.HasPrefix(line, "netfilter_conntrack_flows_total") {
				v := sampleValue(line)
				flows += v
			}
			if strings.HasPrefix(line, "netfilter_conntrack_events_lost_total ") {
				v := sampleValue(line)
				lost.Store(int64(v))
			}
			if strings.HasPrefix(line, "netfilter_conntrack_dump_cpu_seconds_total ") {
				v := sampleValue(line)
				dumpSeconds.Store(math.Float64bits(v))
			}
			if strings.HasPrefix(line, "netfilter_conntrack_dump_entries ") {
				v := sampleValue(line)
				entries = int64(v)
			}
			if strings.HasPrefix(line, "netfilter_conntrack_destroy_events_total ") {
				v := sampleValue(line)
				destroys.Store(int64(v))
			}
			if strings.HasPrefix(line, "netfilter_conntrack_events_filtered_total ") {
				v := sampleValue(line)
				filteredEvents.Store(int64(v))
			}
			if strings.HasPrefix(line, "netfilter_conntrack_flow_bytes_total{") {
				seriesBytes += sampleValue(line)
			}
			if strings.HasPrefix(line, "netfilter_conntrack_top_bytes{") {
				topBytes += sampleValue(line)
			}
		}
		flowBytes.Store(int64(seriesBytes))
		talkerBytes.Store(int64(topBytes))
		dumpEntries.Store(entries)
		return int64(flows), s.Err()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := scrape(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, errors.New("exporter not serving after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var counted int64
	return &exporterProcess{dumpSeconds: &dumpSeconds, dumpEntries: &dumpEntries, scrape: scrape, process: process{
		cmd: cmd,
		counter: func() int64 {
			// Scraping costs the exporter CPU; ask only when its event
			// socket (the one in the DESTROY group) is empty.
			rmem, ok := groupSocketRmem(sleeper.Process.Pid)
			if ok && rmem > 0 {
				return -1
			}
			counted, _ = scrape()
			return counted
		},
		cleanup: func() string {
			_ = sleeper.Process.Kill()
			_ = sleeper.Wait()
			note := fmt.Sprintf("destroy_events_total %d, events_filtered_total %d, events_lost_total %d", destroys.Load(), filteredEvents.Load(), lost.Load())
			if b := flowBytes.Load(); b > 0 {
				note += fmt.Sprintf(", flow series bytes %d", b)
			}
			if b := talkerBytes.Load(); b > 0 {
				note += fmt.Sprintf(", top talkers' bytes %d", b)
			}
			return note
		},
	}}, nil
}

// sampleValue returns the value of a sample line of the text format.
func sampleValue(line string) float64 {
	v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
	return v
}

// groupSocketRmem returns the queued bytes of the exporter's event socket,
// from /proc/PID/net/netlink of a process in the namespace.
func groupSocketRmem(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/netlink", pid))
	if err != nil {
		return 0, false
	}
	rmem, _, ok := ctload.ListenerSocket(string(b))
	return rmem, ok
}

// lineCounter counts the lines of a stream.
func lineCounter(r io.Reader) *atomic.Int64 {
	var c atomic.Int64
	go func() {
		br := bufio.NewReaderSize(r, 1<<20)
		buf := make([]byte, 1<<20)
		for {
			n, err := br.Read(buf)
			c.Add(int64(strings.Count(string(buf[:n]), "\n")))
			if err != nil {
				return
			}
		}
	}()
	return &c
}

func startConntrack(ns *namespace) (listener, error) {
	cmd := exec.Command("ip", "netns", "exec", ns.name, "conntrack", "-E", "-e", "DESTROY")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := lineCounter(out)
	time.Sleep(500 * time.Millisecond)
	return &process{cmd: cmd, counter: c.Load, cleanup: func() string {
		if strings.Contains(stderr.String(), "No buffer space") {
			return "reported ENOBUFS"
		}
		return ""
	}}, nil
}

func startUlogd(ns *namespace, dir string) (listener, error) {
	logFile := filepath.Join(dir, "flows.log")
	conf := filepath.Join(dir, "ulogd.conf")
	plugins := "/usr/lib/x86_64-linux-gnu/ulogd"
	cfg := fmt.Sprintf(`[global]
logfile="%s/ulogd.log"
loglevel=5
plugin="%[2]s/ulogd_inpflow_NFCT.so"
plugin="%[2]s/ulogd_output_GPRINT.so"
stack=ct1:NFCT,gp1:GPRINT

[ct1]
hash_enable=0
event_mask=0x00000004
netlink_socket_buffer_size=217088
netlink_socket_buffer_maxsize=1085440

[gp1]
file="%[3]s"
sync=0
`, dir, plugins, logFile)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(logFile, nil, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", ns.name, "ulogd", "-c", conf)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	if cmd.ProcessState != nil {
		return nil, errors.New("ulogd exited at start")
	}
	f, err := os.Open(logFile)
	if err != nil {
		return nil, err
	}
	var lines atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		br := bufio.NewReaderSize(f, 1<<20)
		buf := make([]byte, 1<<20)
		for ctx.Err() == nil {
			n, err := br.Read(buf)
			lines.Add(int64(strings.Count(string(buf[:n]), "\n")))
			if err == io.EOF {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	return &process{cmd: cmd, counter: lines.Load, cleanup: func() string {
		cancel()
		f.Close()
		log, _ := os.ReadFile(filepath.Join(dir, "ulogd.log"))
		if strings.Contains(string(log), "ENOBUFS") || strings.Contains(string(log), "No buffer space") {
			return "logged ENOBUFS"
		}
		return ""
	}}, nil
}
