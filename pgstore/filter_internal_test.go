package pgstore

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/internal/latency"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
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

// openStore opens a migrated store in schema and waits for its listener
// and filter: the listener empties the cache when it connects, so a test of
// the cache starts after that.
func openStore(t *testing.T, pool *pgxpool.Pool, schema string, opts ...Option) *Store {
	s, err := New(pool, append([]Option{WithSchema(schema)}, opts...)...)
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

func record(t *testing.T) *store.Record {
	var d store.Digest
	if _, err := rand.Read(d[:]); err != nil {
		t.Fatal(err)
	}
	return &store.Record{ID: "key_" + rand.Text(), AccountID: "acct_f", Name: "k", Prefix: "txc_test_abcd", Environment: "test",
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
	var real []store.Digest
	for range 500 {
		r := record(t)
		real = append(real, r.Digest)
		if err := a.Write(ctx, store.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
	}
	// Created on A, looked up on B at once: found, whether B's
	// notification has arrived or the miss budget lets it through.
	fresh := record(t)
	if err := a.Write(ctx, store.Write{Insert: fresh}); err != nil {
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
		var d store.Digest
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
	var d store.Digest
	_, _ = rand.Read(d[:])
	if _, err := b.LookupDigest(ctx, d); err != keys.ErrNotFound || b.dbLookups.Load() != before+1 {
		t.Fatalf("with the filter not ready, a lookup did not ask the database (%v)", err)
	}
}

// Finding 1 of issue 11, end to end through a Manager on a pool of 4
// connections (the default on 2 cores): while 16 clients flood Verify with
// keys that pass the public checksum but were never issued (each 50 keys,
// then a 5 ms pause: up to 160,000 a second), another tenant's List (a database query each) keeps
// its p99 within twice its unloaded p99, and the flood costs at most 1%
// of its lookups in queries. Without the filter, every forged key was a
// query: the flood held the pool and the legitimate p99 went from 3 ms to
// 64-122 ms over HTTP.
func TestForgedFloodLeavesOthersLatency(t *testing.T) {
	if testing.Short() || buildtag.Mutation {
		t.Skip("a 5-second load test")
	}
	ctx := context.Background()
	_, schema := internalPool(t)
	cfg, err := pgxpool.ParseConfig(os.Getenv("KEYS_TEST_POSTGRES"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := openStore(t, pool, schema)
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	for range 20 {
		if _, err := m.Create(ctx, keys.APIKeyCreate{Name: "legit", Environment: keys.Live, AccountID: "acct_legit"}); err != nil {
			t.Fatal(err)
		}
	}
	// Forged keys: well formed, checksum and all, from a Manager whose
	// store pgstore has never seen.
	other, err := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(1_000_000))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var forged []string
	for range 4000 {
		k, err := other.Create(ctx, keys.APIKeyCreate{Name: "forged", Environment: keys.Live, AccountID: "acct_x"})
		if err != nil {
			t.Fatal(err)
		}
		forged = append(forged, string(k.Key))
	}
	// p99 of the legitimate tenant's List over a 700 ms window, a
	// request every millisecond.
	legit := func() time.Duration {
		return latency.P99(700*time.Millisecond, time.Millisecond, func() {
			if l, err := m.List(ctx, keys.ListFilter{AccountID: "acct_legit", Limit: 10}); err != nil || len(l.Data) != 10 {
				t.Fatalf("legit list: %v", err)
			}
		})
	}
	// A round is an unloaded window then a flooded one; the best p99 of
	// three rounds of each kind, so that the machine's own noise (which
	// only adds) weighs on both alike. The latency is a consequence; what
	// the filter does is the query count, checked on every measurement.
	// A busy shared machine can still stretch one kind of window and not
	// the other, so a measurement whose latency misses the bound is taken
	// again, three times at most: a slow filter misses it every time.
	measure := func() (unloaded, flooded time.Duration, n, queries int64, took time.Duration) {
		unloaded, flooded = time.Hour, time.Hour
		var sent atomic.Int64
		for range 3 {
			unloaded = min(unloaded, legit())
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						for j := range 50 {
							if _, err := m.Verify(ctx, forged[(i*50+j)%len(forged)]); !errors.Is(err, keys.ErrInvalidKey) {
								t.Errorf("a forged key: %v", err)
								return
							}
						}
						sent.Add(50)
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			before := s.dbLookups.Load()
			start := time.Now()
			flooded = min(flooded, legit())
			close(stop)
			wg.Wait()
			took += time.Since(start)
			queries += s.dbLookups.Load() - before
		}
		return unloaded, flooded, sent.Load(), queries, took
	}
	for attempt := 1; ; attempt++ {
		unloaded, flooded, n, queries, took := measure()
		t.Logf("legitimate List p99: %v unloaded, %v during %d forged verifies in %v (%.0f a second), which made %d queries (%.2f%%)",
			unloaded, flooded, n, took.Round(time.Millisecond), float64(n)/took.Seconds(), queries, 100*float64(queries)/float64(n))
		if n < 10_000 {
			t.Fatalf("the flood sent only %d forged keys", n)
		}
		if queries > n/100 {
			t.Fatalf("%d forged verifies made %d queries: more than 1%%", n, queries)
		}
		switch {
		case buildtag.Race:
			t.Log("under -race the latency bound is not checked (.ci/run checks it without)")
			return
		case flooded <= 2*unloaded:
			return
		case attempt == 3:
			t.Fatalf("the legitimate p99 went from %v to %v under the flood: more than twice, in three measurements", unloaded, flooded)
		}
		t.Logf("measurement %d: the p99 more than doubled; measuring again", attempt)
	}
}
