//go:build !mutation

package keys_test

const mutation = false
