// Package netnstest gives tests their own network namespaces, veth links
// between them and real traffic, so that they exercise the real kernel
// without touching the host's own netfilter state.
//
// Tests that use it need root and call Require first; tests that need only
// a tool (promtool, systemd-analyze) call RequireTools. Both skip when what
// they need is missing, unless the environment variable
// NETFILTER_EXPORTER_KERNEL_TESTS is "required" (as `make test` sets it), in
// which case they fail instead, so that CI can never pass by skipping them.
// Under go test -short (make unit) Require skips every kernel test.
package netnstest
