package ctnl

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/netfilter-exporter/netfilter_exporter/internal/deadline"
	"github.com/netfilter-exporter/netfilter_exporter/internal/netns"
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

// Client makes conntrack requests. It is safe for concurrent use; requests
// are serialised.
type Client struct {
	mu      sync.Mutex
	c       *netfilter.Conn
	timeout time.Duration
}

// Dial opens a Client in ns (nil: the caller's namespace). Each request is
// bounded by timeout.
func Dial(ns *netns.Handle, timeout time.Duration) (*Client, error) {
	c, err := netfilter.Dial(&netlink.Config{NetNS: ns.FD()})
	if err != nil {
		return nil, fmt.Errorf("opening conntrack netlink socket: %w", err)
	}
	return &Client{c: c, timeout: timeout}, nil
}

// Close closes the Client.
func (c *Client) Close() error {
	return c.c.Close()
}

// TableStats reads the table's global and per-CPU statistics.
func (c *Client) TableStats(ctx context.Context) (TableStats, error) {
	var s TableStats
	c.mu.Lock()
	defer c.mu.Unlock()

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
	if len(data) < nfgenHdrLen {
		return errTruncated
	}
	for b := data[nfgenHdrLen:]; len(b) > 0; {
		typ, val, rest, ok := nextAttr(b)
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

// query sends one request and returns the answer, bounded by the Client's
// timeout and ctx.
func (c *Client) query(ctx context.Context, typ netfilter.MessageType, flags netlink.HeaderFlags) ([]netlink.Message, error) {
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: typ,
		Family:      netfilter.ProtoUnspec,
		Flags:       flags,
	}, nil)
	if err != nil {
		return nil, err
	}
	stop, err := deadline.Bound(ctx, c.c, c.timeout)
	if err != nil {
		return nil, err
	}
	defer stop()
	return c.c.Query(req)
}
