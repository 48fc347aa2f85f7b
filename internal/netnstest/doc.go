// Package netnstest gives tests their own network namespaces, veth links
// between them and real traffic, so that they exercise the real kernel
// without touching the host's own netfilter state.
//
// Tests that use it need root. They are skipped when not run as root, unless
// the environment variable NETFILTER_EXPORTER_KERNEL_TESTS is "required"
// (as `make test` sets it), in which case they fail instead, so that CI can
// never pass by skipping them.
package netnstest
