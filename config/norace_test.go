//go:build !race

package config

// raceEnabled says the tests run with the race detector, whose memory and
// slowness the bounds of TestParseBombsBoundedMemory allow for.
const raceEnabled = false
