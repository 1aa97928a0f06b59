//go:build race

package pgstore_test

// Size tests run smaller under the race detector, in full in .ci/run's
// step without it.
const raceEnabled = true
