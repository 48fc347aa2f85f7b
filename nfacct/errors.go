package nfacct

import (
	"errors"
	"fmt"
)

// The package's sentinel errors, wrapped with the details (%w) and checked
// with errors.Is.
var (
	// errClosed is a request on a Conn that was closed.
	errClosed = errors.New("nfacct connection is closed")
	// errNoAck is an answer to the no-op request that sizes the dumps
	// (sizeDumps) that is not an acknowledgement.
	errNoAck = errors.New("no acknowledgement of a no-op request")

	// errNoName is an object, given or received, without a name.
	errNoName = errors.New("accounting object has no name")
	// errNameTooLong is an object name longer than MaxNameLen.
	errNameTooLong = fmt.Errorf("accounting object name is longer than %d bytes", MaxNameLen)
	// errBadMessage is an nfacct message that does not decode.
	errBadMessage = errors.New("malformed nfacct message")
	// errBadAttribute is an attribute of an nfacct message that does not
	// decode.
	errBadAttribute = errors.New("malformed attribute")
	// errBadQuota is a quota object to create whose flags give no unit,
	// or both.
	errBadQuota = errors.New("a quota object needs exactly one of packets or bytes as its unit")
	// errUnexpected is a message of another subsystem than nfnetlink_acct.
	errUnexpected = errors.New("unexpected message")
)
