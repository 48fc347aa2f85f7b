// Package deadline bounds netlink requests by a timeout and a context.
package deadline
