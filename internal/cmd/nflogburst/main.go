// Command nflogburst measures how nflog listeners cope with a burst of
// logged packets: it sends N UDP datagrams from one fresh network namespace
// to another, whose input rule counts them, logs them to nflog group 5 and
// drops them, and reports for each listener how many it counted (and, for
// the exporter, how many it knows it lost), how long it took to drain,
// its CPU time per million packets and its peak resident memory.
//
// The listeners, one after the other on identical bursts: netfilter_exporter
// (--nflog.group=5, default flags otherwise), a bare listener that only
// counts messages (this command itself, with the same kernel-side settings
// as the exporter: copy range 128, 64 KiB batches, sequence numbers), and
// ulogd2 (NFLOG -> BASE -> IFINDEX -> IP2STR -> PRINTPKT -> LOGEMU, to a
// file, with a 64 MiB buffer). It needs root. Traffic stays between the
// namespaces it makes, in the benchmark range 198.18.0.0/15.
//
//	go run ./internal/cmd/nflogburst -n 1000000 -runs 3
//
// exporter@PATH measures another exporter binary in the same run, e.g. the
// build of an older commit beside the current one:
//
//	go run ./internal/cmd/nflogburst -runs 3 -tools exporter@/tmp/before,exporter,bare
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/proc"
)

var (
	n        = flag.Int("n", 1000000, "packets in the burst")
	tools    = flag.String("tools", "exporter,bare,ulogd", "listeners to measure, in order: exporter, bare, ulogd, or exporter@PATH (another exporter binary, e.g. an older build, measured in the same run)")
	exporter = flag.String("exporter", "./netfilter_exporter", "exporter binary")
	expArgs  = flag.String("exporter-args", "", "extra exporter flags, space-separated")
	runs     = flag.Int("runs", 1, "measure every listener this many times, in turn, and print the median and range of each")
	settle   = flag.Duration("settle", 3*time.Second, "a listener that counted nothing new for this long is done")
	limit    = flag.Duration("timeout", 120*time.Second, "longest wait for a listener to drain")
	scrapeEv = flag.Duration("scrape-interval", time.Second, "how often the exporter is scraped during the burst")
	bare     = flag.Bool("bare-listener", false, "internal: run as the bare counting listener of group 5")
)

const (
	group    = 5
	dport    = 9999
	ruleset  = "table inet bench { counter logged { } ; chain input { type filter hook input priority 0; udp dport 9999 counter name \"logged\" log prefix \"burst \" group 5 drop ; } ; }"
	senderIP = "198.18.0.1"
	loggerIP = "198.18.0.2"
)

type result struct {
	tool     string
	logged   int64
	counted  int64
	lost     int64 // as the listener reports it; -1 when it cannot
	drain    time.Duration
	cpu      time.Duration
	peakRSS  float64
	sendRate float64
}

func main() {
	flag.Parse()
	if *bare {
		fatal(bareListener()) // it returns only on failure
	}
	if os.Geteuid() != 0 {
		fatal(errors.New("nflogburst needs root"))
	}
	var results []result
	for range max(*runs, 1) {
		for _, tool := range strings.Split(*tools, ",") {
			r, err := measure(strings.TrimSpace(tool))
			if err != nil {
				fatal(fmt.Errorf("%s: %w", tool, err))
			}
			lost := "-"
			if r.lost >= 0 {
				lost = strconv.FormatInt(r.lost, 10)
			}
			fmt.Printf("%-9s logged %d (sent at %.0f/s), counted %d (%.2f%%), reported lost %s, drain %.2fs, CPU %.2fs = %.2f CPU-s per 1M, peak RSS %.1f MB\n",
				r.tool, r.logged, r.sendRate, r.counted, 100*float64(r.counted)/float64(max(r.logged, 1)), lost,
				r.drain.Seconds(), r.cpu.Seconds(), r.cpu.Seconds()*1e6/float64(max(r.logged, 1)), r.peakRSS)
			results = append(results, r)
		}
	}
	summarize(results)
}

func summarize(results []result) {
	var order []string
	by := map[string][]result{}
	for _, r := range results {
		if by[r.tool] == nil {
			order = append(order, r.tool)
		}
		by[r.tool] = append(by[r.tool], r)
	}
	fmt.Printf("\nmedian [min-max] over %d runs of %d packets\n\n", *runs, *n)
	fmt.Println("| listener | counted/logged | counted+lost/logged | CPU-s per 1M packets | peak RSS (MB) |")
	fmt.Println("| --- | --- | --- | --- | --- |")
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
		accounted := "-"
		if rs[0].lost >= 0 {
			accounted = stat(func(r result) float64 { return 100 * float64(r.counted+r.lost) / float64(r.logged) }) + "%"
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", tool,
			stat(func(r result) float64 { return 100 * float64(r.counted) / float64(r.logged) })+"%", accounted,
			stat(func(r result) float64 { return r.cpu.Seconds() * 1e6 / float64(r.logged) }),
			stat(func(r result) float64 { return r.peakRSS }))
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "nflogburst: %v\n", err)
	os.Exit(1)
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// listener is one tool under measurement: its process, what it has counted
// and lost so far (lost -1 when it does not say), and how to stop it.
type listener struct {
	cmd   *exec.Cmd
	count func() (counted, lost int64)
	stop  func()
	// final, if set, is what the tool counted once stopped (ulogd2 writes
	// its file through a stdio buffer that it flushes at exit).
	final func() int64
}

func measure(tool string) (r result, err error) {
	r.tool = tool
	// Namespace names: the tool's, without the path of exporter@PATH.
	id := fmt.Sprintf("nflogburst-%d-%s", os.Getpid(), strings.Map(func(r rune) rune {
		if r == '/' || r == '@' || r == '.' {
			return '_'
		}
		return r
	}, tool))
	sender, logger := id+"-s", id+"-l"
	for _, ns := range []string{sender, logger} {
		if err := run("ip", "netns", "add", ns); err != nil {
			return r, err
		}
		defer exec.Command("ip", "netns", "del", ns).Run()
	}
	for _, c := range [][]string{
		{"ip", "-n", sender, "link", "add", "vs", "type", "veth", "peer", "name", "vl", "netns", logger},
		{"ip", "-n", sender, "addr", "add", senderIP + "/24", "dev", "vs"},
		{"ip", "-n", logger, "addr", "add", loggerIP + "/24", "dev", "vl"},
		{"ip", "-n", sender, "link", "set", "vs", "up"},
		{"ip", "-n", logger, "link", "set", "vl", "up"},
		{"ip", "netns", "exec", logger, "nft", ruleset},
	} {
		if err := run(c[0], c[1:]...); err != nil {
			return r, err
		}
	}
	dir, err := os.MkdirTemp("", "nflogburst")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	var l *listener
	switch {
	case tool == "exporter":
		l, err = startExporter(logger, *exporter)
	case strings.HasPrefix(tool, "exporter@"):
		l, err = startExporter(logger, strings.TrimPrefix(tool, "exporter@"))
	case tool == "bare":
		l, err = startBare(logger)
	case tool == "ulogd":
		l, err = startUlogd(logger, dir)
	default:
		err = fmt.Errorf("unknown listener %q", tool)
	}
	if err != nil {
		return r, err
	}
	defer l.stop()
	if err := waitBound(logger); err != nil {
		return r, err
	}
	pid := l.cmd.Process.Pid
	cpu0, err := proc.CPUTime(pid)
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := send(sender, *n); err != nil {
		return r, err
	}
	r.sendRate = float64(*n) / time.Since(t0).Seconds()
	if r.logged, err = logged(logger); err != nil {
		return r, err
	}
	var last int64 = -1
	lastChange := time.Now()
	deadline := time.Now().Add(*limit)
	for time.Now().Before(deadline) {
		c, lost := l.count()
		if c != last {
			last, lastChange = c, time.Now()
		}
		r.counted, r.lost = c, lost
		if (c == r.logged || (lost >= 0 && c+lost == r.logged)) || time.Since(lastChange) > *settle {
			break
		}
		time.Sleep(*scrapeEv)
	}
	r.drain = lastChange.Sub(t0)
	cpu1, err := proc.CPUTime(pid)
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	if r.peakRSS, err = proc.StatusMB(pid, "VmHWM"); err != nil {
		return r, err
	}
	if l.final != nil {
		l.stop()
		r.counted = l.final()
	}
	return r, nil
}

// waitBound waits until group 5 is bound in namespace ns.
func waitBound(ns string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/netfilter/nfnetlink_log").Output()
		for line := range strings.SplitSeq(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == strconv.Itoa(group) {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("group 5 not bound after 20s")
}

// logged returns the rule's own counter.
func logged(ns string) (int64, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "bench", "logged").Output()
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "packets" && i+1 < len(f) {
			return strconv.ParseInt(f[i+1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no packet count in %q", out)
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// send sends count 64-byte UDP datagrams from namespace ns to the logger,
// 64 per sendmmsg call.
func send(ns string, count int) error {
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer f.Close()
	var fd int
	if err := netns.Do(int(f.Fd()), func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Port: dport, Addr: [4]byte(net.ParseIP(loggerIP).To4())})
	}); err != nil {
		return err
	}
	defer unix.Close(fd)
	const batch = 64
	payload := make([]byte, 64)
	iov := unix.Iovec{Base: &payload[0]}
	iov.SetLen(len(payload))
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	for sent := 0; sent < count; {
		k := min(batch, count-sent)
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(k), 0, 0, 0)
		switch {
		case errno == unix.EINTR || errno == unix.EAGAIN || errno == unix.ENOBUFS:
			continue
		case errno != 0:
			return fmt.Errorf("sendmmsg: %w", errno)
		}
		sent += int(r)
	}
	return nil
}

func stopper(cmd *exec.Cmd, then func()) func() {
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if then != nil {
			then()
		}
	}
}

func startExporter(ns, binary string) (*listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--web.listen-address=" + addr, "--netns=/var/run/netns/" + ns, "--log.level=warn",
		"--collector.disable-defaults", "--nflog.group=" + strconv.Itoa(group)}
	args = append(args, strings.Fields(*expArgs)...)
	cmd := exec.Command(binary, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	url := "http://" + addr + "/metrics"
	scrape := func() (counted, lost int64, err error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, 0, err
		}
		defer resp.Body.Close()
		var c, l float64
		s := bufio.NewScanner(resp.Body)
		for s.Scan() {
			line := s.Text()
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			switch {
			case strings.HasPrefix(line, "netfilter_nflog_packets_total{"):
				c += v
			case strings.HasPrefix(line, "netfilter_nflog_packets_lost_total{"):
				l += v
			}
		}
		return int64(c), int64(l), s.Err()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := scrape(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, errors.New("exporter not serving after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &listener{cmd: cmd, stop: stopper(cmd, nil), count: func() (int64, int64) {
		c, l, err := scrape()
		if err != nil {
			return -1, -1
		}
		return c, l
	}}, nil
}

// startBare runs this command as the bare listener in namespace ns; it
// prints its count on every line.
func startBare(ns string) (*listener, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", ns, self, "-bare-listener")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var count atomic.Int64
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if v, err := strconv.ParseInt(s.Text(), 10, 64); err == nil {
				count.Store(v)
			}
		}
	}()
	return &listener{cmd: cmd, stop: stopper(cmd, nil), count: func() (int64, int64) { return count.Load(), -1 }}, nil
}

// bareListener binds group 5 as the exporter does (copy range 128, 64 KiB
// batches, queue threshold 1024, flush every 100 ms, sequence numbers, a
// 64 MiB buffer, NETLINK_NO_ENOBUFS), receives with recvfrom into a 256 KiB
// buffer and counts packet messages, printing the count every 100 ms when
// it changed. This is the floor any listener of these messages pays.
func bareListener() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1); err != nil {
		return err
	}
	b := make([]byte, 0, 128)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, 4<<8|1) // NFULNL_MSG_CONFIG
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint64(b, 1) // seq, portid
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, group)
	attr := func(typ uint16, v []byte) {
		b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	attr(1, []byte{1})                  // NFULA_CFG_CMD: bind
	attr(2, []byte{0, 0, 0, 128, 2, 0}) // NFULA_CFG_MODE: copy packet, range 128
	attr(3, []byte{0, 1, 0, 0})         // NFULA_CFG_NLBUFSIZ: 64 KiB
	attr(4, []byte{0, 0, 0, 10})        // NFULA_CFG_TIMEOUT: 100 ms
	attr(5, []byte{0, 0, 4, 0})         // NFULA_CFG_QTHRESH: 1024
	attr(6, []byte{0, 3})               // NFULA_CFG_FLAGS: SEQ, SEQ_GLOBAL
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	var count atomic.Int64
	go func() {
		var printed int64 = -1
		w := bufio.NewWriter(os.Stdout)
		for range time.Tick(100 * time.Millisecond) {
			if c := count.Load(); c != printed {
				fmt.Fprintln(w, c)
				w.Flush()
				printed = c
			}
		}
	}()
	buf := make([]byte, 256<<10)
	for {
		k, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
		if errno == unix.EINTR || errno == unix.ENOBUFS {
			continue
		}
		if errno != 0 {
			return errno
		}
		var c int64
		for d := buf[:k]; len(d) >= 16; {
			l := int(binary.NativeEndian.Uint32(d))
			if l < 16 || l > len(d) {
				break
			}
			if binary.NativeEndian.Uint16(d[4:]) == 4<<8 {
				c++
			}
			d = d[min((l+3)&^3, len(d)):]
		}
		count.Add(c)
	}
}

func startUlogd(ns, dir string) (*listener, error) {
	logFile := filepath.Join(dir, "packets.log")
	conf := filepath.Join(dir, "ulogd.conf")
	plugins := "/usr/lib/x86_64-linux-gnu/ulogd"
	cfg := fmt.Sprintf(`[global]
logfile="%[1]s/ulogd.log"
loglevel=5
plugin="%[2]s/ulogd_inppkt_NFLOG.so"
plugin="%[2]s/ulogd_raw2packet_BASE.so"
plugin="%[2]s/ulogd_filter_IFINDEX.so"
plugin="%[2]s/ulogd_filter_IP2STR.so"
plugin="%[2]s/ulogd_filter_PRINTPKT.so"
plugin="%[2]s/ulogd_output_LOGEMU.so"
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU

[log1]
group=%[4]d
netlink_socket_buffer_size=67108864
netlink_socket_buffer_maxsize=134217728

[emu1]
file="%[3]s"
sync=0
`, dir, plugins, logFile, group)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(logFile, nil, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "ulogd", "-c", conf)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f, err := os.Open(logFile)
	if err != nil {
		return nil, err
	}
	var lines atomic.Int64
	stop := make(chan struct{})
	go func() {
		buf := make([]byte, 1<<20)
		for {
			select {
			case <-stop:
				return
			default:
			}
			k, err := f.Read(buf)
			lines.Add(int64(strings.Count(string(buf[:k]), "\n")))
			if err == io.EOF {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	var once sync.Once
	stopUlogd := stopper(cmd, nil)
	l := &listener{cmd: cmd, count: func() (int64, int64) { return lines.Load(), -1 }}
	l.stop = func() { once.Do(func() { stopUlogd(); close(stop); f.Close() }) }
	l.final = func() int64 {
		b, _ := os.ReadFile(logFile)
		return int64(strings.Count(string(b), "\n"))
	}
	return l, nil
}
