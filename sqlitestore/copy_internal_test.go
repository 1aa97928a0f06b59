package sqlitestore

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// The copy in memory and the file agree after a mix of everything a
// Manager does (creates at the cap, idempotent ones, revocations, rolls
// with and without grace, updates, last-used flushes, the history bound
// deleting records with their entries): a copy loaded afresh from the
// file lists the same records, field for field, and the copy never had to
// be reloaded.
func TestCopyMatchesFile(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	// The clock is read by the Manager's goroutines too: atomically.
	var now atomic.Int64
	now.Store(time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	m, err := keys.New(s, keys.WithMaxKeysPerAccount(4), keys.WithClock(func() time.Time { return time.Unix(0, now.Load()).UTC() }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	var ids []string
	for i := range 300 {
		now.Add(int64(time.Second))
		acct := "acct_" + strconv.Itoa(i%3)
		var opts []keys.IssueOption
		if i%2 == 0 {
			opts = append(opts, keys.IdempotencyKey("copy-check-"+strconv.Itoa(i)))
		}
		k, err := m.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: acct}, opts...)
		switch {
		case errors.Is(err, keys.ErrKeyLimit):
		case err != nil:
			t.Fatal(err)
		default:
			ids = append(ids, k.ID)
			if _, err := m.Verify(ctx, string(k.Key)); err != nil {
				t.Fatal(err)
			}
		}
		if len(ids) == 0 {
			continue
		}
		id := ids[0]
		switch i % 4 {
		case 0:
			_, err = m.Revoke(ctx, id)
		case 1:
			_, err = m.Roll(ctx, id, time.Duration(i%2)*time.Minute, keys.IdempotencyKey("copy-roll-"+strconv.Itoa(i)))
		case 2:
			_, err = m.Update(ctx, id, keys.APIKeyUpdate{Name: keys.Change("renamed " + strconv.Itoa(i))})
		case 3:
			err = m.Flush(ctx)
		}
		if err != nil && !errors.Is(err, keys.ErrNotFound) && !errors.As(err, new(*keys.ValidationError)) {
			t.Fatalf("op %d on %s: %v", i, id, err)
		}
		if i%4 != 2 {
			ids = ids[1:]
		}
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fresh, err := s.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mem := s.mem.Load()
	total := 0
	for a := range 3 {
		q := store.ListQuery{AccountID: "acct_" + strconv.Itoa(a), Limit: 1 << 20}
		want, err := fresh.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := mem.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("account %d: the copy lists %d records, the file %d", a, len(got), len(want))
		}
		for i := range got {
			if d := storetest.Equal(got[i], want[i]); d != "" {
				t.Fatalf("account %d, record %s: the copy and the file differ: %s", a, got[i].ID, d)
			}
		}
		total += len(got)
	}
	if n := s.reloads.Load(); n != 0 {
		t.Fatalf("the copy was reloaded %d times", n)
	}
	t.Logf("%d records agree", total)
}
