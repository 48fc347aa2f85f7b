// Package task runs the exporter's background work: every piece of it is a
// Func, a function of a context that returns when the context is done or
// when it fails, started and stopped together by a Group.
package task
