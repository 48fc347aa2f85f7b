package nflog

import "errors"

// The package's sentinel errors, wrapped with the details (%w) and checked
// with errors.Is.
var (
	// errTruncated is an nflog message shorter than its headers.
	errTruncated = errors.New("truncated nflog message")
	// errAttribute is an attribute of an nflog packet that does not
	// decode.
	errAttribute = errors.New("malformed nflog attribute")
	// errNotPacket is a message of another type than NFULNL_MSG_PACKET.
	errNotPacket = errors.New("not an nflog packet message")
	// errNoGroups is a Listen without a group to bind.
	errNoGroups = errors.New("no nflog group to bind")
	// errGroupTwice is a Config that names a group twice.
	errGroupTwice = errors.New("nflog group given twice")
	// errGroupHeld is a group another socket (ulogd2, say) has bound.
	errGroupHeld = errors.New("nflog group is bound by another socket")
	// errClosed is a Run or Stats of a Listener that was closed.
	errClosed = errors.New("nflog listener is closed")
	// errNoAnswer is a configuration request nfnetlink_log did not
	// answer in time.
	errNoAnswer = errors.New("no answer from nfnetlink_log")
)
