//go:build race

package keys_test

// The race detector slows code by an order of magnitude: size tests run
// smaller under it, and in full in .ci/run's step without it.
const raceEnabled = true
