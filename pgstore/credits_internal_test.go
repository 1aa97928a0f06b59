package pgstore

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// The sweep deletes the budgets no key names and that were not set on a
// stored key (a pruned key's), and keeps the others: one a key names, one
// a roll's successor names after its predecessor went, and one whose key
// cleared its credits (that key may set them again under the same ID).
// It runs at most once an hour per instance.
func TestSweepDeletesOnlyUnnamedBudgets(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	s := openStore(t, pool, schema)
	withBudget := func(creditsID string) *store.Record {
		r := storetest.NewRecord(t)
		r.CreditsID = creditsID
		if creditsID == "" {
			r.CreditsID = r.ID
		}
		if err := s.Write(ctx, store.Write{Insert: r, Credits: &store.CreditBudget{ID: r.CreditsID, Budget: store.Budget{Remaining: 3}}}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	named := withBudget("")
	pruned := withBudget("")
	root := withBudget("")
	succ := storetest.NewRecord(t)
	succ.CreditsID = root.ID
	if err := s.Write(ctx, store.Write{Insert: succ}); err != nil {
		t.Fatal(err)
	}
	cleared := withBudget("")
	next := cleared.Clone()
	next.CreditsID, next.Version = "", next.Version+1
	if err := s.Write(ctx, store.Write{Replace: next}); err != nil {
		t.Fatal(err)
	}
	// Deleted as the history bound deletes them.
	if _, err := pool.Exec(ctx, s.sql(`DELETE FROM {{schema}}.api_keys WHERE id = ANY($1)`), []string{pruned.ID, root.ID}); err != nil {
		t.Fatal(err)
	}
	budgets := func() []string {
		rows, _ := pool.Query(ctx, s.sql(`SELECT id FROM {{schema}}.key_credits ORDER BY id`))
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	now := time.Now()
	if err := s.sweepCredits(ctx, now); err != nil {
		t.Fatal(err)
	}
	want := []string{named.ID, root.ID, cleared.ID}
	slices.Sort(want)
	if got := budgets(); !slices.Equal(got, want) {
		t.Fatalf("after the sweep: %v, want %v (the pruned key's %s gone)", got, want, pruned.ID)
	}
	// Within the hour (to the nanosecond) the sweep does not run again; at the hour it does.
	if _, err := pool.Exec(ctx, s.sql(`DELETE FROM {{schema}}.api_keys WHERE id = $1`), named.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.sweepCredits(ctx, now.Add(time.Hour-time.Nanosecond)); err != nil || len(budgets()) != 3 {
		t.Fatalf("a second sweep within the hour: %v, %v", budgets(), err)
	}
	if err := s.sweepCredits(ctx, now.Add(time.Hour)); err != nil || len(budgets()) != 2 {
		t.Fatalf("the sweep an hour on: %v, %v", budgets(), err)
	}
}

// A schema at migration 7, with keys in it, migrates to 8: the keys read
// back without credits, and Verify on them works.
func TestMigrationToCreditsKeepsKeys(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	s, err := New(pool, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	if err := s.migrateTo(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, s.sql(`INSERT INTO {{schema}}.api_keys (id, account_id, name, prefix, environment, digest, created_at, version)
VALUES ('key_old', 'acct_old', 'before credits', 'txc_live_ab', 'live', $1, now(), 1)`), make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(ctx, "key_old")
	if err != nil || r.CreditsID != "" || r.Name != "before credits" {
		t.Fatalf("the old key after migration 8: %+v, %v", r, err)
	}
}

// A flood of requests on a spent key costs this instance two queries a
// second, not two a request; a raise through this instance is seen at
// once, one through another within the second, and a refill ends the
// refusal at its instant.
func TestSpentBudgetFloodIsAnsweredLocally(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	a, b := openStore(t, pool, schema), openStore(t, pool, schema)
	r := storetest.NewRecord(t)
	r.CreditsID = r.ID
	if err := a.Write(ctx, store.Write{Insert: r, Credits: &store.CreditBudget{ID: r.ID, Budget: store.Budget{Remaining: 0}}}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2031, 5, 6, 12, 0, 0, 0, time.UTC)
	for range 2000 {
		if _, err := a.SpendCredits(ctx, r.ID, 1, now); !errors.Is(err, store.ErrCreditsExhausted) {
			t.Fatal(err)
		}
	}
	if st := a.Stats(); st.CreditQueries != 2 || st.SpentRefusals != 1999 {
		t.Fatalf("2,000 spends of a spent budget: %d queries, %d answered locally; want 2 and 1,999", st.CreditQueries, st.SpentRefusals)
	}
	// Raised through the other instance: this one refuses until the
	// second is up, then spends.
	next := mustGetRecord(t, b, r.ID).Clone()
	next.Version++
	if err := b.Write(ctx, store.Write{Replace: next, Credits: &store.CreditBudget{ID: r.ID, Budget: store.Budget{Remaining: 5}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SpendCredits(ctx, r.ID, 1, now.Add(spentMemory-time.Nanosecond)); !errors.Is(err, store.ErrCreditsExhausted) {
		t.Fatalf("within the second: %v", err)
	}
	if c, err := a.SpendCredits(ctx, r.ID, 1, now.Add(spentMemory)); err != nil || c.Remaining != 4 {
		t.Fatalf("a second on: %+v, %v", c, err)
	}
	// Spent again, then raised through this instance: seen at once.
	if _, err := a.SpendCredits(ctx, r.ID, 5, now.Add(spentMemory)); !errors.Is(err, store.ErrCreditsExhausted) {
		t.Fatal(err)
	}
	next = next.Clone()
	next.Version++
	if err := a.Write(ctx, store.Write{Replace: next, Credits: &store.CreditBudget{ID: r.ID, Budget: store.Budget{Remaining: 5}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SpendCredits(ctx, r.ID, 5, now.Add(spentMemory)); err != nil {
		t.Fatalf("after this instance raised it: %v", err)
	}
	// A daily refill at midnight ends a refusal remembered a moment before.
	daily := store.Budget{Remaining: 0, Refill: &credits.Refill{Interval: credits.Daily, Amount: 3}, Period: credits.Daily.PeriodStart(now)}
	next = next.Clone()
	next.Version++
	if err := a.Write(ctx, store.Write{Replace: next, Credits: &store.CreditBudget{ID: r.ID, Budget: daily}}); err != nil {
		t.Fatal(err)
	}
	midnight := credits.Daily.Next(now)
	if _, err := a.SpendCredits(ctx, r.ID, 1, midnight.Add(-time.Millisecond)); !errors.Is(err, store.ErrCreditsExhausted) {
		t.Fatal(err)
	}
	if c, err := a.SpendCredits(ctx, r.ID, 1, midnight); err != nil || c.Remaining != 2 {
		t.Fatalf("at midnight: %+v, %v", c, err)
	}
}

func mustGetRecord(t *testing.T, s *Store, id string) *store.Record {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
