//go:build !race

package e2e

// raceEnabled says the tests run with the race detector (go test -race);
// TestMain then builds the exporter with it too.
const raceEnabled = false
