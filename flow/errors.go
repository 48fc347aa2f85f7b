package flow

import "errors"

var (
	// errListenerStopped is returned for a listener that stopped without
	// an error before its context was done.
	errListenerStopped = errors.New("stopped receiving")
	// errNotOpen is returned by Run before Open has succeeded.
	errNotOpen = errors.New("conntrack accounting has no kernel clients: Open first")
)
