package pgstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys/store"
)

// A schema at migration 13, with a key and its idempotency entry,
// migrates to 14: the entry reads back naming its key and is still
// deleted with it; an entry names exactly one owner.
func TestMigration14KeepsEntries(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	s, err := New(pool, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	created := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	scope := store.Digest{1, 2, 3}
	if err := s.migrateTo(ctx, 13); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.sql(`INSERT INTO {{schema}}.api_keys (id, account_id, name, prefix, environment, digest, created_at, version)
VALUES ('key_old', 'acct_old', 'old', 'txc_live_ab', 'live', $1, now(), 1)`), make([]byte, 32)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, s.sql(`INSERT INTO {{schema}}.api_key_idempotency (scope, fingerprint, key_id, sealed, created_at, expires_at)
VALUES ($1, $2, 'key_old', 'sealed', $3, $4)`), scope[:], make([]byte, 32), created, created.Add(24*time.Hour))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := s.LookupIdempotency(ctx, scope, created); err != nil || e.KeyID != "key_old" || string(e.Sealed) != "sealed" {
		t.Fatalf("the key's entry after migration 14: %+v, %v", e, err)
	}
	for _, owners := range [][2]any{{nil, nil}, {"key_old", "we_x"}} {
		_, err := pool.Exec(ctx, s.sql(`INSERT INTO {{schema}}.api_key_idempotency (scope, fingerprint, key_id, endpoint_id, sealed, created_at, expires_at)
VALUES ($1, $1, $2, $3, 'x', now(), now())`), make([]byte, 32), owners[0], owners[1])
		if err == nil || !strings.Contains(err.Error(), "api_key_idempotency_one_owner") {
			t.Fatalf("an entry owned by %v: %v, want the check's refusal", owners, err)
		}
	}
	if _, err := pool.Exec(ctx, s.sql(`DELETE FROM {{schema}}.api_keys WHERE id = 'key_old'`)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, s.sql(`SELECT count(*) FROM {{schema}}.api_key_idempotency`)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d entries left after their key was deleted (%v)", n, err)
	}
}
