package memstore_test

import (
	"context"
	"fmt"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

// The in-memory store: for tests, demos and a single instance. Keys, usage
// and credits live as long as the process.
func ExampleNew() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Test, AccountID: "acct_1"})
	v, err := m.Verify(ctx, string(k.Key))
	fmt.Println(v.AccountID, v.Environment, err)
	// Output:
	// acct_1 test <nil>
}
