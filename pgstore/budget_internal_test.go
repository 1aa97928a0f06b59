package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/txcloud/keys/store"
)

// The miss budget lets a burst of 20 misses through, then one every 50 ms,
// at the exact instant it is due.
func TestMissBudget(t *testing.T) {
	var m missBudget
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	for i := range missBurst {
		if !m.take(now) {
			t.Fatalf("miss %d of the burst refused", i+1)
		}
	}
	if m.take(now) {
		t.Fatal("a miss beyond the burst passed")
	}
	if m.take(now + missEvery - 1) {
		t.Fatal("a miss a nanosecond before the next is due passed")
	}
	if !m.take(now + missEvery) {
		t.Fatal("a miss at the instant the next is due was refused")
	}
}

// A store opened on a table that already holds keys loads every digest
// into its filter: each is found, from a store that never saw them
// inserted.
func TestFilterLoadsExistingKeys(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	writer := openStore(t, pool, schema)
	var ds []store.Digest
	for range 100 {
		r := record(t)
		ds = append(ds, r.Digest)
		if err := writer.Write(ctx, store.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
	}
	reader := openStore(t, pool, schema) // loads its filter now
	bits := reader.filter.bits.Load()
	if bits == nil {
		t.Fatal("the filter was not loaded")
	}
	for i, d := range ds {
		if !bits.has(&d) {
			t.Fatalf("digest %d of the table is missing from a freshly loaded filter", i)
		}
	}
	present := 0
	for range 100 {
		d := record(t).Digest
		if bits.has(&d) {
			present++
		}
	}
	if present > 5 { // about 0.1% false positives
		t.Fatalf("%d of 100 digests never stored are in the filter", present)
	}
}

// The cache holds at most its size: with room for 2, three keys looked up
// twice over give at most 2 hits in the second round; with room for 10,
// five keys give 5.
func TestCacheSizeBound(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	for _, c := range []struct{ size, keys, maxHits, minHits int }{{2, 3, 2, 0}, {10, 5, 5, 5}} {
		s := openStore(t, pool, schema, WithCache(c.size, time.Hour))
		var ds []store.Digest
		for range c.keys {
			r := record(t)
			ds = append(ds, r.Digest)
			if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range ds {
			if _, err := s.lookupMiss(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		before := s.Stats().CacheHits
		for _, d := range ds {
			if _, err := s.LookupDigest(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		hits := int(s.Stats().CacheHits - before)
		if hits > c.maxHits || hits < c.minHits {
			t.Fatalf("a cache of %d, %d keys looked up twice: %d hits in the second round", c.size, c.keys, hits)
		}
	}
}
