//go:build !mutation

package memstore_test

const mutation = false
