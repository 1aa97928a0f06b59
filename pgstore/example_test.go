package pgstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/pgstore"
)

// shareKeys is the example's code: instances sharing one database share
// keys, revocations, usage and credits. TestExample runs it when
// KEYS_TEST_POSTGRES is set.
func shareKeys(ctx context.Context, dsn, schema string) (string, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	s, err := pgstore.New(pool, pgstore.WithSchema(schema))
	if err != nil {
		return "", err
	}
	defer s.Close(ctx)
	if err := s.Migrate(ctx); err != nil { // idempotent; or apply the SQL of pgstore's README yourself
		return "", err
	}
	m, err := keys.New(s, keys.WithIdempotencySecret([]byte("the same 32-byte secret everywhere")))
	if err != nil {
		return "", err
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1"})
	if err != nil {
		return "", err
	}
	v, err := m.Verify(ctx, string(k.Key)) // on any instance of the same schema
	return v.AccountID, err
}

// Keys on PostgreSQL, shared by every instance. (It needs a server:
// TestExample runs this code when KEYS_TEST_POSTGRES is set.)
func Example() {
	account, err := shareKeys(context.Background(), os.Getenv("DATABASE_URL"), "txcloud_keys")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(account)
}

func TestExample(t *testing.T) {
	dsn := os.Getenv("KEYS_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set KEYS_TEST_POSTGRES (postgres://root@127.0.0.1:5432/test) to run the example's code")
	}
	schema := freshSchema(t, newPool(t))
	account, err := shareKeys(context.Background(), dsn, schema)
	if err != nil || account != "acct_1" {
		t.Fatalf("the example's code: %q, %v", account, err)
	}
}
