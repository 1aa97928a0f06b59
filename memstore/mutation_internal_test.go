//go:build mutation

package memstore

// See ../mutation_test.go.
const mutation = true
