package pgstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/pgstore"
	"github.com/txcloud/keys/store"
)

// A last-used flush of 100,000 keys holds no row lock for long: it updates
// in statements of 1,000 rows, so a revocation of a key in the batch waits
// for one chunk at most. (It used to be one UPDATE of the whole batch, whose
// row locks a revocation of the same key waited behind for 1.8-1.9 s.)
func TestFlushDoesNotHoldUpRevocation(t *testing.T) {
	if testing.Short() || buildtag.Mutation {
		t.Skip("fills a table with 100,000 keys")
	}
	ctx := context.Background()
	pool := newPool(t)
	schema := freshSchema(t, pool)
	s := newStore(t, pool, schema)
	const n = 100_000
	table := pgx.Identifier{schema, "api_keys"}.Sanitize()
	if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (id, account_id, name, prefix, environment, digest, created_at, version)
SELECT 'key_' || i, 'acct_flush', 'k', 'txc_test_abcd', 'test', sha256(convert_to(i::text, 'UTF8')), now(), 1
FROM generate_series(1, $1) AS i`, n); err != nil {
		t.Fatal(err)
	}
	batch := make([]store.LastUsed, n)
	at := time.Now().UTC().Truncate(time.Microsecond)
	for i := range batch {
		batch[i] = store.LastUsed{ID: "key_" + strconv.Itoa(i+1), At: at}
	}
	flushed := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		if err := s.TouchLastUsed(ctx, batch); err != nil {
			t.Error(err)
		}
		flushed <- time.Since(start)
	}()
	// Revoke key_1, key_2, ... one after another while the flush runs. The
	// flush soon overtakes them; a key it has passed is free again at once
	// when each chunk commits, but stays locked to the end under one
	// statement for the whole batch.
	var worst time.Duration
	var flush time.Duration
	revokedIDs := 0
	for i := 1; flush == 0 && i <= n; i++ {
		r, err := s.Get(ctx, "key_"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		next := r.Clone()
		next.RevokedAt, next.Version = at, r.Version+1
		begin := time.Now()
		if err := s.Write(ctx, store.Write{Replace: next}); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(begin))
		revokedIDs++
		select {
		case flush = <-flushed:
		default:
		}
	}
	if flush == 0 {
		flush = <-flushed
	}
	t.Logf("a flush of %d last-used times took %v; %d revocations of keys in it, meanwhile, took at most %v each", n, flush, revokedIDs, worst)
	if revokedIDs < 10 || worst > flush/4 {
		t.Fatalf("a revocation took %v during a %v flush: it waited behind the flush's row locks", worst, flush)
	}
	got, err := s.Get(ctx, "key_1")
	if err != nil || got.RevokedAt.IsZero() || !got.LastUsed.Equal(at) {
		t.Fatalf("after both: revoked %v, last used %v (%v)", got.RevokedAt, got.LastUsed, err)
	}
}

// A statement held up (here by a lock another session keeps) is cancelled
// at the store's query timeout instead of holding a pool connection.
func TestQueryTimeout(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := freshSchema(t, pool)
	s := newStore(t, pool, schema, pgstore.WithQueryTimeout(300*time.Millisecond))
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, "api_keys"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Get(ctx, "key_any")
	took := time.Since(start)
	if err == nil || took > 2*time.Second {
		t.Fatalf("a blocked query returned %v after %v; want an error at the 300 ms timeout", err, took)
	}
	t.Logf("the blocked query failed after %v: %v", took.Round(time.Millisecond), err)
}
