package nftables

import (
	"context"
	"fmt"
	"strconv"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// Family is the address family of a table (NFPROTO_*).
type Family uint8

// The families nf_tables tables belong to.
const (
	FamilyINet   Family = 1  // NFPROTO_INET: inet
	FamilyIPv4   Family = 2  // NFPROTO_IPV4: ip
	FamilyARP    Family = 3  // NFPROTO_ARP: arp
	FamilyNetdev Family = 5  // NFPROTO_NETDEV: netdev
	FamilyBridge Family = 7  // NFPROTO_BRIDGE: bridge
	FamilyIPv6   Family = 10 // NFPROTO_IPV6: ip6
)

// String returns the family's name as nft(8) writes it: ip, ip6, inet, arp,
// bridge or netdev; another value is written in decimal.
func (f Family) String() string {
	switch f {
	case FamilyINet:
		return "inet"
	case FamilyIPv4:
		return "ip"
	case FamilyARP:
		return "arp"
	case FamilyNetdev:
		return "netdev"
	case FamilyBridge:
		return "bridge"
	case FamilyIPv6:
		return "ip6"
	}
	return strconv.Itoa(int(f))
}

// Attributes of an object (enum nft_object_attributes) and its types.
const (
	objTable = 1 // NFTA_OBJ_TABLE
	objName  = 2 // NFTA_OBJ_NAME
	objType  = 3 // NFTA_OBJ_TYPE
	objData  = 4 // NFTA_OBJ_DATA

	objectCounter = 1 // NFT_OBJECT_COUNTER
	objectQuota   = 2 // NFT_OBJECT_QUOTA

	counterBytes   = 1 // NFTA_COUNTER_BYTES
	counterPackets = 2 // NFTA_COUNTER_PACKETS

	quotaBytes    = 1 // NFTA_QUOTA_BYTES
	quotaFlags    = 2 // NFTA_QUOTA_FLAGS
	quotaConsumed = 4 // NFTA_QUOTA_CONSUMED

	quotaFlagInv      = 1 // NFT_QUOTA_F_INV: "quota over"
	quotaFlagDepleted = 2 // NFT_QUOTA_F_DEPLETED
)

// Counter is a named counter (`counter NAME { }` in nft), which rules
// update with `counter name NAME`.
type Counter struct {
	Family Family
	Table  string
	Name   string
	// Packets and Bytes are the kernel's cumulative counts.
	Packets, Bytes uint64
}

// Quota is a named quota (`quota NAME { over|until N bytes }`), which rules
// use with `quota name NAME`.
type Quota struct {
	Family Family
	Table  string
	Name   string
	// Limit is the quota, in bytes.
	Limit uint64
	// Used is how many bytes the quota has consumed. The kernel never
	// reports more than Limit.
	Used uint64
	// Over tells the quota's mode: true for `quota over N`, whose rules
	// match only once N bytes have passed; false for `quota until N` (the
	// default), whose rules match until then.
	Over bool
	// Exhausted is true once Used reached Limit (NFT_QUOTA_F_DEPLETED):
	// from then on an `until` quota no longer matches, and an `over`
	// quota matches.
	Exhausted bool
}

// Mode returns "over" or "until", as nft(8) writes a quota's mode.
func (q Quota) Mode() string {
	if q.Over {
		return "over"
	}
	return "until"
}

// Objects are the named counters and quotas of every table, in the order
// the kernel dumps them (by family and table, then by creation).
type Objects struct {
	Counters []Counter
	Quotas   []Quota
}

// Objects dumps the named counters and quotas of every table of every
// family. It never resets them. Other types of objects are skipped.
func (c *Conn) Objects(ctx context.Context) (Objects, error) {
	var objs Objects
	var names interner
	err := c.dump(ctx, msgGetObj, msgNewObj, func() {
		objs = Objects{
			Counters: make([]Counter, 0, c.lastCounters.Load()),
			Quotas:   make([]Quota, 0, c.lastQuotas.Load()),
		}
		names = make(interner)
	}, func(f Family, attrs []byte) error {
		return objs.decode(f, attrs, names)
	})
	if err != nil {
		return Objects{}, fmt.Errorf("dumping nf_tables objects: %w", err)
	}
	c.lastCounters.Store(int64(len(objs.Counters)))
	c.lastQuotas.Store(int64(len(objs.Quotas)))
	return objs, nil
}

// decode adds the object the attributes of one NFT_MSG_NEWOBJ message
// describe, if it is a counter or a quota.
func (o *Objects) decode(f Family, b []byte, names interner) error {
	var (
		table, name, data []byte
		typ               uint32
		haveType          bool
	)
	for len(b) > 0 {
		t, v, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		switch t {
		case objTable:
			table = nlwire.CString(v)
		case objName:
			name = nlwire.CString(v)
		case objType:
			var err error
			if typ, err = be32(v); err != nil {
				return fmt.Errorf("object type: %w", err)
			}
			haveType = true
		case objData:
			data = v
		}
	}
	if !haveType {
		return fmt.Errorf("%w: object without a type", errIncomplete)
	}
	if typ != objectCounter && typ != objectQuota {
		return nil
	}
	if table == nil || name == nil || data == nil {
		return fmt.Errorf("%w: %s object %q of table %q has no table, name or data", errIncomplete, f, name, table)
	}
	switch typ {
	case objectCounter:
		cnt := Counter{Family: f, Table: names.get(table), Name: string(name)}
		if err := decodeCounter(data, &cnt.Packets, &cnt.Bytes); err != nil {
			return fmt.Errorf("counter %q of %s table %q: %w", name, f, table, err)
		}
		o.Counters = append(o.Counters, cnt)
	case objectQuota:
		q := Quota{Family: f, Table: names.get(table), Name: string(name)}
		if err := decodeQuota(data, &q); err != nil {
			return fmt.Errorf("quota %q of %s table %q: %w", name, f, table, err)
		}
		o.Quotas = append(o.Quotas, q)
	}
	return nil
}

// decodeCounter decodes the attributes of a counter (NFTA_COUNTER_*), the
// same in a named counter and in a rule's counter expression.
func decodeCounter(b []byte, pkts, bytes *uint64) error {
	var havePkts, haveBytes bool
	for len(b) > 0 {
		t, v, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		var err error
		switch t {
		case counterPackets:
			*pkts, err = be64(v)
			havePkts = true
		case counterBytes:
			*bytes, err = be64(v)
			haveBytes = true
		}
		if err != nil {
			return err
		}
	}
	if !havePkts || !haveBytes {
		return fmt.Errorf("%w: counter without packets or bytes", errIncomplete)
	}
	return nil
}

// decodeQuota decodes the attributes of a quota (NFTA_QUOTA_*).
func decodeQuota(b []byte, q *Quota) error {
	var haveLimit bool
	var flags uint32
	for len(b) > 0 {
		t, v, rest, ok := nlwire.NextAttr(b)
		if !ok {
			return attrError(b)
		}
		b = rest
		var err error
		switch t {
		case quotaBytes:
			q.Limit, err = be64(v)
			haveLimit = true
		case quotaConsumed:
			q.Used, err = be64(v)
		case quotaFlags:
			flags, err = be32(v)
		}
		if err != nil {
			return err
		}
	}
	if !haveLimit {
		return fmt.Errorf("%w: quota without a limit", errIncomplete)
	}
	q.Over = flags&quotaFlagInv != 0
	q.Exhausted = flags&quotaFlagDepleted != 0 || q.Used >= q.Limit
	return nil
}
