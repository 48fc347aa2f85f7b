// Package e2e holds the tests and benchmarks of the built exporter: its
// TestMain builds the binary once, with the race detector when the tests run
// with it, and the tests start it against test network namespaces, real
// carbon and Prometheus, or run it on the repository's examples. It has no
// code of its own; see docs/development.md, Tests, for what each test needs.
package e2e
