// Package proc reads a process's processor time and memory from /proc, for
// the benchmarks and load tools that measure the exporter from outside.
package proc
