//go:build mutation

package pgstore_test

// See ../mutation_test.go.
const mutation = true
