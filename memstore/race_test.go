//go:build race

package memstore_test

// The race detector slows code by an order of magnitude, unevenly: timing
// bounds mean nothing under it. .ci/run runs the timing tests once without.
const raceEnabled = true
