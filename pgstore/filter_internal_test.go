package pgstore

import (
	"context"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys"
)

// internalPool is the test database's pool and a fresh schema name, for
// the tests inside the package.
func internalPool(t *testing.T) (*pgxpool.Pool, string) {
	dsn := os.Getenv("KEYS_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set KEYS_TEST_POSTGRES (e.g. postgres://root@127.0.0.1:5432/test) to run the PostgreSQL tests")
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	schema := "keys_test_" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return pool, schema
}

// openStore opens a migrated store in schema and waits for its filter.
func openStore(t *testing.T, pool *pgxpool.Pool, schema string) *Store {
	s, err := New(pool, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !s.filter.ready.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the filter never became ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

func record(t *testing.T) *keys.Record {
	var d keys.Digest
	if _, err := rand.Read(d[:]); err != nil {
		t.Fatal(err)
	}
	return &keys.Record{ID: "key_" + rand.Text(), AccountID: "acct_f", Name: "k", Prefix: "txc_test_abcd", Environment: keys.Test,
		Digest: d, CreatedAt: time.Now().UTC().Truncate(time.Microsecond), Version: 1}
}

// A flood of keys that were never issued (each new, so no negative cache
// could help) costs the database almost nothing: the filter refuses them
// from memory, and only its small budget of misses reaches PostgreSQL. Keys
// that exist, including one created an instant ago on another instance,
// are found.
func TestForgedKeysCostNoQuery(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	a := openStore(t, pool, schema)
	b := openStore(t, pool, schema) // another instance
	var real []keys.Digest
	for range 500 {
		r := record(t)
		real = append(real, r.Digest)
		if err := a.Write(ctx, keys.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
	}
	// Created on A, looked up on B at once: found, whether B's
	// notification has arrived or the miss budget lets it through.
	fresh := record(t)
	if err := a.Write(ctx, keys.Write{Insert: fresh}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LookupDigest(ctx, fresh.Digest); err != nil {
		t.Fatalf("a key created on another instance an instant ago: %v", err)
	}
	// The flood: 20,000 forged digests on B, for about a second.
	before := b.dbLookups.Load()
	const forged = 20_000
	start := time.Now()
	for i := range forged {
		var d keys.Digest
		_, _ = rand.Read(d[:])
		if _, err := b.LookupDigest(ctx, d); err != keys.ErrNotFound {
			t.Fatalf("forged digest %d: %v", i, err)
		}
		if i%1000 == 0 {
			time.Sleep(50 * time.Millisecond) // spread over about a second
		}
	}
	took := time.Since(start)
	queries := b.dbLookups.Load() - before
	t.Logf("%d forged lookups in %v cost %d database queries (%.2f%%)", forged, took.Round(time.Millisecond), queries, 100*float64(queries)/forged)
	if queries > forged/100 {
		t.Fatalf("%d forged lookups made %d database queries: more than 1%%", forged, queries)
	}
	// Every real key is still found, on both instances (from the cache or
	// the database: the filter never says no to a stored digest).
	for _, s := range []*Store{a, b} {
		for _, d := range real {
			if _, err := s.LookupDigest(ctx, d); err != nil {
				t.Fatalf("a stored key was refused: %v", err)
			}
		}
	}
	// With the listener down, the filter is not trusted: lookups go to
	// the database as before.
	b.filter.ready.Store(false)
	before = b.dbLookups.Load()
	var d keys.Digest
	_, _ = rand.Read(d[:])
	if _, err := b.LookupDigest(ctx, d); err != keys.ErrNotFound || b.dbLookups.Load() != before+1 {
		t.Fatalf("with the filter not ready, a lookup did not ask the database (%v)", err)
	}
}
