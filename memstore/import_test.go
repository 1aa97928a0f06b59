package memstore_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// Imported records, created in any order, are merged into the account's
// index in List's order, among the records it held already.
func TestImportKeepsListOrder(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	base := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 50 {
		r := storetest.NewRecord(t)
		r.AccountID, r.CreatedAt = "acct", base.Add(time.Duration(i*2)*time.Second)
		if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
			t.Fatal(err)
		}
	}
	var batch []*store.Record
	for range 200 {
		r := storetest.NewRecord(t)
		r.AccountID, r.CreatedAt = "acct", base.Add(time.Duration(rand.IntN(120))*time.Second)
		batch = append(batch, r)
	}
	if n, err := s.Import(ctx, batch); err != nil || n != 200 {
		t.Fatalf("Import = %d, %v", n, err)
	}
	all, err := s.List(ctx, store.ListQuery{AccountID: "acct", Limit: 1000})
	if err != nil || len(all) != 250 {
		t.Fatalf("List: %d records, %v", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.CreatedAt.Before(b.CreatedAt) || a.CreatedAt.Equal(b.CreatedAt) && a.ID < b.ID {
			t.Fatalf("not newest first at %d: %v %s, then %v %s", i, a.CreatedAt, a.ID, b.CreatedAt, b.ID)
		}
	}
	// Paging from the middle still finds each record once.
	seen := map[string]bool{}
	q := store.ListQuery{AccountID: "acct", Limit: 7}
	for {
		page, _ := s.List(ctx, q)
		for _, r := range page {
			if seen[r.ID] {
				t.Fatalf("%s listed twice", r.ID)
			}
			seen[r.ID] = true
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.After = &store.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	if len(seen) != 250 {
		t.Fatalf("paged through %d of 250", len(seen))
	}
}
