package flow

import "errors"

// The package's sentinel errors, wrapped with the details (%w) and checked
// with errors.Is.
var (
	// Configuration.

	// errMaxSeries is a Config.MaxSeries below 1.
	errMaxSeries = errors.New("invalid series limit")
	// errSeriesTTL is a negative Config.SeriesTTL.
	errSeriesTTL = errors.New("invalid series TTL")
	// errProto is a protocol name or number ParseProto does not know.
	errProto = errors.New("unknown protocol")
	// errRule is a filter rule with an invalid prefix or port range.
	errRule = errors.New("invalid filter rule")
	// errTop is a top talkers setting out of range.
	errTop = errors.New("invalid top talkers setting")

	// Group-by keys.

	// errUnknownKey is a group-by key that names no field.
	errUnknownKey = errors.New("unknown group-by key")
	// errDuplicateKey is a group-by key given twice.
	errDuplicateKey = errors.New("duplicate group-by key")
	// errEmptyGroupBy is a group-by list without a key.
	errEmptyGroupBy = errors.New("empty group-by list")

	// Networks and ports.

	// errNetworkName is a network name that is empty or the name of the
	// catch-all network.
	errNetworkName = errors.New("invalid network name")
	// errPrefix is an invalid or IPv4-mapped IPv6 network prefix.
	errPrefix = errors.New("invalid prefix")
	// errDuplicatePrefix is a prefix given in two networks.
	errDuplicatePrefix = errors.New("prefix in two networks")
	// errTooManyNetworks is more networks than a series key can number.
	errTooManyNetworks = errors.New("too many networks")
	// errPortRange is a port range whose start is above its end.
	errPortRange = errors.New("invalid port range")
	// errPortOverlap is two port entries that overlap.
	errPortOverlap = errors.New("overlapping port entries")

	// errListenerStopped is returned for a listener that stopped without
	// an error before its context was done.
	errListenerStopped = errors.New("stopped receiving")
	// errEventFilter is a Reconfigure whose event filter the kernel
	// refused.
	errEventFilter = errors.New("replacing the kernel's event filter")
	// errNotOpen is returned by Run before Open has succeeded.
	errNotOpen = errors.New("conntrack accounting has no kernel clients: Open first")
)
