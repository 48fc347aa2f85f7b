package ctnl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Request flags and message types of table dumps and lookups.
const (
	msgCTGet      = 1 // IPCTNL_MSG_CT_GET
	nlmFRequest   = 0x1
	nlmFAck       = 0x4
	nlmFDump      = 0x300 // NLM_F_ROOT | NLM_F_MATCH
	nfnetlinkV0   = 0
	ctaMarkMask   = 21
	ctaStatusMask = 26

	// DefaultDumpReadSize is the receive buffer of one dump read. The
	// kernel fills a dump message buffer up to the size of the reads it
	// sees (at most 32 KiB and a page at least), so larger reads mean
	// fewer system calls.
	DefaultDumpReadSize = 64 << 10

	// dumpPoll is the Dumper's socket receive timeout: how often a read
	// that waits for the kernel looks at its context.
	dumpPoll = 250 * time.Millisecond
)

// DumpFilter asks the kernel to leave out of a dump the entries that cannot
// match. The kernel filters by exact values only.
type DumpFilter struct {
	// Family is 4 or 6 to dump one address family, 0 for both.
	Family uint8
	// Mark, when HasMark, keeps the entries whose mark&MarkMask equals
	// Mark&MarkMask. A zero MarkMask stands for 0xffffffff.
	HasMark        bool
	Mark, MarkMask uint32
	// Zone, when HasZone, keeps the entries of that conntrack zone
	// (Linux 6.8 and later; older kernels ignore it).
	HasZone bool
	Zone    uint16
	// Status, when StatusMask is not 0, keeps the entries whose
	// status&StatusMask equals Status&StatusMask (Linux 5.15 and later).
	Status, StatusMask uint32
}

// DumpConfig configures a Dumper.
type DumpConfig struct {
	// NetNS is an open file descriptor of the network namespace whose table
	// is read; zero means the caller's namespace.
	NetNS int
	// ReadSize is the buffer of one read; DefaultDumpReadSize when 0. A
	// small one makes a dump slower, which tests use to widen races.
	ReadSize int
	// Timeout bounds each read: a dump fails when the kernel sends nothing
	// for that long. 5s when 0.
	Timeout time.Duration
	// Batch is how many entries fn receives at most per call; 256 when 0.
	Batch int
}

// DumpStats describe one dump.
type DumpStats struct {
	// Entries is the number of entries the kernel sent.
	Entries int
	// Bytes is the size of the netlink messages read.
	Bytes int
	// Duration is the wall time of the dump.
	Duration time.Duration
	// CPU is the processor time the dumping thread used, in the kernel
	// (walking the table and copying the entries out) and in user space
	// (decoding, and whatever fn does): the real cost of the dump.
	CPU time.Duration
	// Filtered tells whether the kernel marked its replies as filtered
	// (NLM_F_DUMP_FILTERED).
	Filtered bool
}

// Dumper reads the conntrack table over its own netlink socket: whole-table
// dumps, decoded without allocating, and lookups of single entries. Its
// methods must not be called concurrently; a call made while another runs
// fails.
type Dumper struct {
	sock    socket
	buf     []byte
	flows   []Flow
	batch   int
	timeout time.Duration
	seq     uint32
	busy    atomic.Bool
	closed  atomic.Bool
}

// DialDumper opens a Dumper in the namespace cfg names. cfg may be nil (the
// caller's namespace, the defaults).
func DialDumper(config *DumpConfig) (*Dumper, error) {
	var cfg DumpConfig
	if config != nil {
		cfg = *config
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	s, err := openDumpSocket(cfg.NetNS, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	return newDumper(cfg, s), nil
}

// newDumper makes a Dumper of cfg that reads from and writes to s.
func newDumper(cfg DumpConfig, s socket) *Dumper {
	d := &Dumper{sock: s, batch: cfg.Batch, timeout: cfg.Timeout}
	size := cfg.ReadSize
	if size <= 0 {
		size = DefaultDumpReadSize
	}
	d.buf = make([]byte, size)
	if d.batch <= 0 {
		d.batch = 256
	}
	if d.timeout <= 0 {
		d.timeout = 5 * time.Second
	}
	d.flows = make([]Flow, 0, d.batch)
	return d
}

// Close closes the socket. Call it when no dump or lookup runs.
func (d *Dumper) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	return d.sock.close()
}

// Dump reads the whole table, or what filter keeps of it, and calls fn with
// the decoded entries, a batch at a time; the slice is reused after fn
// returns. An error from fn stops the dump and is returned. The kernel does
// not take a snapshot: while the table changes, an entry may come twice or
// not at all.
//
// The dump runs on one locked OS thread, whose processor time DumpStats.CPU
// reports.
func (d *Dumper) Dump(ctx context.Context, filter DumpFilter, fn func([]Flow) error) (st DumpStats, err error) {
	if !d.busy.CompareAndSwap(false, true) {
		return st, errDumpBusy
	}
	defer d.busy.Store(false)
	if d.closed.Load() {
		return st, errDumperClosed
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, cpu0 := time.Now(), ThreadCPU()
	defer func() {
		st.Duration = time.Since(start)
		st.CPU = ThreadCPU() - cpu0
	}()

	seq, err := d.send(dumpRequest(d.nextSeq(), filter))
	if err != nil {
		return st, err
	}
	// A dump must be read to its end, or the socket's next answer is the
	// rest of it: on an early return the socket is drained first.
	done := false
	defer func() {
		if !done {
			d.drain(seq)
		}
	}()
	d.flows = d.flows[:0]
	for {
		n, err := d.read(ctx)
		if err != nil {
			return st, fmt.Errorf("dumping the conntrack table: %w", err)
		}
		st.Bytes += n
		if done, err = d.datagram(d.buf[:n], seq, &st, fn); done || err != nil {
			return st, err
		}
	}
}

// datagram decodes the entries of one datagram of the answer to dump
// request seq into d.flows, hands them to fn each time a batch is full,
// and counts them in st. done is true when the datagram ends the answer
// (DONE or an acknowledgement, after which fn has the last entries, or
// an error message); err
// is a datagram that does not split into messages, the error the kernel
// answered, or fn's. An entry that does not decode is skipped.
func (d *Dumper) datagram(b []byte, seq uint32, st *DumpStats, fn func([]Flow) error) (done bool, err error) {
	for len(b) > 0 {
		m, rest, err := nextMessage(b)
		if err != nil {
			return false, fmt.Errorf("dumping the conntrack table: %w", err)
		}
		b = rest
		if m.Seq != seq {
			continue // the end of an earlier, abandoned request
		}
		switch {
		case m.Type == nlwire.TypeDone || m.Type == nlwire.TypeError:
			if m.Type == nlwire.TypeError {
				if err := ackError(m.Payload); err != nil {
					return true, fmt.Errorf("dumping the conntrack table: %w", err)
				}
				// An acknowledgement, which the kernel does not send
				// for a dump request (it asks for none), ends the
				// answer as DONE does: the entries counted so far go
				// to fn.
			}
			if len(d.flows) > 0 {
				if err := fn(d.flows); err != nil {
					return true, err
				}
			}
			return true, nil
		case m.Type>>8 != subsysCT || m.Type&0xff != msgCTNew:
			continue
		}
		if m.Flags&nlmFDumpFiltered != 0 {
			st.Filtered = true
		}
		i := len(d.flows)
		d.flows = d.flows[:i+1]
		if err := decodeFlow(m.Payload, &d.flows[i]); err != nil {
			d.flows = d.flows[:i]
			continue
		}
		st.Entries++
		if len(d.flows) == cap(d.flows) {
			if err := fn(d.flows); err != nil {
				return false, err
			}
			d.flows = d.flows[:0]
		}
	}
	return false, nil
}

// nlmFDumpFiltered is NLM_F_DUMP_FILTERED.
const nlmFDumpFiltered = 0x20

// Lookup asks the kernel for the entry whose original tuple and zone are
// those of f. found is false when the table holds no such entry.
func (d *Dumper) Lookup(ctx context.Context, f *Flow) (entry Flow, found bool, err error) {
	if !d.busy.CompareAndSwap(false, true) {
		return entry, false, errDumpBusy
	}
	defer d.busy.Store(false)
	if d.closed.Load() {
		return entry, false, errDumperClosed
	}
	req, err := lookupRequest(d.nextSeq(), f)
	if err != nil {
		return entry, false, err
	}
	seq, err := d.send(req)
	if err != nil {
		return entry, false, err
	}
	for {
		n, err := d.read(ctx)
		if err != nil {
			return entry, false, fmt.Errorf("looking up a conntrack entry: %w", err)
		}
		for b := d.buf[:n]; len(b) > 0; {
			m, rest, err := nextMessage(b)
			if err != nil {
				return entry, false, fmt.Errorf("looking up a conntrack entry: %w", err)
			}
			b = rest
			if m.Seq != seq {
				continue
			}
			switch {
			case m.Type == nlwire.TypeError:
				err := ackError(m.Payload)
				switch {
				case errors.Is(err, unix.ENOENT):
					return entry, false, nil
				case err != nil:
					return entry, false, fmt.Errorf("looking up a conntrack entry: %w", err)
				}
				// The acknowledgement after the entry.
				return entry, found, nil
			case m.Type>>8 == subsysCT && m.Type&0xff == msgCTNew:
				if err := decodeFlow(m.Payload, &entry); err != nil {
					return entry, false, fmt.Errorf("looking up a conntrack entry: %w", err)
				}
				found = true
			}
		}
	}
}

func (d *Dumper) nextSeq() uint32 {
	d.seq++
	if d.seq == 0 {
		d.seq = 1
	}
	return d.seq
}

// send writes one request to the kernel and returns its sequence number.
func (d *Dumper) send(req []byte) (uint32, error) {
	if err := d.sock.sendto(req); err != nil {
		return 0, fmt.Errorf("sending a conntrack request: %w", withCapability(err))
	}
	return binary.NativeEndian.Uint32(req[8:]), nil
}

// read fills d.buf with the next datagram. It gives up after the Dumper's
// timeout without data, or when ctx is done.
func (d *Dumper) read(ctx context.Context) (int, error) {
	var waited time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, err := d.sock.recvfrom(d.buf)
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			waited += dumpPoll
			if waited >= d.timeout {
				return 0, fmt.Errorf("no answer from the kernel for %v: %w", d.timeout, err)
			}
			continue
		default:
			return 0, withCapability(err)
		}
	}
}

// drain reads and drops what is left of the answer to request seq, for at
// most the Dumper's timeout.
func (d *Dumper) drain(seq uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	for {
		n, err := d.read(ctx)
		if err != nil {
			return
		}
		for b := d.buf[:n]; len(b) > 0; {
			m, rest, err := nextMessage(b)
			if err != nil {
				return
			}
			b = rest
			if m.Seq == seq && (m.Type == nlwire.TypeDone || m.Type == nlwire.TypeError) {
				return
			}
		}
	}
}

// ackError returns the error an NLMSG_ERROR payload carries, nil for an
// acknowledgement.
func ackError(payload []byte) error {
	if len(payload) < 4 {
		return errTruncated
	}
	if code := int32(binary.NativeEndian.Uint32(payload)); code < 0 {
		return unix.Errno(-code)
	}
	return nil
}

// withCapability names the capability a permission error is about.
func withCapability(err error) error {
	return netns.CapabilityHint(err, "CAP_NET_ADMIN")
}

// ThreadCPU returns the processor time the calling OS thread has used.
func ThreadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// request is a netlink message under construction.
type request []byte

func newRequest(seq uint32, typ, flags uint16, family uint8) request {
	r := make(request, nlwire.HeaderLen+nlwire.NfgenLen, 128)
	binary.NativeEndian.PutUint16(r[4:], uint16(subsysCT)<<8|typ)
	binary.NativeEndian.PutUint16(r[6:], flags)
	binary.NativeEndian.PutUint32(r[8:], seq)
	r[nlwire.HeaderLen] = family
	r[nlwire.HeaderLen+1] = nfnetlinkV0
	return r
}

// attr appends an attribute holding v.
func (r request) attr(typ uint16, v []byte) request {
	var h [nlwire.AttrHeaderLen]byte
	binary.NativeEndian.PutUint16(h[:], uint16(nlwire.AttrHeaderLen+len(v)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	r = append(append(r, h[:]...), v...)
	for len(r)%4 != 0 {
		r = append(r, 0)
	}
	return r
}

// nest appends a nested attribute whose children fill adds.
func (r request) nest(typ uint16, fill func(request) request) request {
	start := len(r)
	r = r.attr(typ|unix.NLA_F_NESTED, nil)
	r = fill(r)
	binary.NativeEndian.PutUint16(r[start:], uint16(len(r)-start))
	return r
}

func (r request) u32(typ uint16, v uint32) request {
	return r.attr(typ, binary.BigEndian.AppendUint32(nil, v))
}

func (r request) u16(typ uint16, v uint16) request {
	return r.attr(typ, binary.BigEndian.AppendUint16(nil, v))
}

// done sets the message length.
func (r request) done() []byte {
	binary.NativeEndian.PutUint32(r, uint32(len(r)))
	return r
}

func familyByte(f uint8) uint8 {
	switch f {
	case 4:
		return afINET
	case 6:
		return afINET6
	}
	return unix.AF_UNSPEC
}

// dumpRequest builds a table dump request carrying filter.
func dumpRequest(seq uint32, filter DumpFilter) []byte {
	r := newRequest(seq, msgCTGet, nlmFRequest|nlmFDump, familyByte(filter.Family))
	if filter.HasMark {
		mask := filter.MarkMask
		if mask == 0 {
			mask = ^uint32(0)
		}
		// The kernel compares the masked mark with the value as given.
		r = r.u32(ctaMark, filter.Mark&mask).u32(ctaMarkMask, mask)
	}
	if filter.HasZone {
		r = r.u16(ctaZone, filter.Zone)
	}
	if filter.StatusMask != 0 {
		r = r.u32(ctaStatus, filter.Status&filter.StatusMask).u32(ctaStatusMask, filter.StatusMask)
	}
	return r.done()
}

// lookupRequest builds a request for the entry with f's original tuple and
// zone.
func lookupRequest(seq uint32, f *Flow) ([]byte, error) {
	src, dst := f.Orig.Src.Unmap(), f.Orig.Dst.Unmap()
	srcType, dstType := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	switch {
	case f.Family == 4 && src.Is4() && dst.Is4():
	case f.Family == 6 && f.Orig.Src.Is6() && f.Orig.Dst.Is6():
		src, dst = f.Orig.Src, f.Orig.Dst
		srcType, dstType = ctaIPv6Src, ctaIPv6Dst
	default:
		return nil, errLookupTuple
	}
	r := newRequest(seq, msgCTGet, nlmFRequest|nlmFAck, familyByte(f.Family))
	r = r.nest(ctaTupleOrig, func(r request) request {
		r = r.nest(ctaTupleIP, func(r request) request {
			return r.attr(srcType, src.AsSlice()).attr(dstType, dst.AsSlice())
		})
		return r.nest(ctaTupleProto, func(r request) request {
			r = r.attr(ctaProtoNum, []byte{f.Orig.Proto})
			switch p := f.Orig.Proto; {
			case hasPorts(p):
				r = r.u16(ctaProtoSrcPort, f.Orig.SPort).u16(ctaProtoDstPort, f.Orig.DPort)
			case p == 1: // icmp
				r = r.u16(ctaProtoICMPID, f.Orig.ICMPID).attr(ctaProtoICMPType, []byte{f.Orig.ICMPType}).attr(ctaProtoICMPCode, []byte{f.Orig.ICMPCode})
			case p == 58: // icmpv6
				r = r.u16(ctaProtoICMPv6ID, f.Orig.ICMPID).attr(ctaProtoICMPv6Typ, []byte{f.Orig.ICMPType}).attr(ctaProtoICMPv6Cod, []byte{f.Orig.ICMPCode})
			}
			return r
		})
	})
	if f.Zone != 0 {
		r = r.u16(ctaZone, f.Zone)
	}
	return r.done(), nil
}

// hasPorts reports whether the tuples of IP protocol p carry ports.
func hasPorts(p uint8) bool {
	switch p {
	case 6, 17, 33, 132, 136: // tcp, udp, dccp, sctp, udplite
		return true
	}
	return false
}
