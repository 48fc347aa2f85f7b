package flow

import "errors"

// The package's sentinel errors, wrapped with the details (%w).
var (
	// Configuration.
	errMaxSeries = errors.New("invalid series limit")
	errSeriesTTL = errors.New("invalid series TTL")
	errProto     = errors.New("unknown protocol")
	errRule      = errors.New("invalid filter rule")
	errTop       = errors.New("invalid top talkers setting")

	// Group-by keys.
	errUnknownKey   = errors.New("unknown group-by key")
	errDuplicateKey = errors.New("duplicate group-by key")
	errEmptyGroupBy = errors.New("empty group-by list")

	// Networks and ports.
	errNetworkName     = errors.New("invalid network name")
	errPrefix          = errors.New("invalid prefix")
	errDuplicatePrefix = errors.New("prefix in two networks")
	errTooManyNetworks = errors.New("too many networks")
	errPortRange       = errors.New("invalid port range")
	errPortOverlap     = errors.New("overlapping port entries")

	// errListenerStopped is returned for a listener that stopped without
	// an error before its context was done.
	errListenerStopped = errors.New("stopped receiving")
	// errEventFilter is a Reconfigure whose event filter the kernel
	// refused.
	errEventFilter = errors.New("replacing the kernel's event filter")
	// errNotOpen is returned by Run before Open has succeeded.
	errNotOpen = errors.New("conntrack accounting has no kernel clients: Open first")
)
