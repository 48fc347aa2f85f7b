package ctnl

import "errors"

// The package's sentinel errors, wrapped with the details (%w) and checked
// with errors.Is.
var (
	// errClosed is a request on a Conn that was closed.
	errClosed = errors.New("conntrack client is closed")
	// errListenerClosed is a Run or Stats of a Listener that was closed.
	errListenerClosed = errors.New("conntrack listener is closed")
	// errMethod is a ListenConfig.Method that names no receive method.
	errMethod = errors.New("unknown receive method")
	// errRingUnavailable is an io_uring receive ring that cannot be set
	// up here (an old kernel, or a seccomp profile that forbids it).
	errRingUnavailable = errors.New("io_uring receive ring unavailable")

	// errDumperClosed is a Dump or Lookup on a Dumper that was closed.
	errDumperClosed = errors.New("conntrack dumper is closed")
	// errDumpBusy is a Dump or Lookup called while another runs on the
	// same Dumper.
	errDumpBusy = errors.New("a dump or lookup is already running on this dumper")
	// errLookupTuple is a Lookup of a flow whose original tuple is neither
	// IPv4 nor IPv6.
	errLookupTuple = errors.New("lookup needs an IPv4 or IPv6 original tuple")

	// errTruncated is a netlink message shorter than its headers say.
	errTruncated = errors.New("truncated netlink message")
	// errAttribute is a conntrack attribute that does not decode.
	errAttribute = errors.New("malformed conntrack attribute")
	// errNoTuple is a conntrack event without an original tuple.
	errNoTuple = errors.New("conntrack event without an original tuple")
	// errBadFamily is an address family other than IPv4 and IPv6.
	errBadFamily = errors.New("unsupported address family")
	// errAddrLength is an address attribute whose length does not fit its
	// family.
	errAddrLength = errors.New("address of the wrong length")

	// errFilter is a filter rule that the kernel's event program cannot
	// take (EventFilter).
	errFilter = errors.New("conntrack filter rule the kernel program cannot take")

	// errSysctlValue is a sysctl that does not read as a number.
	errSysctlValue = errors.New("unexpected sysctl value")
)
