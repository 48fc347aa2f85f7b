package nfacct

import (
	"fmt"
	"strings"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
)

// Message types of the nfnetlink_acct subsystem (enum nfnl_acct_msg_types).
const (
	msgNew netfilter.MessageType = 0 // NFNL_MSG_ACCT_NEW
	msgGet netfilter.MessageType = 1 // NFNL_MSG_ACCT_GET
	msgDel netfilter.MessageType = 3 // NFNL_MSG_ACCT_DEL
)

// Attribute types of an accounting object (enum nfnl_acct_type).
const (
	attrName  = 1 // NFACCT_NAME, NUL-terminated string
	attrPkts  = 2 // NFACCT_PKTS, u64
	attrBytes = 3 // NFACCT_BYTES, u64
	attrUse   = 4 // NFACCT_USE, u32
	attrFlags = 5 // NFACCT_FLAGS, u32
	attrQuota = 6 // NFACCT_QUOTA, u64
)

// MaxNameLen is the longest object name the kernel accepts, in bytes
// (NFACCT_NAME_MAX less the terminating NUL).
const MaxNameLen = 31

// Flags are the flags of an accounting object (enum nfnl_acct_flags).
type Flags uint32

// The flags an accounting object can carry.
const (
	// FlagQuotaPackets marks a quota counted in packets.
	FlagQuotaPackets Flags = 1 << 0
	// FlagQuotaBytes marks a quota counted in bytes.
	FlagQuotaBytes Flags = 1 << 1
	// FlagOverQuota is set by the kernel once the counter passed the quota.
	FlagOverQuota Flags = 1 << 2
)

// Object is one nfnetlink_acct accounting object.
type Object struct {
	// Name identifies the object; iptables rules refer to it.
	Name string
	// Packets and Bytes are the kernel's cumulative counters.
	Packets uint64
	Bytes   uint64
	// Use is the kernel's reference count: one for the object itself plus
	// one per rule that uses it.
	Use uint32
	// Flags tells whether the object has a quota, its unit, and whether it
	// is over quota.
	Flags Flags
	// Quota is the limit of a quota object, in the unit its flags name.
	Quota uint64
}

// HasQuota reports whether o is a quota object.
func (o Object) HasQuota() bool {
	return o.Flags&(FlagQuotaPackets|FlagQuotaBytes) != 0
}

// OverQuota reports whether the kernel marked o as over its quota.
func (o Object) OverQuota() bool {
	return o.Flags&FlagOverQuota != 0
}

// QuotaUnit returns "packets" or "bytes" for a quota object, "" otherwise.
func (o Object) QuotaUnit() string {
	switch {
	case o.Flags&FlagQuotaPackets != 0:
		return "packets"
	case o.Flags&FlagQuotaBytes != 0:
		return "bytes"
	}
	return ""
}

// validateName checks that name is acceptable to the kernel.
func validateName(name string) error {
	if name == "" {
		return errNoName
	}
	if len(name) > MaxNameLen || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: %q", errNameTooLong, name)
	}
	return nil
}

// unmarshalObject decodes one accounting object from a netlink message.
func unmarshalObject(msg netlink.Message) (Object, error) {
	var o Object
	h, ad, err := netfilter.DecodeNetlink(msg)
	if err != nil {
		return o, fmt.Errorf("%w: %w", errBadMessage, err)
	}
	if h.SubsystemID != netfilter.NFSubsysAcct {
		return o, fmt.Errorf("%w: subsystem %d, want nfnetlink_acct", errUnexpected, h.SubsystemID)
	}
	for ad.Next() {
		switch ad.Type() {
		case attrName:
			o.Name = strings.TrimRight(ad.String(), "\x00")
		case attrPkts:
			o.Packets = ad.Uint64()
		case attrBytes:
			o.Bytes = ad.Uint64()
		case attrUse:
			o.Use = ad.Uint32()
		case attrFlags:
			o.Flags = Flags(ad.Uint32())
		case attrQuota:
			o.Quota = ad.Uint64()
		}
	}
	if err := ad.Err(); err != nil {
		return o, fmt.Errorf("%w in nfacct message: %w", errBadAttribute, err)
	}
	if o.Name == "" {
		return o, errNoName
	}
	return o, nil
}

// marshalObject encodes o as the attributes of a NEW request.
func marshalObject(o Object) ([]netfilter.Attribute, error) {
	if err := validateName(o.Name); err != nil {
		return nil, err
	}
	attrs := []netfilter.Attribute{{Type: attrName, Data: append([]byte(o.Name), 0)}}
	if o.Packets != 0 {
		a := netfilter.Attribute{Type: attrPkts}
		a.PutUint64(o.Packets)
		attrs = append(attrs, a)
	}
	if o.Bytes != 0 {
		a := netfilter.Attribute{Type: attrBytes}
		a.PutUint64(o.Bytes)
		attrs = append(attrs, a)
	}
	quota := o.Flags & (FlagQuotaPackets | FlagQuotaBytes)
	switch {
	case quota == 0:
	case quota == FlagQuotaPackets|FlagQuotaBytes || o.Flags&FlagOverQuota != 0:
		return nil, fmt.Errorf("%w: object %q has flags %#x", errBadQuota, o.Name, uint32(o.Flags))
	default:
		f := netfilter.Attribute{Type: attrFlags}
		f.PutUint32(uint32(quota))
		q := netfilter.Attribute{Type: attrQuota}
		q.PutUint64(o.Quota)
		attrs = append(attrs, f, q)
	}
	return attrs, nil
}
