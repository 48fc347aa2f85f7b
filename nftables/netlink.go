package nftables

import (
	"encoding/binary"
	"fmt"

	"github.com/netfilter-exporter/netfilter_exporter/internal/nlwire"
)

// subsysNftables is NFNL_SUBSYS_NFTABLES.
const subsysNftables = 10

// Message types of nf_tables (enum nf_tables_msg_types). The reset variants
// (NFT_MSG_GETOBJ_RESET, NFT_MSG_GETRULE_RESET) are deliberately absent.
const (
	msgNewRule = 6  // NFT_MSG_NEWRULE: a rule, as dumps answer
	msgGetRule = 7  // NFT_MSG_GETRULE
	msgNewObj  = 18 // NFT_MSG_NEWOBJ: an object, as dumps answer
	msgGetObj  = 19 // NFT_MSG_GETOBJ
)

// nextMessage splits the first netlink message off b. It returns the rest of
// the buffer.
func nextMessage(b []byte) (nlwire.Message, []byte, error) {
	m, rest, ok := nlwire.NextMessage(b)
	if !ok {
		return m, nil, fmt.Errorf("%w: %s", errTruncated, nlwire.Problem(b))
	}
	return m, rest, nil
}

// attrError describes the malformed attribute at the start of b.
func attrError(b []byte) error {
	return fmt.Errorf("%w: %s", errAttribute, nlwire.AttrProblem(b))
}

func be32(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("%w: %d bytes for a 32-bit value", errAttribute, len(b))
	}
	return binary.BigEndian.Uint32(b), nil
}

func be64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: %d bytes for a 64-bit value", errAttribute, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// interner hands out one string per distinct name, so that the table and
// chain names shared by thousands of objects are allocated once per dump.
type interner map[string]string

func (in interner) get(b []byte) string {
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	in[s] = s
	return s
}
