package nfacct

import (
	"context"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// Listener receives the kernel's over-quota notifications: the kernel sends
// one, with the object's state, when a quota object first passes its quota.
type Listener struct {
	c *netlink.Conn
}

// ListenOverQuota joins the NFNLGRP_ACCT_QUOTA multicast group in the
// namespace cfg names. cfg may be nil.
func ListenOverQuota(cfg *Config) (*Listener, error) {
	c, err := dial(cfg)
	if err != nil {
		return nil, err
	}
	return newListener(c)
}

// newListener joins the over-quota group on an open netlink connection,
// which it closes if that fails.
func newListener(c *netlink.Conn) (*Listener, error) {
	if err := c.JoinGroup(uint32(netfilter.GroupAcctQuota)); err != nil {
		c.Close()
		return nil, fmt.Errorf("joining the nfacct over-quota group: %w", err)
	}
	return &Listener{c: c}, nil
}

// Receive blocks until notifications arrive, ctx is done or the Listener is
// closed, and returns the objects that went over quota. Messages of other
// types are skipped.
func (l *Listener) Receive(ctx context.Context) ([]Object, error) {
	stop := context.AfterFunc(ctx, func() { _ = l.c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	msgs, err := l.c.Receive()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("receiving nfacct notifications: %w", err)
	}
	var objs []Object
	for _, m := range msgs {
		h, _, err := netfilter.DecodeNetlink(m)
		// The kernel sends its reports with message type NEW, not
		// OVERQUOTA; everything nfnetlink_acct sends to this group is one.
		if err != nil || h.SubsystemID != netfilter.NFSubsysAcct {
			continue
		}
		o, err := unmarshalObject(m)
		if err != nil {
			return objs, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// Close closes the Listener; a blocked Receive returns.
func (l *Listener) Close() error {
	return l.c.Close()
}
