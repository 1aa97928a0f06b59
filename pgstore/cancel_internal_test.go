package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// A lookup whose caller leaves while its statement runs completes: the
// record is found, the connection is kept, and the next lookup of the
// digest is answered from the cache. (pgx used to close the connection
// under the cancelled statement, and the lookup filled nothing, so a
// client that always cancels kept its lookups on the database.)
func TestCancelledLookupFillsTheCache(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	s := openStore(t, pool, schema)
	rec := storetest.NewRecord(t)
	if err := s.Write(ctx, store.Write{Insert: rec}); err != nil {
		t.Fatal(err)
	}
	// Two idle connections in the pool, so that the lookup needs no new
	// one; then another session holds the table, so the lookup's
	// statement waits.
	var warm []*pgxpool.Conn
	for range 2 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		warm = append(warm, c)
	}
	for _, c := range warm {
		c.Release()
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, "api_keys"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	conns := pool.Stat().NewConnsCount()
	queries := s.dbLookups.Load()
	caller, leave := context.WithCancel(ctx)
	type result struct {
		r   *store.Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.LookupDigest(caller, rec.Digest)
		done <- result{r, err}
	}()
	time.Sleep(100 * time.Millisecond) // the statement is waiting on the lock
	leave()
	time.Sleep(100 * time.Millisecond)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil || got.r == nil || got.r.ID != rec.ID {
		t.Fatalf("the lookup whose caller left: %v, %v; want the record (its statement runs to completion)", got.r, got.err)
	}
	if r, err := s.LookupDigest(ctx, rec.Digest); err != nil || r.ID != rec.ID {
		t.Fatal(err)
	}
	if n := s.dbLookups.Load() - queries; n != 1 {
		t.Fatalf("%d queries for two lookups; want 1: the completed lookup filled the cache", n)
	}
	if n := pool.Stat().NewConnsCount() - conns; n != 0 {
		t.Fatalf("%d new connections: the cancel cost the pool its connection", n)
	}
}
