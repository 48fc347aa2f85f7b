package ctnl

import (
	"context"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
	"github.com/netfilter-exporter/netfilter_exporter/internal/nlconn"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Message types and attributes of the conntrack statistics requests.
const (
	msgCTGetStatsCPU = 4 // IPCTNL_MSG_CT_GET_STATS_CPU
	msgCTGetStats    = 5 // IPCTNL_MSG_CT_GET_STATS

	ctaStatsFound         = 2
	ctaStatsInvalid       = 4
	ctaStatsInsert        = 8
	ctaStatsInsertFailed  = 9
	ctaStatsDrop          = 10
	ctaStatsEarlyDrop     = 11
	ctaStatsError         = 12
	ctaStatsSearchRestart = 13
	ctaStatsClashResolve  = 14
	ctaStatsChainTooLong  = 15

	ctaStatsGlobalEntries    = 1
	ctaStatsGlobalMaxEntries = 2
)

// TableStats are the conntrack table's statistics, the per-CPU counters
// summed.
type TableStats struct {
	// Entries and MaxEntries are the table's size and limit.
	Entries, MaxEntries uint32
	// CPUs is how many per-CPU records were summed.
	CPUs int
	// The per-CPU counters, summed; all only ever grow.
	Found, Invalid, Insert, InsertFailed, Drop, EarlyDrop, Error, SearchRestart, ClashResolve, ChainTooLong uint64
}

// Conn makes conntrack requests. It is safe for concurrent use; requests
// are serialised.
type Conn struct {
	sock *nlconn.Conn[*netlink.Conn]
}

// Config says where a Conn talks and how long it waits.
type Config struct {
	// NetNS is an open file descriptor of the network namespace to talk to,
	// which must stay open as long as the Conn: it may dial again. Zero
	// means the caller's namespace.
	NetNS int
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout bounds a request when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Dial opens a Conn as cfg says (nil: the caller's namespace, the default
// timeout).
func Dial(cfg *Config) (*Conn, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	fd := cfg.NetNS
	return newConn(func() (*netlink.Conn, error) {
		return netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	}, timeout)
}

// newConn returns a Conn whose sockets dial opens.
func newConn(dial func() (*netlink.Conn, error), timeout time.Duration) (*Conn, error) {
	sock, err := nlconn.New(func() (*netlink.Conn, error) {
		nc, err := dial()
		if err != nil {
			return nil, fmt.Errorf("opening conntrack netlink socket: %w", netns.CapabilityHint(err, "CAP_NET_ADMIN"))
		}
		return nc, nil
	}, timeout, errClosed)
	if err != nil {
		return nil, err
	}
	return &Conn{sock: sock}, nil
}

// Close closes the Conn. It may be called more than once.
func (c *Conn) Close() error {
	return c.sock.Close()
}

// TableStats reads the table's global and per-CPU statistics.
func (c *Conn) TableStats(ctx context.Context) (TableStats, error) {
	var s TableStats
	// The kernel marks this single answer multi-part and sends no DONE;
	// asking for an acknowledgement as well ends the reply.
	global, err := c.query(ctx, msgCTGetStats, netlink.Request|netlink.Dump|netlink.Acknowledge)
	if err != nil {
		return s, fmt.Errorf("reading conntrack table statistics: %w", err)
	}
	for _, m := range global {
		if uint16(m.Header.Type)>>8 != subsysCT {
			continue // the acknowledgement
		}
		err := eachBE32(m.Data, func(typ uint16, v uint32) {
			switch typ {
			case ctaStatsGlobalEntries:
				s.Entries = v
			case ctaStatsGlobalMaxEntries:
				s.MaxEntries = v
			}
		})
		if err != nil {
			return s, err
		}
	}

	cpus, err := c.query(ctx, msgCTGetStatsCPU, netlink.Request|netlink.Dump)
	if err != nil {
		return s, fmt.Errorf("reading conntrack per-CPU statistics: %w", err)
	}
	for _, m := range cpus {
		if uint16(m.Header.Type)>>8 != subsysCT {
			continue
		}
		s.CPUs++
		err := eachBE32(m.Data, func(typ uint16, v uint32) {
			var dst *uint64
			switch typ {
			case ctaStatsFound:
				dst = &s.Found
			case ctaStatsInvalid:
				dst = &s.Invalid
			case ctaStatsInsert:
				dst = &s.Insert
			case ctaStatsInsertFailed:
				dst = &s.InsertFailed
			case ctaStatsDrop:
				dst = &s.Drop
			case ctaStatsEarlyDrop:
				dst = &s.EarlyDrop
			case ctaStatsError:
				dst = &s.Error
			case ctaStatsSearchRestart:
				dst = &s.SearchRestart
			case ctaStatsClashResolve:
				dst = &s.ClashResolve
			case ctaStatsChainTooLong:
				dst = &s.ChainTooLong
			default:
				return
			}
			*dst += uint64(v)
		})
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

// eachBE32 calls fn with the type and value of every attribute of an
// nfnetlink message payload whose attributes all hold a 32-bit value, as
// the statistics replies do.
func eachBE32(data []byte, fn func(typ uint16, v uint32)) error {
	if len(data) < nlwire.NfgenLen {
		return errTruncated
	}
	for b := data[nlwire.NfgenLen:]; len(b) > 0; {
		typ, val, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		v, err := be32(val)
		if err != nil {
			return err
		}
		fn(typ, v)
	}
	return nil
}

// query sends one request and returns the answer, bounded by the Conn's
// timeout and ctx. After a failure the socket is dropped, so that what the
// kernel still sends for this request never reaches the next one.
func (c *Conn) query(ctx context.Context, typ netfilter.MessageType, flags netlink.HeaderFlags) ([]netlink.Message, error) {
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: typ,
		Family:      netfilter.ProtoUnspec,
		Flags:       flags,
	}, nil)
	if err != nil {
		return nil, err
	}
	var msgs []netlink.Message
	err = c.sock.Do(ctx, func(nc *netlink.Conn) error {
		msgs, err = nc.Execute(req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return msgs, nil
}
