// Package verifiedctx carries a verified caller in a context: the keys
// package's NewContext and FromContext, and the adapters, which read it
// without a copy and allocate it together with what else a request needs.
package verifiedctx

import "context"

type key struct{}

// Holder is a context carrying V, in one allocation with the context it
// wraps (context.WithValue and a pointer would take two).
type Holder[T any] struct {
	context.Context
	V T
}

// Value returns h for this package's key, and asks the parent otherwise.
func (h *Holder[T]) Value(k any) any {
	if k == (key{}) {
		return h
	}
	return h.Context.Value(k)
}

// Get returns the value a Holder[T] in ctx carries, or nil.
func Get[T any](ctx context.Context) *T {
	if h, ok := ctx.Value(key{}).(*Holder[T]); ok {
		return &h.V
	}
	return nil
}
