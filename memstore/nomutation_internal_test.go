//go:build !mutation

package memstore

const mutation = false
