//go:build race

package memstore

// See race_test.go.
const raceEnabled = true
