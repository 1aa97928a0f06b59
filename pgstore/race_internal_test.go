//go:build race

package pgstore

// The race detector slows code by an order of magnitude, unevenly: latency
// bounds mean nothing under it. .ci/run runs the latency tests once without.
const raceEnabled = true
