package store_test

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// counting is a Store that wraps another to count its lookups: the six
// methods of the contract come from the wrapped store, and Unwrap lets the
// Manager find the wrapped store's optional capabilities (usage, credits,
// import), which the wrapper does not implement itself.
type counting struct {
	store.Store
	lookups atomic.Int64
}

func (c *counting) LookupDigest(ctx context.Context, d store.Digest) (*store.Record, error) {
	c.lookups.Add(1)
	return c.Store.LookupDigest(ctx, d)
}

func (c *counting) Unwrap() store.Store { return c.Store }

// Write a store: here, a wrapper around another. A store of your own
// passes storetest.Run, which checks every rule of the contract.
func Example() {
	ctx := context.Background()
	s := &counting{Store: memstore.New()}
	_, keepsUsage := store.Capability[store.UsageStore](s)
	fmt.Println("keeps usage through the wrapper:", keepsUsage)

	m, _ := keys.New(s)
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1"})
	for range 3 {
		_, _ = m.Verify(ctx, string(k.Key))
	}
	_, _ = m.Verify(ctx, "txc_live_malformed") // refused before any lookup
	fmt.Println("lookups:", s.lookups.Load())
	// Output:
	// keeps usage through the wrapper: true
	// lookups: 3
}
