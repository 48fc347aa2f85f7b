package nftables

import "errors"

// The package's sentinel errors, wrapped with the details (%w) and checked
// with errors.Is.
var (
	// errClosed is a request on a Conn that was closed.
	errClosed = errors.New("nf_tables connection is closed")
	// errInterrupted is a dump the kernel flagged as inconsistent
	// (NLM_F_DUMP_INTR): the ruleset changed while it was read.
	errInterrupted = errors.New("nf_tables dump interrupted: the ruleset changed while it was read")
	// errUnexpected is a message of a type the answer cannot hold, or an
	// acknowledgement where a dump was asked for.
	errUnexpected = errors.New("unexpected nf_tables message")

	// errTruncated is a netlink message shorter than its headers say.
	errTruncated = errors.New("truncated netlink message")
	// errAttribute is an nf_tables attribute that does not decode.
	errAttribute = errors.New("malformed nf_tables attribute")
	// errIncomplete is an object or a rule without an attribute it needs
	// (a type, table, name, chain, handle or data).
	errIncomplete = errors.New("nf_tables message lacks a required attribute")
)
