//go:build !mutation

package pgstore_test

const mutation = false
