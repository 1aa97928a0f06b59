// Package storetest is the conformance suite for store.Store implementations.
// A store's tests call Run with a constructor; every case gets a fresh
// store, so stores backed by a server should give each one its own schema
// or database.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
//	}
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
)

// Run checks that the stores newStore returns keep every rule of the
// store.Store contract, then runs a keys.Manager on one: create, verify,
// update, roll, revoke and list. Each case gets a fresh store; clean it up
// with t.Cleanup in newStore if it needs closing.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	cases := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"InsertThenGetAndLookup", testInsertGetLookup},
		{"NotFound", testNotFound},
		{"DuplicateID", testDuplicateID},
		{"DuplicateDigest", testDuplicateDigest},
		{"LookupIgnoresState", testLookupIgnoresState},
		{"ReturnedRecordsNeverChange", testReturnedRecordsNeverChange},
		{"RepeatedLookupAllocatesNothing", testLookupAllocatesNothing},
		{"IdempotencyRoundTrip", testIdempotencyRoundTrip},
		{"IdempotencyExistsStoresNothing", testIdempotencyExists},
		{"IdempotencyExpiredIsReplaced", testIdempotencyExpired},
		{"DuplicateKeyStoresNoIdempotency", testDuplicateWithIdempotency},
		{"TouchLastUsed", testTouchLastUsed},
		{"ReplaceReplaces", testReplaceReplaces},
		{"ReplaceStaleChangesNothing", testReplaceStale},
		{"ReplaceNeverWritesLastUsed", testReplaceKeepsLastUsed},
		{"ReplaceNeverChangesDigest", testReplaceKeepsDigest},
		{"ReplaceWithInsert", testReplaceWithInsert},
		{"ListOrderAndFilters", testListOrderAndFilters},
		{"ListPagesEachRecordOnce", testListPaging},
		{"ListFiltersWithCursor", testListFiltersWithCursor},
		{"ListByOwnerAndExpiry", testListOwnerExpiry},
		{"NoOptionalFields", testNoOptionalFields},
		{"Import", testImport},
		{"Usage", testUsage},
		{"Credits", testCredits},
		{"CreditsConcurrent", testCreditsConcurrent},
		{"CreditsSetAndRefunded", testCreditsSetAndRefunded},
		{"Marks", testMarks},
		{"Logs", testLogs},
		{"LogsDailyCap", testLogsDailyCap},
		{"LogsPrune", testLogsPrune},
		{"ManagerLogs", testManagerLogs},
		{"Events", testEvents},
		{"Endpoints", testEndpoints},
		{"DeliveryFanOut", testDeliveryFanOut},
		{"DeliveryClaims", testDeliveryClaims},
		{"DeliveryClaimsAreFair", testDeliveryClaimsAreFair},
		{"Concurrent", testConcurrent},
		{"MaxActive", testMaxActive},
		{"KeepRevoked", testKeepRevoked},
		{"Manager", testManager},
		{"ManagerOnCopies", func(t *testing.T, s store.Store) { testManager(t, copying{s}) }},
		{"ManagerCountsExactly", testManagerCounts},
		{"ManagerCountsExactlyOnCopies", func(t *testing.T, s store.Store) { testManagerCounts(t, copying{s}) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newStore(t)) })
	}
}

var base = time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC)

// NewRecord returns a record with every field set and a random ID and hash.
func NewRecord(t testing.TB) *store.Record {
	t.Helper()
	var h store.Digest
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return &store.Record{
		ID:          "key_" + rand.Text(),
		AccountID:   "acct_" + rand.Text()[:8],
		Name:        "conformance ✓",
		Prefix:      "txc_test_abcd",
		Environment: "test",
		Permissions: []string{"identity:read", "developers:write"},
		AllowedIPs:  []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128")},
		RateLimit:   120,
		Digest:      h,
		CreatedAt:   base,
		ExpiresAt:   base.Add(30 * 24 * time.Hour),
		OwnerID:     "cust_42@example.com",
		Metadata:    json.RawMessage(`{"plan":"pro","tags":["a","ü"],"n":{"x":1.5e3}}`),
		Version:     1,
	}
}

// Equal reports how two records differ, or "" if they do not. Times are
// compared as instants.
func Equal(got, want *store.Record) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("ID %q, want %q", got.ID, want.ID)
	case got.AccountID != want.AccountID:
		return fmt.Sprintf("AccountID %q, want %q", got.AccountID, want.AccountID)
	case got.Name != want.Name:
		return fmt.Sprintf("Name %q, want %q", got.Name, want.Name)
	case got.Prefix != want.Prefix:
		return fmt.Sprintf("Prefix %q, want %q", got.Prefix, want.Prefix)
	case got.Environment != want.Environment:
		return fmt.Sprintf("Environment %q, want %q", got.Environment, want.Environment)
	case !slices.Equal(got.Permissions, want.Permissions):
		return fmt.Sprintf("Permissions %q, want %q", got.Permissions, want.Permissions)
	case !slices.Equal(got.AllowedIPs, want.AllowedIPs):
		return fmt.Sprintf("AllowedIPs %v, want %v", got.AllowedIPs, want.AllowedIPs)
	case got.RateLimit != want.RateLimit:
		return fmt.Sprintf("RateLimit %d, want %d", got.RateLimit, want.RateLimit)
	case got.Digest != want.Digest:
		return "Digest differs"
	case !got.CreatedAt.Equal(want.CreatedAt):
		return fmt.Sprintf("CreatedAt %v, want %v", got.CreatedAt, want.CreatedAt)
	case !got.ExpiresAt.Equal(want.ExpiresAt):
		return fmt.Sprintf("ExpiresAt %v, want %v", got.ExpiresAt, want.ExpiresAt)
	case !got.RevokedAt.Equal(want.RevokedAt):
		return fmt.Sprintf("RevokedAt %v, want %v", got.RevokedAt, want.RevokedAt)
	case !got.LastUsed.Equal(want.LastUsed):
		return fmt.Sprintf("LastUsed %v, want %v", got.LastUsed, want.LastUsed)
	case got.OwnerID != want.OwnerID:
		return fmt.Sprintf("OwnerID %q, want %q", got.OwnerID, want.OwnerID)
	case string(got.Metadata) != string(want.Metadata):
		return fmt.Sprintf("Metadata %s, want %s (byte for byte)", got.Metadata, want.Metadata)
	case got.Disabled != want.Disabled:
		return fmt.Sprintf("Disabled %d, want %d", got.Disabled, want.Disabled)
	case got.Version != want.Version:
		return fmt.Sprintf("Version %d, want %d", got.Version, want.Version)
	case got.CreditsID != want.CreditsID:
		return fmt.Sprintf("CreditsID %q, want %q", got.CreditsID, want.CreditsID)
	}
	return ""
}

func mustCreate(t *testing.T, s store.Store, r *store.Record, idem *store.IdempotencyRecord) {
	t.Helper()
	if err := s.Write(context.Background(), store.Write{Insert: r, Idempotency: idem}); err != nil {
		t.Fatalf("Write(Insert): %v", err)
	}
}

func insert(s store.Store, r *store.Record, idem *store.IdempotencyRecord) error {
	return s.Write(context.Background(), store.Write{Insert: r, Idempotency: idem})
}

func replace(s store.Store, r *store.Record) error {
	return s.Write(context.Background(), store.Write{Replace: r})
}

func testInsertGetLookup(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	want := r.Clone()
	mustCreate(t, s, r, nil)
	got, err := s.Get(ctx, want.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if d := Equal(got, want); d != "" {
		t.Fatalf("Get: %s", d)
	}
	got, err = s.LookupDigest(ctx, want.Digest)
	if err != nil {
		t.Fatalf("LookupDigest: %v", err)
	}
	if d := Equal(got, want); d != "" {
		t.Fatalf("LookupDigest: %s", d)
	}
	// Zero optional fields read back as zero.
	bare := NewRecord(t)
	bare.Permissions, bare.AllowedIPs, bare.RateLimit, bare.ExpiresAt = nil, nil, 0, time.Time{}
	wantBare := bare.Clone()
	mustCreate(t, s, bare, nil)
	got, err = s.Get(ctx, wantBare.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Permissions) != 0 || len(got.AllowedIPs) != 0 || got.RateLimit != 0 || !got.ExpiresAt.IsZero() || !got.RevokedAt.IsZero() || !got.LastUsed.IsZero() {
		t.Fatalf("a record with no optional fields read back with some: %+v", got)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, NewRecord(t), nil)
	if _, err := s.Get(ctx, "key_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.LookupDigest(ctx, store.Digest{1, 2, 3}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupDigest(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.LookupIdempotency(ctx, store.Digest{4, 5, 6}, base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LookupIdempotency(missing) = %v, want ErrNotFound", err)
	}
}

func testDuplicateID(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := NewRecord(t)
	id := first.ID
	mustCreate(t, s, first, nil)
	second := NewRecord(t)
	second.ID = id
	h := second.Digest
	if err := insert(s, second, nil); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("Insert(same ID) = %v, want ErrDuplicate", err)
	}
	if _, err := s.LookupDigest(ctx, h); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused record is findable: %v", err)
	}
}

func testDuplicateDigest(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := NewRecord(t)
	mustCreate(t, s, first, nil)
	second := NewRecord(t)
	second.Digest = first.Digest
	id := second.ID
	if err := insert(s, second, nil); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("Insert(same digest) = %v, want ErrDuplicate", err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused record is findable: %v", err)
	}
}

func testLookupIgnoresState(t *testing.T, s store.Store) {
	r := NewRecord(t)
	r.ExpiresAt = base.Add(-time.Hour)
	r.RevokedAt = base.Add(-time.Minute)
	want := r.Clone()
	mustCreate(t, s, r, nil)
	got, err := s.LookupDigest(context.Background(), want.Digest)
	if err != nil {
		t.Fatalf("a revoked, expired record must still be found (the Manager decides): %v", err)
	}
	if d := Equal(got, want); d != "" {
		t.Fatal(d)
	}
}

// Records a store returns are read-only and may be shared, so the store
// must never change one after handing it out: a Replace or a TouchLastUsed
// makes a new record.
func testReturnedRecordsNeverChange(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	mustCreate(t, s, r, nil)
	id, d, acct := r.ID, r.Digest, r.AccountID
	// hold returns the record as Get, LookupDigest and List give it, and a
	// copy of each to compare it with later (a lookup's LastUsed may lag).
	type held struct{ got, want *store.Record }
	hold := func() map[string]held {
		t.Helper()
		byID, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		byDigest, err := s.LookupDigest(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		listed, err := s.List(ctx, store.ListQuery{AccountID: acct, Limit: 10})
		if err != nil || len(listed) != 1 {
			t.Fatalf("List: %d records, %v", len(listed), err)
		}
		return map[string]held{"Get": {byID, byID.Clone()}, "LookupDigest": {byDigest, byDigest.Clone()}, "List": {listed[0], listed[0].Clone()}}
	}
	unchanged := func(after string, records map[string]held) {
		t.Helper()
		for name, h := range records {
			if diff := Equal(h.got, h.want); diff != "" {
				t.Fatalf("a record returned by %s changed after %s: %s", name, after, diff)
			}
		}
	}
	records := hold()
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: id, At: base.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	unchanged("a TouchLastUsed", records)
	records = hold()
	next := records["Get"].want.Clone()
	next.Name, next.Permissions, next.RevokedAt, next.Version = "replaced", []string{"kyb:read"}, base, next.Version+1
	if err := replace(s, next); err != nil {
		t.Fatal(err)
	}
	unchanged("a Replace", records)
}

// A hot key is looked up on every request: a repeated lookup of the same
// digest must not allocate.
func testLookupAllocatesNothing(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	d := r.Digest
	mustCreate(t, s, r, nil)
	var err error
	if _, err = s.LookupDigest(ctx, d); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(200, func() { _, err = s.LookupDigest(ctx, d) })
	if err != nil || allocs != 0 {
		t.Fatalf("a repeated LookupDigest allocates %.1f times per call (%v), want 0", allocs, err)
	}
}

// newIdemScope is newIdem with the scope given.
func newIdemScope(t *testing.T, scope store.Digest, keyID string, created time.Time) *store.IdempotencyRecord {
	t.Helper()
	e := newIdem(t, keyID, created)
	e.Scope = scope
	return e
}

func newIdem(t *testing.T, keyID string, created time.Time) *store.IdempotencyRecord {
	t.Helper()
	e := &store.IdempotencyRecord{KeyID: keyID, Sealed: []byte("sealed\x00bytes"), CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour)}
	if _, err := rand.Read(e.Scope[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(e.Fingerprint[:]); err != nil {
		t.Fatal(err)
	}
	return e
}

func testIdempotencyRoundTrip(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	e := newIdem(t, r.ID, base)
	want := *e
	want.Sealed = slices.Clone(e.Sealed)
	mustCreate(t, s, r, e)
	got, err := s.LookupIdempotency(ctx, want.Scope, base.Add(time.Hour))
	if err != nil {
		t.Fatalf("LookupIdempotency: %v", err)
	}
	if got.Scope != want.Scope || got.Fingerprint != want.Fingerprint || got.KeyID != want.KeyID ||
		string(got.Sealed) != string(want.Sealed) || !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("entry read back as %+v, want %+v", got, want)
	}
	if _, err := s.LookupIdempotency(ctx, want.Scope, want.ExpiresAt.Add(-time.Microsecond)); err != nil {
		t.Fatalf("entry missing just before it expires: %v", err)
	}
	if _, err := s.LookupIdempotency(ctx, want.Scope, want.ExpiresAt); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("entry found at its expiry: %v", err)
	}
	if _, err := s.Get(ctx, r.ID); err != nil {
		t.Fatalf("record created with an idempotency entry is missing: %v", err)
	}
}

func testIdempotencyExists(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := NewRecord(t)
	e := newIdem(t, first.ID, base)
	scope := e.Scope
	mustCreate(t, s, first, e)
	second := NewRecord(t)
	id := second.ID
	e2 := newIdem(t, id, base.Add(time.Hour))
	e2.Scope = scope
	if err := insert(s, second, e2); !errors.Is(err, store.ErrIdempotencyKeyExists) {
		t.Fatalf("Write(same scope) = %v, want ErrIdempotencyKeyExists", err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the record of a refused idempotent create was stored: %v", err)
	}
	got, err := s.LookupIdempotency(ctx, scope, base.Add(time.Hour))
	if err != nil || got.KeyID != first.ID {
		t.Fatalf("the first entry was replaced: %v", err)
	}
}

func testIdempotencyExpired(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := NewRecord(t)
	e := newIdem(t, first.ID, base)
	scope := e.Scope
	mustCreate(t, s, first, e)
	later := base.Add(25 * time.Hour)
	second := NewRecord(t)
	id := second.ID
	e2 := newIdem(t, id, later)
	e2.Scope = scope
	if err := insert(s, second, e2); err != nil {
		t.Fatalf("an expired entry blocked its scope: %v", err)
	}
	got, err := s.LookupIdempotency(ctx, scope, later)
	if err != nil || got.KeyID != id {
		t.Fatalf("the expired entry was not replaced: %v", err)
	}
}

func testDuplicateWithIdempotency(t *testing.T, s store.Store) {
	ctx := context.Background()
	first := NewRecord(t)
	mustCreate(t, s, first, nil)
	dup := NewRecord(t)
	dup.ID = first.ID
	e := newIdem(t, dup.ID, base)
	scope := e.Scope
	if err := insert(s, dup, e); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("Write = %v, want ErrDuplicate", err)
	}
	if _, err := s.LookupIdempotency(ctx, scope, base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the idempotency entry of a refused create was stored: %v", err)
	}
}

func testTouchLastUsed(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := NewRecord(t), NewRecord(t)
	aID, bID := a.ID, b.ID
	mustCreate(t, s, a, nil)
	mustCreate(t, s, b, nil)
	t1 := base.Add(time.Minute)
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: aID, At: t1}, {ID: "key_unknown", At: t1}}); err != nil {
		t.Fatalf("TouchLastUsed: %v", err)
	}
	check := func(id string, want time.Time) {
		t.Helper()
		got, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !got.LastUsed.Equal(want) {
			t.Fatalf("LastUsed of %s = %v, want %v", id, got.LastUsed, want)
		}
		listed, err := s.List(ctx, store.ListQuery{AccountID: got.AccountID, Limit: 1})
		if err != nil || len(listed) != 1 || !listed[0].LastUsed.Equal(want) {
			t.Fatalf("List does not see LastUsed %v (%v)", want, err)
		}
	}
	check(aID, t1)
	check(bID, time.Time{})
	// Never backwards.
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: aID, At: base}, {ID: bID, At: t1}}); err != nil {
		t.Fatal(err)
	}
	check(aID, t1)
	check(bID, t1)
	if err := s.TouchLastUsed(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	// A large batch in one call.
	var batch []store.LastUsed
	var ids []string
	for range 300 {
		r := NewRecord(t)
		ids = append(ids, r.ID)
		mustCreate(t, s, r, nil)
		batch = append(batch, store.LastUsed{ID: r.ID, At: t1})
	}
	if err := s.TouchLastUsed(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		check(id, t1)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	hashes := make([][]store.Digest, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r := NewRecord(t)
				h, id := r.Digest, r.ID
				if err := insert(s, r, nil); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.LookupDigest(ctx, h); err != nil {
					t.Error(err)
					return
				}
				if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: id, At: base}}); err != nil {
					t.Error(err)
					return
				}
				hashes[w] = append(hashes[w], h)
			}
		}()
	}
	wg.Wait()
	for _, hs := range hashes {
		for _, h := range hs {
			if _, err := s.LookupDigest(ctx, h); err != nil {
				t.Fatalf("record lost: %v", err)
			}
		}
	}
}

// mustGet returns a copy of the stored record, free to edit (records a
// store returns are read-only).
func mustGet(t *testing.T, s store.Store, id string) *store.Record {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r.Clone()
}

func testReplaceReplaces(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	mustCreate(t, s, r, nil)
	next := mustGet(t, s, r.ID)
	next.Name = "renamed"
	next.Permissions = []string{"kyb:read"}
	next.AllowedIPs = nil
	next.RateLimit = 0
	next.ExpiresAt = time.Time{}
	next.RevokedAt = base.Add(time.Hour)
	next.OwnerID = "other-owner"
	next.Metadata = json.RawMessage(`{"changed":true}`)
	next.Disabled = store.DisabledByHost
	next.Version = 2
	want := next.Clone()
	if err := replace(s, next); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if d := Equal(mustGet(t, s, want.ID), want); d != "" {
		t.Fatalf("Get after Replace: %s", d)
	}
	// Through the same store value, a lookup sees a Write at once (a
	// revocation holds for the very next request).
	byDigest, err := s.LookupDigest(ctx, want.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if d := Equal(byDigest, want); d != "" {
		t.Fatalf("LookupDigest after Replace: %s", d)
	}
	missing := NewRecord(t)
	missing.Version = 2
	if err := replace(s, missing); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Replace(unknown) = %v, want ErrNotFound", err)
	}
}

func testReplaceStale(t *testing.T, s store.Store) {
	r := NewRecord(t)
	want := r.Clone()
	mustCreate(t, s, r, nil)
	for _, v := range []int64{1, 3, 0} {
		stale := mustGet(t, s, want.ID)
		stale.Name = "lost update"
		stale.Version = v
		if err := replace(s, stale); !errors.Is(err, store.ErrStale) {
			t.Fatalf("Replace at version %d over 1 = %v, want ErrStale", v, err)
		}
	}
	if d := Equal(mustGet(t, s, want.ID), want); d != "" {
		t.Fatalf("a stale Replace changed the record: %s", d)
	}
	// Two writers read version 1; only the first may write.
	a, b := mustGet(t, s, want.ID), mustGet(t, s, want.ID)
	a.RevokedAt, a.Version = base, 2
	b.Name, b.Version = "b", 2
	if err := replace(s, a); err != nil {
		t.Fatal(err)
	}
	if err := replace(s, b); !errors.Is(err, store.ErrStale) {
		t.Fatalf("second writer: %v, want ErrStale", err)
	}
	if got := mustGet(t, s, want.ID); got.RevokedAt.IsZero() {
		t.Fatal("a concurrent update undid a revocation")
	}
}

// LastUsed belongs to TouchLastUsed: a Replace keeps the stored one,
// whether its own is earlier (a Manager's copy read before a flush) or
// later.
func testReplaceKeepsLastUsed(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	id := r.ID
	mustCreate(t, s, r, nil)
	next := mustGet(t, s, id) // LastUsed zero
	used := base.Add(time.Hour)
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: id, At: used}}); err != nil {
		t.Fatal(err)
	}
	next.Name, next.Version = "renamed", 2
	if err := replace(s, next); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, id); !got.LastUsed.Equal(used) || got.Name != "renamed" {
		t.Fatalf("after a Replace with an older LastUsed: LastUsed %v (want %v), name %q", got.LastUsed, used, got.Name)
	}
	later := mustGet(t, s, id)
	later.LastUsed, later.Version = used.Add(time.Hour), 3
	if err := replace(s, later); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, id); !got.LastUsed.Equal(used) {
		t.Fatalf("a Replace moved LastUsed to %v; only TouchLastUsed may (want %v)", got.LastUsed, used)
	}
}

// A key's secret is fixed: a Replace that changes the Digest is refused
// and writes nothing, so the old digest still finds the record and the new
// one finds nothing.
func testReplaceKeepsDigest(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	want := r.Clone()
	mustCreate(t, s, r, nil)
	next := mustGet(t, s, want.ID)
	var other store.Digest
	if _, err := rand.Read(other[:]); err != nil {
		t.Fatal(err)
	}
	next.Digest, next.Name, next.Version = other, "digest changed", 2
	if err := replace(s, next); err == nil {
		t.Fatal("a Replace changed a record's digest")
	}
	if d := Equal(mustGet(t, s, want.ID), want); d != "" {
		t.Fatalf("a refused Replace changed the record: %s", d)
	}
	if _, err := s.LookupDigest(ctx, other); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused digest finds a record: %v", err)
	}
	if got, err := s.LookupDigest(ctx, want.Digest); err != nil || got.ID != want.ID {
		t.Fatalf("the record's own digest no longer finds it: %v", err)
	}
}

func testReplaceWithInsert(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := NewRecord(t)
	mustCreate(t, s, r, nil)
	old := mustGet(t, s, r.ID)
	old.RevokedAt, old.Version = base.Add(time.Hour), 2
	succ := NewRecord(t)
	wantOld, wantSucc := old.Clone(), succ.Clone()
	e := newIdem(t, wantSucc.ID, base)
	scope := e.Scope
	if err := s.Write(ctx, store.Write{Replace: old, Insert: succ, Idempotency: e}); err != nil {
		t.Fatalf("Write(Replace, Insert): %v", err)
	}
	if got, err := s.LookupIdempotency(ctx, scope, base); err != nil || got.KeyID != wantSucc.ID {
		t.Fatalf("the idempotency entry of a Write is missing: %v", err)
	}
	if d := Equal(mustGet(t, s, wantOld.ID), wantOld); d != "" {
		t.Fatal(d)
	}
	got, err := s.LookupDigest(ctx, wantSucc.Digest)
	if err != nil {
		t.Fatalf("successor not findable: %v", err)
	}
	if d := Equal(got, wantSucc); d != "" {
		t.Fatal(d)
	}
	// A successor that collides stores nothing, the update included.
	again := mustGet(t, s, wantOld.ID)
	again.Name, again.Version = "should not stick", 3
	dup := NewRecord(t)
	dup.Digest = wantSucc.Digest
	dupID := dup.ID
	e2 := newIdem(t, dupID, base)
	scope2 := e2.Scope
	if err := s.Write(ctx, store.Write{Replace: again, Insert: dup, Idempotency: e2}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("colliding successor: %v, want ErrDuplicate", err)
	}
	if _, err := s.LookupIdempotency(ctx, scope2, base); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the idempotency entry of a refused Write was stored")
	}
	if d := Equal(mustGet(t, s, wantOld.ID), wantOld); d != "" {
		t.Fatalf("the Replace of a refused Write was stored: %s", d)
	}
	// An unexpired entry in the scope refuses the whole Update.
	again = mustGet(t, s, wantOld.ID)
	again.Name, again.Version = "should not stick either", 3
	succ2 := NewRecord(t)
	succ2ID := succ2.ID
	e3 := newIdem(t, succ2ID, base.Add(time.Minute))
	e3.Scope = scope
	if err := s.Write(ctx, store.Write{Replace: again, Insert: succ2, Idempotency: e3}); !errors.Is(err, store.ErrIdempotencyKeyExists) {
		t.Fatalf("Write into a taken scope: %v, want ErrIdempotencyKeyExists", err)
	}
	if _, err := s.Get(ctx, succ2ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the successor of a refused Write was stored")
	}
	if d := Equal(mustGet(t, s, wantOld.ID), wantOld); d != "" {
		t.Fatalf("the update of a refused pair was stored: %s", d)
	}
	if _, err := s.Get(ctx, dupID); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("the refused successor was stored")
	}
}

func testListOrderAndFilters(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct := "acct_list_" + rand.Text()[:6]
	want := map[string]bool{}
	for i := range 6 {
		r := NewRecord(t)
		r.AccountID = acct
		r.CreatedAt = base.Add(time.Duration(i/2) * time.Minute) // pairs share a time: ID breaks the tie
		if i%3 == 0 {
			r.Environment = "live"
		}
		if i == 4 {
			r.RevokedAt = base
		}
		want[r.ID] = true
		mustCreate(t, s, r, nil)
	}
	other := NewRecord(t)
	other.AccountID = "acct_other_" + rand.Text()[:6]
	mustCreate(t, s, other, nil)

	got, err := s.List(ctx, store.ListQuery{AccountID: acct, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("listed %d records of 6 (another account's must not appear)", len(got))
	}
	for _, r := range got {
		if !want[r.ID] {
			t.Fatalf("listed %s, which is not the account's", r.ID)
		}
	}
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		if a.CreatedAt.Before(b.CreatedAt) || (a.CreatedAt.Equal(b.CreatedAt) && a.ID < b.ID) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	count := func(q store.ListQuery) int {
		t.Helper()
		q.AccountID, q.Limit = acct, 100
		rs, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	yes, no := true, false
	if n := count(store.ListQuery{Environment: "live"}); n != 2 {
		t.Fatalf("live: %d, want 2", n)
	}
	if n := count(store.ListQuery{Revoked: &yes}); n != 1 {
		t.Fatalf("revoked: %d, want 1", n)
	}
	if n := count(store.ListQuery{Revoked: &no, Environment: "test"}); n != 3 {
		t.Fatalf("unrevoked test keys: %d, want 3", n)
	}
	page, err := s.List(ctx, store.ListQuery{AccountID: acct, Limit: 2})
	if err != nil || len(page) != 2 || page[0].ID != got[0].ID || page[1].ID != got[1].ID {
		t.Fatalf("limit 2: %d records, %v", len(page), err)
	}
}

func testListPaging(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct := "acct_page_" + rand.Text()[:6]
	existing := map[string]bool{}
	for i := range 250 {
		r := NewRecord(t)
		r.AccountID = acct
		r.CreatedAt = base.Add(time.Duration(i%50) * time.Second) // many ties
		existing[r.ID] = true
		mustCreate(t, s, r, nil)
	}
	seen := map[string]int{}
	var after *store.ListPosition
	for page := 0; ; page++ {
		rs, err := s.List(ctx, store.ListQuery{AccountID: acct, Limit: 7, After: after})
		if err != nil {
			t.Fatal(err)
		}
		// Keys created while paging are newer than every page so far.
		for range 3 {
			r := NewRecord(t)
			r.AccountID = acct
			r.CreatedAt = base.Add(time.Hour + time.Duration(page)*time.Second)
			mustCreate(t, s, r, nil)
		}
		for _, r := range rs {
			seen[r.ID]++
		}
		if len(rs) < 7 {
			break
		}
		last := rs[len(rs)-1]
		after = &store.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	for id := range existing {
		if seen[id] != 1 {
			t.Fatalf("record seen %d times while paging", seen[id])
		}
	}
	for id, n := range seen {
		if !existing[id] || n != 1 {
			t.Fatal("paging returned a record created after it began, or one twice")
		}
	}
}

// copying hands out a fresh copy of every record the store returns, as the
// contract allows a store to: a Manager must keep nothing of its own in a
// record. Through Unwrap the Manager still finds the store's capabilities.
type copying struct{ store.Store }

func (c copying) Unwrap() store.Store { return c.Store }

func (c copying) LookupDigest(ctx context.Context, d store.Digest) (*store.Record, error) {
	r, err := c.Store.LookupDigest(ctx, d)
	if r != nil {
		r = r.Clone()
	}
	return r, err
}

func (c copying) Get(ctx context.Context, id string) (*store.Record, error) {
	r, err := c.Store.Get(ctx, id)
	if r != nil {
		r = r.Clone()
	}
	return r, err
}

func (c copying) List(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	rs, err := c.Store.List(ctx, q)
	for i := range rs {
		rs[i] = rs[i].Clone()
	}
	return rs, err
}

// testManagerCounts runs a Manager on the store and counts requests from
// several goroutines over several keys: the usage it reads (with a
// store.UsageStore) is exact, before and after a flush, every key's
// last-used time reaches the store, and the Manager's memory does not
// grow with lookups. Run on copies (ManagerCountsExactlyOnCopies), it
// holds a Manager to keeping its state apart from the records.
func testManagerCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now().UTC().Truncate(time.Minute)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m, err := keys.New(s, keys.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(ctx); err != nil {
			t.Errorf("Manager.Close: %v", err)
		}
	}()
	acct := "acct_count_" + rand.Text()[:8]
	var secrets []string
	for i := range 5 {
		c, err := m.Create(ctx, keys.APIKeyCreate{Name: fmt.Sprint("k", i), Environment: keys.Test, AccountID: acct})
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, string(c.Key))
	}
	const workers, each = 6, 400
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				v, err := m.Verify(ctx, secrets[(w+i)%len(secrets)], keys.OnAPI("GET /count"))
				if err != nil {
					t.Error(err)
					return
				}
				m.CountUsage(&v, "GET /count", []int{200, 404}[i%2])
			}
		})
	}
	wg.Wait()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := m.List(ctx, keys.ListFilter{AccountID: acct})
	if err != nil || len(l.Data) != len(secrets) {
		t.Fatalf("List: %v, %v", l, err)
	}
	for _, k := range l.Data {
		if k.LastUsed == nil || !k.LastUsed.Equal(now) {
			t.Errorf("key %s: last used %v after a flush, want %v", k.ID, k.LastUsed, now)
		}
	}
	// The Manager's memory does not grow with lookups: a Manager that
	// kept its counters in the records it was handed would hold a set per
	// lookup of a store that copies them (about 600 bytes each).
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 20_000 {
		v, err := m.Verify(ctx, secrets[0], keys.OnAPI("GET /count"))
		if err != nil {
			t.Fatal(err)
		}
		m.CountUsage(&v, "GET /count", 200)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
		t.Errorf("20,000 lookups of one key grew the heap by %d bytes", grew)
	}
	if _, ok := store.Capability[store.UsageStore](s); !ok {
		return
	}
	want := int64(workers*each + 20_000)
	half := int64(workers * each / 2)
	check := func(when string) {
		t.Helper()
		u, err := m.UsageSummary(ctx, acct, usage.Filter{Start: now.Add(-time.Hour), End: now.Add(2 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if u.TotalRequests != want || u.Failed != half || u.Successful != want-half {
			t.Fatalf("%s: usage %+v, want %d requests, %d of them failed", when, u.Totals, want, half)
		}
	}
	check("before the minute is flushed")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the minute is flushed")
}

// testManager runs a keys.Manager on the store: every operation of the
// lifecycle, checked through Verify as a host would see it.
func testManager(t *testing.T, s store.Store) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	m, err := keys.New(s, keys.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(ctx); err != nil {
			t.Errorf("Manager.Close: %v", err)
		}
	}()
	acct := "acct_mgr_" + rand.Text()[:8]
	admin, err := m.Create(ctx, keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: []string{"developers:read", "developers:write", "kyb:read"}, AccountID: acct})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	v, err := m.Verify(ctx, string(admin.Key), keys.Require("developers:write"))
	if err != nil || v.KeyID != admin.ID || v.AccountID != acct {
		t.Fatalf("Verify(new key) = %+v, %v", v, err)
	}
	p := v.Principal()
	as := m.As(p)
	advance(time.Second) // distinct creation times give List a definite order

	// An idempotent create on the principal's behalf, retried.
	req := keys.APIKeyCreate{Name: "svc", Environment: keys.Test, Permissions: []string{"kyb:read"}}
	svc, err := as.Create(ctx, req, keys.IdempotencyKey("storetest-create-1"))
	if err != nil {
		t.Fatalf("Scoped Create: %v", err)
	}
	again, err := as.Create(ctx, req, keys.IdempotencyKey("storetest-create-1"))
	if err != nil || !again.Replayed || again.ID != svc.ID || again.Key != svc.Key {
		t.Fatalf("idempotent retry: replayed %v, same key %v, %v", again != nil && again.Replayed, again != nil && again.Key == svc.Key, err)
	}
	if _, err := m.Verify(ctx, string(svc.Key)); err != nil {
		t.Fatalf("Verify(created key): %v", err)
	}

	advance(time.Second)

	// Update is seen by the next Verify.
	if _, err := as.Update(ctx, svc.ID, keys.APIKeyUpdate{Name: keys.Change("renamed"), Permissions: keys.Clear[[]string]()}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	v, err = m.Verify(ctx, string(svc.Key))
	if err != nil || len(v.Permissions) != 0 {
		t.Fatalf("Verify after Update: %+v, %v", v, err)
	}
	if _, err := m.Verify(ctx, string(svc.Key), keys.Require("kyb:read")); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("a removed permission still passes: %v", err)
	}

	// Roll with a grace period: both secrets work until it ends.
	rolled, err := as.Roll(ctx, svc.ID, time.Minute)
	if err != nil {
		t.Fatalf("Roll: %v", err)
	}
	for _, k := range []keys.Secret{svc.Key, rolled.Key} {
		if _, err := m.Verify(ctx, string(k)); err != nil {
			t.Fatalf("during the grace period: %v", err)
		}
	}
	advance(time.Minute)
	if _, err := m.Verify(ctx, string(svc.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("old secret after the grace period: %v, want ErrKeyRevoked", err)
	}
	if _, err := m.Verify(ctx, string(rolled.Key)); err != nil {
		t.Fatalf("new secret after the grace period: %v", err)
	}

	// Revoke holds for the very next Verify.
	if _, err := as.Revoke(ctx, rolled.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if _, err := m.Verify(ctx, string(rolled.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("Verify after Revoke: %v, want ErrKeyRevoked", err)
	}

	// List sees the account's three keys, newest first; last-used times
	// reach the store when flushed.
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	l, err := as.List(ctx, keys.ListFilter{})
	if err != nil || len(l.Data) != 3 {
		t.Fatalf("List: %d keys, %v", len(l.Data), err)
	}
	if l.Data[0].ID != rolled.ID || l.Data[2].ID != admin.ID {
		t.Fatalf("List order: %s, %s, %s", l.Data[0].ID, l.Data[1].ID, l.Data[2].ID)
	}
	for _, k := range l.Data {
		if k.LastUsed == nil {
			t.Fatalf("key %s has no last_used after a flush", k.ID)
		}
	}
	revoked := true
	if l, err := m.List(ctx, keys.ListFilter{AccountID: acct, Revoked: &revoked}); err != nil || len(l.Data) != 2 {
		t.Fatalf("revoked keys: %v, %v", l, err)
	}
	testManagerCarries(t, m, as, advance)
}

// testManagerCarries takes owner, metadata and disable through create,
// Verify, get, list, update and roll on the store.
func testManagerCarries(t *testing.T, m *keys.Manager, as keys.Scoped, advance func(time.Duration)) {
	ctx := context.Background()
	advance(time.Second)
	const meta = `{"plan":"pro","seats":[1,2,3]}`
	c, err := as.Create(ctx, keys.APIKeyCreate{Name: "carry", Environment: keys.Test, OwnerID: "owner-1", Metadata: json.RawMessage(meta)})
	if err != nil {
		t.Fatalf("Create with owner and metadata: %v", err)
	}
	v, err := m.Verify(ctx, string(c.Key))
	if err != nil || v.OwnerID != "owner-1" || string(v.Metadata) != meta {
		t.Fatalf("Verify: %v, owner %q, metadata %s", err, v.OwnerID, v.Metadata)
	}
	if k, err := as.Get(ctx, c.ID); err != nil || k.OwnerID != "owner-1" || string(k.Metadata) != meta || !k.Enabled {
		t.Fatalf("Get: %v %+v", err, k)
	}
	if l, err := as.List(ctx, keys.ListFilter{OwnerID: "owner-1"}); err != nil || len(l.Data) != 1 || l.Data[0].ID != c.ID {
		t.Fatalf("List by owner: %v %+v", err, l)
	}
	if _, err := as.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false), Metadata: keys.Change(json.RawMessage(`{"plan":"free"}`))}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	v, err = m.Verify(ctx, string(c.Key))
	if !errors.Is(err, keys.ErrKeyDisabled) || string(v.Metadata) != `{"plan":"free"}` {
		t.Fatalf("Verify of the disabled key: %v, metadata %s", err, v.Metadata)
	}
	if _, err := as.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(c.Key)); err != nil {
		t.Fatalf("Verify of the re-enabled key: %v", err)
	}
	r, err := as.Roll(ctx, c.ID, 0)
	if err != nil || r.OwnerID != "owner-1" || string(r.Metadata) != `{"plan":"free"}` {
		t.Fatalf("Roll: %v %+v", err, r)
	}
	if v, err := m.Verify(ctx, string(r.Key)); err != nil || v.OwnerID != "owner-1" {
		t.Fatalf("Verify of the successor: %v", err)
	}
}

// testMaxActive checks Write.MaxActive: only records with a zero
// RevokedAt count (a scheduled revocation counts as revoked), other
// accounts never count, a refused write stores nothing (neither the
// record nor its idempotency entry), and concurrent inserts cannot pass
// the cap together, even into an account the store has never seen.
func testMaxActive(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct := "acct_cap_" + rand.Text()[:6]
	bounded := func(r *store.Record, idem *store.IdempotencyRecord, maxActive int) error {
		return s.Write(ctx, store.Write{Insert: r, Idempotency: idem, MaxActive: maxActive})
	}
	var ids []string
	for i := range 3 {
		r := NewRecord(t)
		r.AccountID = acct
		if i == 2 {
			r.RevokedAt = base // inserted revoked: not active
		}
		ids = append(ids, r.ID)
		if err := bounded(r, nil, 3); err != nil {
			t.Fatalf("insert %d under a cap of 3: %v", i, err)
		}
	}
	third := NewRecord(t)
	third.AccountID = acct
	if err := bounded(third, nil, 3); err != nil {
		t.Fatalf("the third active key under a cap of 3: %v", err)
	}
	refused := NewRecord(t)
	refused.AccountID = acct
	e := newIdem(t, refused.ID, base)
	if err := bounded(refused, e, 3); !errors.Is(err, store.ErrKeyLimit) {
		t.Fatalf("a fourth active key under a cap of 3: %v, want ErrKeyLimit", err)
	}
	if _, err := s.Get(ctx, refused.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused record was stored: %v", err)
	}
	if _, err := s.LookupDigest(ctx, refused.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused record's digest was stored: %v", err)
	}
	if _, err := s.LookupIdempotency(ctx, e.Scope, base); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused write's idempotency entry was stored: %v", err)
	}
	if err := bounded(NewRecord(t), nil, 1); err != nil {
		t.Fatalf("another account under a cap of 1: %v", err)
	}
	next := mustGet(t, s, ids[0])
	next.RevokedAt, next.Version = base.Add(time.Hour), next.Version+1 // scheduled, as after a roll
	if err := replace(s, next); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: ids[1], At: base}}); err != nil {
		t.Fatal(err)
	}
	if err := bounded(refused, e, 3); err != nil {
		t.Fatalf("after a revocation made room: %v", err)
	}
	if err := bounded(NewRecord(t), nil, 0); err != nil {
		t.Fatalf("MaxActive 0 is no cap: %v", err)
	}

	fresh := "acct_race_" + rand.Text()[:6]
	const writers, limit = 12, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed, limited := 0, 0
	for range writers {
		wg.Add(1)
		r := NewRecord(t)
		r.AccountID = fresh
		go func() {
			defer wg.Done()
			err := bounded(r, nil, limit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				passed++
			case errors.Is(err, store.ErrKeyLimit):
				limited++
			default:
				t.Errorf("concurrent insert: %v", err)
			}
		}()
	}
	wg.Wait()
	if passed != limit || limited != writers-limit {
		t.Fatalf("%d concurrent inserts under a cap of %d: %d passed, %d refused", writers, limit, passed, limited)
	}
}

// testKeepRevoked checks Write.KeepRevoked: the oldest records revoked by
// the insert's CreatedAt go, with their idempotency entries, until the
// account holds KeepRevoked revoked records; a scheduled revocation (a
// grace period) is counted but never deleted; active records and other
// accounts are untouched; a Replace in the same write counts.
func testKeepRevoked(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct := "acct_keep_" + rand.Text()[:6]
	now := base.Add(10 * time.Hour)
	// r0..r4, oldest first: revoked, active, revoked, scheduled, revoked.
	var rs []*store.Record
	var entry *store.IdempotencyRecord
	for i := range 5 {
		r := NewRecord(t)
		r.AccountID = acct
		r.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		switch i {
		case 0, 2, 4:
			r.RevokedAt = base.Add(time.Hour)
		case 3:
			r.RevokedAt = now.Add(time.Hour) // still in its grace period
		}
		var e *store.IdempotencyRecord
		if i == 0 {
			e = newIdem(t, r.ID, now)
			entry = e
		}
		mustCreate(t, s, r, e)
		rs = append(rs, r)
	}
	other := NewRecord(t)
	other.RevokedAt = base
	mustCreate(t, s, other, nil)

	gone := func(r *store.Record) bool {
		t.Helper()
		_, err := s.Get(ctx, r.ID)
		_, lerr := s.LookupDigest(ctx, r.Digest)
		if errors.Is(err, store.ErrNotFound) != errors.Is(lerr, store.ErrNotFound) {
			t.Fatalf("record %s: Get says %v, LookupDigest %v", r.ID, err, lerr)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err != nil
	}
	check := func(step string, want ...bool) {
		t.Helper()
		for i, r := range rs {
			if g := gone(r); g != want[i] {
				t.Fatalf("%s: record %d deleted: %v, want %v", step, i, g, want[i])
			}
		}
		if gone(other) {
			t.Fatalf("%s: another account's revoked record was deleted", step)
		}
		l, err := s.List(ctx, store.ListQuery{AccountID: acct, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i := range rs {
			if !want[i] {
				n++
			}
		}
		if len(l) != n {
			t.Fatalf("%s: List has %d records, want %d", step, len(l), n)
		}
	}

	r5 := NewRecord(t)
	r5.AccountID, r5.CreatedAt = acct, now
	if err := s.Write(ctx, store.Write{Insert: r5, KeepRevoked: 2}); err != nil {
		t.Fatal(err)
	}
	rs = append(rs, r5)
	check("keep 2 of 4 revoked", true, false, true, false, false, false)
	if _, err := s.LookupIdempotency(ctx, entry.Scope, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a deleted record's idempotency entry remains: %v", err)
	}

	// A roll: the replaced record's revocation counts in the same write,
	// and the record in its grace period is passed over.
	next := mustGet(t, s, rs[1].ID)
	next.RevokedAt, next.Version = now, next.Version+1
	r6 := NewRecord(t)
	r6.AccountID, r6.CreatedAt = acct, now.Add(time.Second)
	if err := s.Write(ctx, store.Write{Replace: next, Insert: r6, KeepRevoked: 2}); err != nil {
		t.Fatal(err)
	}
	rs = append(rs, r6)
	check("a roll keeping 2 of 3 revoked", true, true, true, false, false, false, false)

	r7 := NewRecord(t)
	r7.AccountID, r7.CreatedAt = acct, now.Add(2*time.Second)
	if err := s.Write(ctx, store.Write{Insert: r7, KeepRevoked: 1}); err != nil {
		t.Fatal(err)
	}
	rs = append(rs, r7)
	check("keep 1: only the scheduled one stays", true, true, true, false, true, false, false, false)

	r8 := NewRecord(t)
	r8.AccountID, r8.CreatedAt = acct, now.Add(3*time.Second)
	if err := s.Write(ctx, store.Write{Insert: r8}); err != nil {
		t.Fatal(err)
	}
	rs = append(rs, r8)
	check("KeepRevoked 0 deletes nothing", true, true, true, false, true, false, false, false, false)
}

// testListFiltersWithCursor pages through each filter combination with a
// cursor: every matching record exactly once, newest first, and nothing
// else (a cursor's parameters come after a filter's).
func testListFiltersWithCursor(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct := "acct_fcur_" + rand.Text()[:6]
	var all []*store.Record
	for i := range 12 {
		r := NewRecord(t)
		r.AccountID = acct
		r.CreatedAt = base.Add(time.Duration(i) * time.Second)
		if i%2 == 0 {
			r.Environment = "live"
		}
		if i%3 == 0 {
			r.RevokedAt = base
		}
		mustCreate(t, s, r, nil)
		all = append(all, r)
	}
	yes, no := true, false
	for _, env := range []string{"", "live", "test"} {
		for _, rev := range []*bool{nil, &yes, &no} {
			var want []string
			for i := len(all) - 1; i >= 0; i-- {
				r := all[i]
				if (env == "" || r.Environment == env) && (rev == nil || *rev == !r.RevokedAt.IsZero()) {
					want = append(want, r.ID)
				}
			}
			var got []string
			q := store.ListQuery{AccountID: acct, Environment: env, Revoked: rev, Limit: 2}
			for page := 0; page < 20; page++ {
				rs, err := s.List(ctx, q)
				if err != nil {
					t.Fatalf("env %q revoked %v: %v", env, rev, err)
				}
				for _, r := range rs {
					got = append(got, r.ID)
				}
				if len(rs) < q.Limit {
					break
				}
				last := rs[len(rs)-1]
				q.After = &store.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("env %q revoked %v, paged by 2: %v, want %v", env, rev, got, want)
			}
		}
	}
}

// A record without an owner, metadata or expiry reads back without them
// (nil metadata, not "null" or "{}").
func testNoOptionalFields(t *testing.T, s store.Store) {
	r := NewRecord(t)
	r.OwnerID, r.Metadata, r.ExpiresAt, r.Disabled = "", nil, time.Time{}, store.DisabledByAccount
	want := r.Clone()
	mustCreate(t, s, r, nil)
	if d := Equal(mustGet(t, s, want.ID), want); d != "" {
		t.Fatal(d)
	}
	got, err := s.LookupDigest(context.Background(), want.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if d := Equal(got, want); d != "" || got.Metadata != nil {
		t.Fatalf("LookupDigest: %s (metadata %q)", d, got.Metadata)
	}
}

// List filters by owner, and by an expiry window within one account or,
// with no account, across every account; both in List's order, and with a
// cursor.
func testListOwnerExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	tag := rand.Text()[:6]
	accts := []string{"acct_x_" + tag, "acct_y_" + tag}
	var inWindow []string // IDs expiring in the window, newest first
	for i := range 8 {
		r := NewRecord(t)
		r.AccountID = accts[i/4]
		r.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		r.OwnerID = []string{"alice", "bob"}[i%4/2]
		switch i % 4 {
		case 0: // never expires
			r.ExpiresAt = time.Time{}
		case 1: // before the window
			r.ExpiresAt = base.Add(time.Hour - time.Microsecond)
		case 2: // at its start: in
			r.ExpiresAt = base.Add(time.Hour)
			inWindow = append([]string{r.ID}, inWindow...)
		case 3: // at its end: out
			r.ExpiresAt = base.Add(2 * time.Hour)
		}
		mustCreate(t, s, r, nil)
	}
	list := func(q store.ListQuery) []string {
		t.Helper()
		rs, err := s.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		return ids
	}
	if got := list(store.ListQuery{AccountID: accts[0], OwnerID: "bob", Limit: 100}); len(got) != 2 {
		t.Fatalf("owner bob in %s: %d records, want 2", accts[0], len(got))
	}
	if got := list(store.ListQuery{AccountID: accts[0], OwnerID: "nobody", Limit: 100}); len(got) != 0 {
		t.Fatalf("an owner with no keys: %d records", len(got))
	}
	window := store.ListQuery{ExpiresFrom: base.Add(time.Hour), ExpiresBefore: base.Add(2 * time.Hour), Limit: 100}
	q := window
	q.AccountID = accts[0]
	if got := list(q); len(got) != 1 || got[0] != inWindow[1] {
		t.Fatalf("window in %s: %v, want [%s]", accts[0], got, inWindow[1])
	}
	// Across accounts (other cases' records are outside this window: their
	// expiry is base+30 days).
	if got := list(window); !slices.Equal(got, inWindow) {
		t.Fatalf("window across accounts: %v, want %v", got, inWindow)
	}
	q = window
	q.Limit = 1
	first := list(q)
	last, _ := s.Get(ctx, first[0])
	q.After = &store.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	if got := list(q); len(got) != 1 || got[0] != inWindow[1] {
		t.Fatalf("window across accounts, second page: %v, want [%s]", got, inWindow[1])
	}
}

// A store that is a store.Importer inserts a batch all at once, skipping
// IDs and digests already stored (in the store or earlier in the batch).
func testImport(t *testing.T, s store.Store) {
	imp, ok := s.(store.Importer)
	if !ok {
		t.Skip("not a store.Importer: the Manager imports with one Write per record")
	}
	ctx := context.Background()
	stored := NewRecord(t)
	mustCreate(t, s, stored, nil)
	var batch []*store.Record
	for range 5 {
		batch = append(batch, NewRecord(t))
	}
	dup := NewRecord(t)
	dup.Digest = stored.Digest // already stored: skipped
	again := NewRecord(t)
	again.Digest = batch[0].Digest // twice in the batch: the first wins
	sameID := NewRecord(t)
	sameID.ID = stored.ID // an ID already stored: skipped
	want := make([]*store.Record, len(batch))
	for i, r := range batch {
		want[i] = r.Clone()
	}
	batch = append(batch, dup, again, sameID)
	n, err := imp.Import(ctx, batch)
	if err != nil || n != 5 {
		t.Fatalf("Import = %d, %v; want 5 inserted", n, err)
	}
	for _, w := range want {
		if d := Equal(mustGet(t, s, w.ID), w); d != "" {
			t.Fatal(d)
		}
		got, err := s.LookupDigest(ctx, w.Digest)
		if err != nil || got.ID != w.ID {
			t.Fatalf("LookupDigest of an imported record: %v", err)
		}
	}
	for _, id := range []string{dup.ID, again.ID} {
		if _, err := s.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a skipped record was stored (%v)", err)
		}
	}
	if got := mustGet(t, s, stored.ID); got.Digest != stored.Digest {
		t.Fatal("a record with a stored ID replaced the stored one")
	}
	if _, err := s.LookupDigest(ctx, sameID.Digest); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the record with a stored ID was stored under its digest (%v)", err)
	}
	if n, err := imp.Import(ctx, []*store.Record{NewRecordLike(t, want[1])}); err != nil || n != 0 {
		t.Fatalf("importing a stored digest again = %d, %v; want 0", n, err)
	}
}

// testUsage checks a store.UsageStore: minute rows add up, roll up into
// their hour and UTC day, a batch added twice counts once, and queries
// filter by account, key, API and period (From inclusive, To exclusive).
func testUsage(t *testing.T, s store.Store) {
	us, ok := s.(store.UsageStore)
	if !ok {
		t.Skip("not a store.UsageStore: usage is neither kept nor served")
	}
	ctx := context.Background()
	day := time.Date(2031, 5, 6, 0, 0, 0, 0, time.UTC)
	row := func(at time.Duration, acct, key, api string, s, f, l int64) store.UsageRow {
		return store.UsageRow{Bucket: day.Add(at), AccountID: acct, KeyID: key, API: api, Successful: s, Failed: f + l, RateLimited: l}
	}
	b1 := store.UsageBatch{ID: "7d9f3f8e0a1b4c2d9e8f7a6b5c4d3e2f", Rows: []store.UsageRow{
		row(10*time.Minute, "acct_u", "key_a", "identity", 5, 1, 0),
		row(10*time.Minute, "acct_u", "key_a", "identity", 2, 0, 1), // the same bucket twice: adds up
		row(70*time.Minute, "acct_u", "key_b", "identity", 1, 0, 0),
		row(70*time.Minute, "acct_u", "key_b", "fraud", 0, 3, 0),
		row(25*time.Hour, "acct_u", "key_a", "fraud", 4, 0, 0), // the next day
		row(10*time.Minute, "acct_v", "key_v", "identity", 100, 0, 0),
	}}
	if err := us.AddUsage(ctx, b1); err != nil {
		t.Fatal(err)
	}
	if err := us.AddUsage(ctx, b1); err != nil { // a retried flush
		t.Fatal(err)
	}
	b2 := store.UsageBatch{ID: "0a1b2c3d4e5f60718293a4b5c6d7e8f9", Rows: []store.UsageRow{row(10*time.Minute, "acct_u", "key_a", "identity", 1, 0, 0)}}
	if err := us.AddUsage(ctx, b2); err != nil {
		t.Fatal(err)
	}
	query := func(q store.UsageQuery) string {
		t.Helper()
		if q.AccountID == "" {
			q.AccountID = "acct_u"
		}
		rows, err := us.Usage(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rows {
			if r.KeyID != "" || r.AccountID != q.AccountID {
				t.Fatalf("row %+v: want the account, and no key", r)
			}
			out = append(out, fmt.Sprintf("%s %s %d/%d/%d", r.Bucket.Sub(day), r.API, r.Successful, r.Failed, r.RateLimited)) // failed includes rate-limited
		}
		return strings.Join(out, "; ")
	}
	for _, c := range []struct {
		q    store.UsageQuery
		want string
	}{
		{store.UsageQuery{Granularity: usage.Minute, From: day, To: day.Add(2 * time.Hour)}, "10m0s identity 8/2/1; 1h10m0s fraud 0/3/0; 1h10m0s identity 1/0/0"},
		{store.UsageQuery{Granularity: usage.Minute, From: day.Add(10 * time.Minute), To: day.Add(70 * time.Minute)}, "10m0s identity 8/2/1"},
		{store.UsageQuery{Granularity: usage.Hour, From: day, To: day.Add(48 * time.Hour)}, "0s identity 8/2/1; 1h0m0s fraud 0/3/0; 1h0m0s identity 1/0/0; 25h0m0s fraud 4/0/0"},
		{store.UsageQuery{Granularity: usage.Day, From: day, To: day.Add(48 * time.Hour)}, "0s fraud 0/3/0; 0s identity 9/2/1; 24h0m0s fraud 4/0/0"},
		{store.UsageQuery{Granularity: usage.Day, From: day, To: day.Add(48 * time.Hour), KeyID: "key_b"}, "0s fraud 0/3/0; 0s identity 1/0/0"},
		{store.UsageQuery{Granularity: usage.Day, From: day, To: day.Add(48 * time.Hour), API: "fraud"}, "0s fraud 0/3/0; 24h0m0s fraud 4/0/0"},
		{store.UsageQuery{Granularity: usage.Day, From: day.Add(24 * time.Hour), To: day.Add(48 * time.Hour)}, "24h0m0s fraud 4/0/0"},
		{store.UsageQuery{Granularity: usage.Day, From: day, To: day.Add(24 * time.Hour), AccountID: "acct_v"}, "0s identity 100/0/0"},
		{store.UsageQuery{Granularity: usage.Day, From: day, To: day.Add(24 * time.Hour), AccountID: "acct_none"}, ""},
	} {
		if got := query(c.q); got != c.want {
			t.Errorf("%v %s..%s key %q api %q:\n got %s\nwant %s", c.q.Granularity, c.q.From.Sub(day), c.q.To.Sub(day), c.q.KeyID, c.q.API, got, c.want)
		}
	}
}

// NewRecordLike returns a new record (new ID) with r's digest.
func NewRecordLike(t testing.TB, r *store.Record) *store.Record {
	n := NewRecord(t)
	n.Digest = r.Digest
	return n
}

// creditStore is s's store.CreditStore, or skips the test.
func creditStore(t *testing.T, s store.Store) store.CreditStore {
	t.Helper()
	cs, ok := s.(store.CreditStore)
	if !ok {
		t.Skip("not a store.CreditStore: keys cannot have credits")
	}
	return cs
}

// withBudget inserts a record naming a budget of its own holding c.
func withBudget(t *testing.T, s store.Store, c store.Budget) *store.Record {
	t.Helper()
	r := NewRecord(t)
	r.CreditsID = r.ID
	if err := s.Write(context.Background(), store.Write{Insert: r, Credits: &store.CreditBudget{ID: r.ID, Budget: c}}); err != nil {
		t.Fatalf("Write(Insert, Credits): %v", err)
	}
	return r
}

// spend is SpendCredits, failing the test on an error other than
// ErrCreditsExhausted; it reports whether the spend passed.
func spend(t *testing.T, cs store.CreditStore, id string, cost int64, now time.Time, wantRemaining int64) bool {
	t.Helper()
	c, err := cs.SpendCredits(context.Background(), id, cost, now)
	if err != nil && !errors.Is(err, store.ErrCreditsExhausted) {
		t.Fatalf("SpendCredits(%d): %v", cost, err)
	}
	if c.Remaining != wantRemaining {
		t.Fatalf("SpendCredits(%d) at %s: %d remaining (err %v), want %d", cost, now.Format(time.RFC3339), c.Remaining, err, wantRemaining)
	}
	return err == nil
}

// testCredits checks a store.CreditStore: a Write sets a budget with the
// record naming it, all or nothing; spends take exactly their cost and
// never go below zero; a refill happens once, at the first spend or read
// of a new UTC day or month, and sets (not adds); a Replace that sets no
// budget leaves it as it is; a roll's successor shares it.
func testCredits(t *testing.T, s store.Store) {
	cs := creditStore(t, s)
	ctx := context.Background()
	now := base

	r := withBudget(t, s, store.Budget{Remaining: 10})
	if got := mustGet(t, s, r.ID); got.CreditsID != r.ID {
		t.Fatalf("CreditsID %q after the insert, want %q", got.CreditsID, r.ID)
	}
	got, err := cs.ReadCredits(ctx, []string{r.ID, "key_no_such_budget"}, now)
	if err != nil || len(got) != 1 || got[r.ID].Remaining != 10 || got[r.ID].Refill != nil {
		t.Fatalf("ReadCredits = %+v, %v; want only %s with 10 remaining and no refill", got, err, r.ID)
	}
	if !spend(t, cs, r.ID, 3, now, 7) {
		t.Fatal("a spend of 3 from 10 was refused")
	}
	if spend(t, cs, r.ID, 8, now, 7) {
		t.Fatal("a spend of 8 from 7 passed")
	}
	if !spend(t, cs, r.ID, 7, now, 0) {
		t.Fatal("a spend of exactly what remains was refused")
	}
	if spend(t, cs, r.ID, 1, now.Add(400*24*time.Hour), 0) {
		t.Fatal("a budget without a refill refilled itself")
	}
	if _, err := cs.SpendCredits(ctx, "key_no_such_budget", 1, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("spending an unknown budget: %v, want ErrNotFound", err)
	}

	// A Replace that sets no budget keeps it; one that does sets it.
	spent := withBudget(t, s, store.Budget{Remaining: 5})
	spend(t, cs, spent.ID, 2, now, 3)
	next := mustGet(t, s, spent.ID).Clone()
	next.Name, next.Version = "renamed", next.Version+1
	if err := replace(s, next); err != nil {
		t.Fatal(err)
	}
	if got, _ := cs.ReadCredits(ctx, []string{spent.ID}, now); got[spent.ID].Remaining != 3 {
		t.Fatalf("a Replace without Credits changed the budget to %+v, want 3 remaining", got[spent.ID])
	}
	next = next.Clone()
	next.Version++
	if err := s.Write(ctx, store.Write{Replace: next, Credits: &store.CreditBudget{ID: spent.ID, Budget: store.Budget{Remaining: 50}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cs.ReadCredits(ctx, []string{spent.ID}, now); got[spent.ID].Remaining != 50 {
		t.Fatalf("a Replace with Credits left %+v, want 50 remaining", got[spent.ID])
	}

	// A roll: the successor names the same budget; spends through either
	// ID's record are one budget's.
	old := mustGet(t, s, spent.ID).Clone()
	old.Version++
	old.RevokedAt = now.Add(time.Hour)
	succ := NewRecord(t)
	succ.AccountID, succ.CreditsID = old.AccountID, old.CreditsID
	if err := s.Write(ctx, store.Write{Replace: old, Insert: succ}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, succ.ID); got.CreditsID != spent.ID {
		t.Fatalf("the successor names budget %q, want %q", got.CreditsID, spent.ID)
	}
	spend(t, cs, succ.CreditsID, 20, now, 30)

	// All or nothing: a duplicate insert sets no budget, and a budget no
	// record of the Write names is refused with nothing written.
	dup := NewRecordLike(t, r)
	dup.ID, dup.CreditsID = r.ID, r.ID
	if err := s.Write(ctx, store.Write{Insert: dup, Credits: &store.CreditBudget{ID: r.ID, Budget: store.Budget{Remaining: 999}}}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a duplicate insert with a budget: %v, want ErrDuplicate", err)
	}
	if got, _ := cs.ReadCredits(ctx, []string{r.ID}, now); got[r.ID].Remaining != 0 {
		t.Fatalf("a refused insert set the budget to %+v", got[r.ID])
	}
	stray := NewRecord(t)
	if err := s.Write(ctx, store.Write{Insert: stray, Credits: &store.CreditBudget{ID: "key_someone_else", Budget: store.Budget{Remaining: 1}}}); err == nil {
		t.Fatal("a Write set a budget that its record does not name")
	}
	if _, err := s.Get(ctx, stray.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused Write stored its record: %v", err)
	}
	if got, _ := cs.ReadCredits(ctx, []string{"key_someone_else"}, now); len(got) != 0 {
		t.Fatalf("the refused Write stored its budget: %+v", got)
	}

	// ByHost is kept, through a set, a spend and a read.
	hostSet := withBudget(t, s, store.Budget{Remaining: 4, ByHost: true})
	if c, err := cs.SpendCredits(ctx, hostSet.ID, 1, now); err != nil || !c.ByHost || c.Remaining != 3 {
		t.Fatalf("spending a budget the host set: %+v, %v; want ByHost and 3 remaining", c, err)
	}
	if got, _ := cs.ReadCredits(ctx, []string{hostSet.ID, r.ID}, now); !got[hostSet.ID].ByHost || got[r.ID].ByHost {
		t.Fatalf("ReadCredits lost ByHost: %+v", got)
	}

	// A daily refill: set to the amount once per UTC day, at the day's
	// first spend or read; not before midnight; what is left does not
	// carry over.
	day := time.Date(2031, 5, 6, 0, 0, 0, 0, time.UTC)
	daily := withBudget(t, s, store.Budget{Remaining: 2, Refill: &credits.Refill{Interval: credits.Daily, Amount: 5}, Period: day})
	spend(t, cs, daily.ID, 2, day.Add(time.Hour), 0)
	if spend(t, cs, daily.ID, 1, day.Add(24*time.Hour-time.Nanosecond), 0) {
		t.Fatal("a daily budget refilled before midnight")
	}
	if got, _ := cs.ReadCredits(ctx, []string{daily.ID}, day.Add(24*time.Hour)); got[daily.ID].Remaining != 5 || got[daily.ID].Refill == nil ||
		*got[daily.ID].Refill != (credits.Refill{Interval: credits.Daily, Amount: 5}) {
		t.Fatalf("read at midnight: %+v, want 5 remaining and the daily refill", got[daily.ID])
	}
	spend(t, cs, daily.ID, 1, day.Add(24*time.Hour), 4)
	spend(t, cs, daily.ID, 1, day.Add(47*time.Hour), 3) // the same day: no second refill
	spend(t, cs, daily.ID, 1, day.Add(72*time.Hour+time.Minute), 4)

	// A monthly refill, at the start of the UTC calendar month.
	month := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	monthly := withBudget(t, s, store.Budget{Remaining: 1, Refill: &credits.Refill{Interval: credits.Monthly, Amount: 1000}, Period: month})
	spend(t, cs, monthly.ID, 1, month.Add(30*24*time.Hour+23*time.Hour), 0) // Jan 31, 23:00
	if spend(t, cs, monthly.ID, 1, time.Date(2031, 1, 31, 23, 59, 59, 0, time.UTC), 0) {
		t.Fatal("a monthly budget refilled before the month ended")
	}
	spend(t, cs, monthly.ID, 10, time.Date(2031, 2, 1, 0, 0, 0, 0, time.UTC), 990)
	spend(t, cs, monthly.ID, 990, time.Date(2031, 2, 28, 23, 0, 0, 0, time.UTC), 0)
	spend(t, cs, monthly.ID, 1, time.Date(2031, 3, 1, 0, 0, 1, 0, time.UTC), 999)
}

// testCreditsConcurrent checks that concurrent spends of one budget pass
// exactly as many times as it holds, each taking a distinct credit.
func testCreditsConcurrent(t *testing.T, s store.Store) {
	cs := creditStore(t, s)
	const budget, workers = 200, 12
	r := withBudget(t, s, store.Budget{Remaining: budget})
	var mu sync.Mutex
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range budget + 1 { // bounded: a store that never runs out fails below, not by hanging
				c, err := cs.SpendCredits(context.Background(), r.ID, 1, base)
				if errors.Is(err, store.ErrCreditsExhausted) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[c.Remaining] || c.Remaining < 0 {
					t.Errorf("a spend left %d remaining twice, or below zero", c.Remaining)
				}
				seen[c.Remaining] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != budget {
		t.Fatalf("%d workers spent %d credits of a budget of %d", workers, len(seen), budget)
	}
	if got, _ := cs.ReadCredits(context.Background(), []string{r.ID}, base); got[r.ID].Remaining != 0 {
		t.Fatalf("%d remaining after the budget was spent", got[r.ID].Remaining)
	}
}

// testMarks: a mark is new once until it expires, then new again; marks
// are independent; Unmark makes it new at once; of concurrent marks of one
// name exactly one is new.
func testMarks(t *testing.T, s store.Store) {
	mk, ok := s.(store.Marker)
	if !ok {
		t.Skip("not a store.Marker: the Manager remembers marks in its own memory")
	}
	ctx := context.Background()
	var a, b store.Digest
	if _, err := rand.Read(a[:]); err != nil {
		t.Fatal(err)
	}
	copy(b[:], a[:])
	b[31] ^= 1
	mark := func(d store.Digest, until, now time.Time) bool {
		t.Helper()
		fresh, err := mk.Mark(ctx, d, until, now)
		if err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	day := base.Add(24 * time.Hour)
	marked := func(d store.Digest, now time.Time) bool {
		t.Helper()
		ok, err := mk.Marked(ctx, d, now)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if marked(a, base) {
		t.Fatal("Marked reports a mark never made")
	}
	if marked(a, base) || !mark(a, day, base) || mark(a, day, base.Add(time.Hour)) {
		t.Fatal("a mark is not new exactly once before it expires (or Marked recorded one)")
	}
	if !marked(a, base.Add(time.Hour)) || marked(a, day) || marked(b, base) {
		t.Fatal("Marked does not report exactly the unexpired marks")
	}
	if !mark(b, day, base) {
		t.Fatal("a second mark was taken for the first")
	}
	if !mark(a, day.Add(24*time.Hour), day) || mark(a, day.Add(24*time.Hour), day) {
		t.Fatal("an expired mark is not new again, exactly once")
	}
	if err := mk.Unmark(ctx, b); err != nil {
		t.Fatal(err)
	}
	if marked(b, base) || !mark(b, day, base) {
		t.Fatal("an unmarked mark is still marked, or not new")
	}
	var none store.Digest
	if err := mk.Unmark(ctx, none); err != nil {
		t.Fatalf("unmarking a mark never made: %v", err)
	}
	var c store.Digest
	if _, err := rand.Read(c[:]); err != nil {
		t.Fatal(err)
	}
	var fresh atomic.Int64
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := mk.Mark(ctx, c, day, base)
			if err != nil {
				t.Error(err)
			}
			if ok {
				fresh.Add(1)
			}
		}()
	}
	wg.Wait()
	if fresh.Load() != 1 {
		t.Fatalf("%d of 12 concurrent marks of one name were new; want 1", fresh.Load())
	}
}

// testCreditsSetAndRefunded: a budget set on its own (an account's) is
// read and spent like any, replaced and deleted by SetCredits; a refund
// gives a spend back within its period only, never beyond credits.Max.
func testCreditsSetAndRefunded(t *testing.T, s store.Store) {
	cs := creditStore(t, s)
	ctx := context.Background()
	id := "account:acct_" + rand.Text()[:8]
	if err := cs.SetCredits(ctx, id, &store.Budget{Remaining: 5, ByHost: true}); err != nil {
		t.Fatal(err)
	}
	b, err := cs.SpendCredits(ctx, id, 2, base)
	if err != nil || b.Remaining != 3 || !b.ByHost {
		t.Fatalf("a spend of a budget set on its own: %+v, %v; want 3 left", b, err)
	}
	if err := cs.RefundCredits(ctx, id, 2, b.Period); err != nil {
		t.Fatal(err)
	}
	if got, err := cs.ReadCredits(ctx, []string{id}, base); err != nil || got[id].Remaining != 5 {
		t.Fatalf("after the refund: %+v, %v; want 5", got, err)
	}
	if err := cs.SetCredits(ctx, id, &store.Budget{Remaining: credits.Max}); err != nil {
		t.Fatal(err)
	}
	if err := cs.RefundCredits(ctx, id, 7, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := cs.ReadCredits(ctx, []string{id}, base); got[id].Remaining != credits.Max || got[id].ByHost {
		t.Fatalf("a refund past the maximum, or the replaced budget: %+v", got[id])
	}
	// A daily budget spent yesterday, refilled today: yesterday's refund
	// changes nothing.
	daily := &credits.Refill{Interval: credits.Daily, Amount: 10}
	day := credits.Daily.PeriodStart(base)
	if err := cs.SetCredits(ctx, id, &store.Budget{Remaining: 10, Refill: daily, Period: day}); err != nil {
		t.Fatal(err)
	}
	b, err = cs.SpendCredits(ctx, id, 4, base)
	if err != nil || b.Remaining != 6 {
		t.Fatalf("%+v, %v", b, err)
	}
	tomorrow := base.Add(24 * time.Hour)
	if b2, err := cs.SpendCredits(ctx, id, 1, tomorrow); err != nil || b2.Remaining != 9 {
		t.Fatalf("the next day's spend: %+v, %v; want the refill less 1", b2, err)
	}
	if err := cs.RefundCredits(ctx, id, 4, b.Period); err != nil {
		t.Fatal(err)
	}
	if got, _ := cs.ReadCredits(ctx, []string{id}, tomorrow); got[id].Remaining != 9 {
		t.Fatalf("a refund of yesterday's spend after today's refill: %d left, want 9", got[id].Remaining)
	}
	if err := cs.SetCredits(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.SpendCredits(ctx, id, 1, tomorrow); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a spend of a deleted budget: %v", err)
	}
	if err := cs.RefundCredits(ctx, id, 1, time.Time{}); err != nil {
		t.Fatalf("a refund of a deleted budget: %v", err)
	}
}

func logStore(t *testing.T, s store.Store) store.LogStore {
	ls, ok := s.(store.LogStore)
	if !ok {
		t.Skip("not a store.LogStore: no request log is kept")
	}
	return ls
}

// logEntry is an entry of acct at base+at, with a status and key.
func logEntry(acct, id string, at time.Duration, key string, status int) reqlog.Entry {
	return reqlog.Entry{RequestID: id, Timestamp: base.Add(at).UTC(), AccountID: acct, KeyID: key, Environment: "test",
		Method: "GET", Path: "GET /v1/ping", API: "GET /v1/ping", Status: status, Latency: 1500 * time.Microsecond,
		IP: netip.MustParseAddr("192.0.2.0"), UserAgent: "curl/8", RequestBytes: 12, ResponseBytes: 345}
}

func addLogs(t *testing.T, ls store.LogStore, b store.LogBatch) int {
	t.Helper()
	if b.ID == "" {
		b.ID = rand.Text()
	}
	if b.MaxPerDay == 0 {
		b.MaxPerDay = 1_000_000
	}
	dropped, err := ls.AddLogs(context.Background(), b)
	if err != nil {
		t.Fatalf("AddLogs: %v", err)
	}
	return dropped
}

func readLogs(t *testing.T, ls store.LogStore, q store.LogQuery) []string {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 101
	}
	got, err := ls.Logs(context.Background(), q)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	var ids []string
	for _, e := range got {
		if e.AccountID != q.AccountID {
			t.Fatalf("Logs of %s gave an entry of %s", q.AccountID, e.AccountID)
		}
		ids = append(ids, e.RequestID)
	}
	return ids
}

// testLogs: entries read back whole, newest first, filtered, paged by
// cursor, per account; a batch added twice is stored once.
func testLogs(t *testing.T, s store.Store) {
	ls := logStore(t, s)
	a, b := "acct_"+rand.Text()[:8], "acct_"+rand.Text()[:8]
	batch := store.LogBatch{ID: rand.Text(), Entries: []reqlog.Entry{
		logEntry(a, "req_1", 1*time.Second, "key_x", 200),
		logEntry(a, "req_3", 3*time.Second, "key_y", 429),
		logEntry(a, "req_2", 2*time.Second, "key_x", 401),
		logEntry(b, "req_b", 2*time.Second, "key_b", 200),
		logEntry(a, "req_5", 3*time.Second, "key_x", 503), // as old as req_3: the larger ID first
	}}
	batch.Entries[1].Limit, batch.Entries[1].ErrorType, batch.Entries[1].ErrorCode = "key", "rate_limit_error", "rate_limit_exceeded"
	batch.Entries[2].Method = "POST"
	batch.Entries[4].Environment, batch.Entries[4].API = "live", "other"
	want := batch.Entries[1]
	addLogs(t, ls, batch)
	addLogs(t, ls, batch) // a retried flush: nothing twice
	got, err := ls.Logs(context.Background(), store.LogQuery{AccountID: a, RequestID: "req_3", Limit: 10})
	if err != nil || len(got) != 1 {
		t.Fatalf("by request ID: %v %v", got, err)
	}
	if g := got[0]; g.RequestID != want.RequestID || !g.Timestamp.Equal(want.Timestamp) || g.AccountID != want.AccountID || g.KeyID != want.KeyID ||
		g.Environment != want.Environment || g.Method != want.Method || g.Path != want.Path || g.API != want.API || g.Status != want.Status ||
		g.ErrorType != want.ErrorType || g.ErrorCode != want.ErrorCode || g.Limit != want.Limit || g.Latency != want.Latency ||
		g.IP != want.IP || g.UserAgent != want.UserAgent || g.RequestBytes != want.RequestBytes || g.ResponseBytes != want.ResponseBytes {
		t.Fatalf("read back\n %+v\nwant\n %+v", g, want)
	}
	for _, c := range []struct {
		q    store.LogQuery
		want string
	}{
		{store.LogQuery{AccountID: a}, "req_5 req_3 req_2 req_1"},
		{store.LogQuery{AccountID: b}, "req_b"},
		{store.LogQuery{AccountID: "acct_none"}, ""},
		{store.LogQuery{AccountID: a, KeyID: "key_x"}, "req_5 req_2 req_1"},
		{store.LogQuery{AccountID: a, KeyID: "key_b"}, ""},
		{store.LogQuery{AccountID: a, Status: reqlog.Status{Min: 400, Max: 499}}, "req_3 req_2"},
		{store.LogQuery{AccountID: a, Status: reqlog.Status{Min: 429, Max: 429}}, "req_3"},
		{store.LogQuery{AccountID: a, Method: "POST"}, "req_2"},
		{store.LogQuery{AccountID: a, API: "other"}, "req_5"},
		{store.LogQuery{AccountID: a, Environment: "test"}, "req_3 req_2 req_1"},
		{store.LogQuery{AccountID: a, Start: base.Add(2 * time.Second), End: base.Add(3 * time.Second)}, "req_2"},
		{store.LogQuery{AccountID: a, Limit: 2}, "req_5 req_3"},
		{store.LogQuery{AccountID: a, After: &store.LogCursor{Timestamp: base.Add(3 * time.Second), RequestID: "req_5"}}, "req_3 req_2 req_1"},
		{store.LogQuery{AccountID: a, After: &store.LogCursor{Timestamp: base.Add(3 * time.Second), RequestID: "req_3"}, Limit: 1}, "req_2"},
		{store.LogQuery{AccountID: a, KeyID: "key_x", After: &store.LogCursor{Timestamp: base.Add(2 * time.Second), RequestID: "req_2"}}, "req_1"},
	} {
		if got := strings.Join(readLogs(t, ls, c.q), " "); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.q, got, c.want)
		}
	}
	// A host's ID seen twice: both kept, the newest first.
	addLogs(t, ls, store.LogBatch{Entries: []reqlog.Entry{logEntry(a, "req_1", 4*time.Second, "key_y", 204)}})
	got, err = ls.Logs(context.Background(), store.LogQuery{AccountID: a, RequestID: "req_1", Limit: 1})
	if err != nil || len(got) != 1 || got[0].Status != 204 {
		t.Fatalf("the newest of an ID seen twice: %+v %v", got, err)
	}
}

// testLogsDailyCap: past MaxPerDay an account's entries of a UTC day are
// dropped and counted, across batches; another account's and the next
// day's are kept.
func testLogsDailyCap(t *testing.T, s store.Store) {
	ls := logStore(t, s)
	flood, quiet := "acct_"+rand.Text()[:8], "acct_"+rand.Text()[:8]
	var es []reqlog.Entry
	for i := range 8 {
		es = append(es, logEntry(flood, fmt.Sprintf("req_f%d", i), time.Duration(i)*time.Millisecond, "key_f", 200))
	}
	es = append(es, logEntry(quiet, "req_q", 0, "key_q", 200))
	if d := addLogs(t, ls, store.LogBatch{Entries: es, MaxPerDay: 5}); d != 3 {
		t.Fatalf("dropped %d of 8 with a cap of 5, want 3", d)
	}
	more := []reqlog.Entry{logEntry(flood, "req_g", time.Second, "key_f", 200), logEntry(quiet, "req_q2", time.Second, "key_q", 200),
		logEntry(flood, "req_next_day", 24*time.Hour, "key_f", 200)}
	if d := addLogs(t, ls, store.LogBatch{Entries: more, MaxPerDay: 5}); d != 1 {
		t.Fatalf("dropped %d in the second batch, want 1 (the flood's; not the quiet account's, not the next day's)", d)
	}
	if n := len(readLogs(t, ls, store.LogQuery{AccountID: flood})); n != 6 {
		t.Fatalf("the flooding account keeps %d, want 5 and the next day's", n)
	}
	if got := strings.Join(readLogs(t, ls, store.LogQuery{AccountID: quiet}), " "); got != "req_q2 req_q" {
		t.Fatalf("the quiet account keeps %q", got)
	}
}

// testLogsPrune: PruneLogs deletes entries of the days before before's,
// keeps those at or after it, and at most a day more.
func testLogsPrune(t *testing.T, s store.Store) {
	ls := logStore(t, s)
	acct := "acct_" + rand.Text()[:8]
	day := base.Truncate(24 * time.Hour)
	var es []reqlog.Entry
	for d := range 10 {
		es = append(es, logEntry(acct, fmt.Sprintf("req_d%d", d), day.Add(time.Duration(d)*24*time.Hour+time.Hour).Sub(base), "key_p", 200))
	}
	addLogs(t, ls, store.LogBatch{Entries: es})
	if err := ls.PruneLogs(context.Background(), day.Add(7*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := readLogs(t, ls, store.LogQuery{AccountID: acct})
	if len(got) < 3 || len(got) > 4 || got[0] != "req_d9" || got[2] != "req_d7" {
		t.Fatalf("after pruning before day 7: %v, want days 9 to 7 (and 6 at most)", got)
	}
}

// testManagerLogs: a Manager on the store records every request LogRequest
// is given and reads each back by its ID, across the flush.
func testManagerLogs(t *testing.T, s store.Store) {
	logStore(t, s)
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	acct := "acct_" + rand.Text()[:8]
	for i := range 250 {
		m.LogRequest(&reqlog.Entry{RequestID: fmt.Sprintf("req_m%03d", i), Timestamp: time.Now().UTC(), AccountID: acct, Method: "GET", Path: "/", Status: 200 + i%3})
	}
	m.LogRequest(&reqlog.Entry{RequestID: "req_nobody", Timestamp: time.Now(), Status: 401}) // no account: never stored
	p, err := m.Logs(context.Background(), acct, reqlog.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := len(p.Data)
	for p.HasMore {
		if p, err = m.Logs(context.Background(), acct, reqlog.Filter{Limit: 100, Cursor: p.NextCursor}); err != nil {
			t.Fatal(err)
		}
		n += len(p.Data)
	}
	if n != 250 {
		t.Fatalf("read %d entries back, want 250", n)
	}
	e, err := m.Log(context.Background(), acct, "req_m042")
	if err != nil || e.Status != 200 {
		t.Fatalf("req_m042: %+v %v", e, err)
	}
	if _, err := m.Log(context.Background(), acct, "req_nobody"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("an entry of no account was stored: %v", err)
	}
}
