package sqlitestore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/sqlitestore"
)

// Keys in one SQLite file outlive the process: a key made by one Manager
// verifies with the next, on the same file.
func ExampleOpen() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "keys-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keys.db")

	s, _ := sqlitestore.Open(ctx, path)
	m, _ := keys.New(s)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1"})
	_ = m.Close(ctx)
	_ = s.Close(ctx)

	s, _ = sqlitestore.Open(ctx, path) // a restart
	defer s.Close(ctx)
	m, _ = keys.New(s)
	defer m.Close(ctx)
	v, err := m.Verify(ctx, string(k.Key))
	fmt.Println(v.AccountID, err)
	// Output:
	// acct_1 <nil>
}
