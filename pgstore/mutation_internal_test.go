//go:build mutation

package pgstore

// See ../mutation_test.go.
const mutation = true
