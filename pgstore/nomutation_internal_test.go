//go:build !mutation

package pgstore

const mutation = false
