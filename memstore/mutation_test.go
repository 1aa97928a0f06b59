//go:build mutation

package memstore_test

// See ../mutation_test.go.
const mutation = true
