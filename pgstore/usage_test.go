package pgstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/usage"
)

// Two instances on one schema count usage; totals read from either equal
// the requests sent to both. Then the usage table is locked against
// writes (PostgreSQL cannot take the flush): A's flush fails and keeps
// its batch, A refuses to read a total it cannot vouch for, B still
// reads; once the lock goes, A's retried batch counts exactly once. The
// calls that must fail get a short deadline of their own; every other call
// has the store's default timeout, so that a busy machine cannot fail the
// test (a 300 ms timeout on every call once did).
func TestUsageAcrossInstancesAndOutage(t *testing.T) {
	ctx := context.Background()
	admin := newPool(t)
	schema := freshSchema(t, admin)
	var mu sync.Mutex
	now := time.Now().UTC().Truncate(time.Minute).Add(10 * time.Second)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var ms []*keys.Manager
	for range 2 {
		st := newStore(t, newPool(t), schema)
		m, err := keys.New(st, keys.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(ctx) })
		ms = append(ms, m)
	}
	a, b := ms[0], ms[1]
	created, err := a.Create(ctx, keys.APIKeyCreate{AccountID: "acct_u", Name: "k", Environment: keys.Test})
	if err != nil {
		t.Fatal(err)
	}
	send := func(m *keys.Manager, n int, status int) {
		t.Helper()
		v, err := m.Verify(ctx, string(created.Key))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range n / 4 {
					m.CountUsage(&v, "identity", status)
				}
			})
		}
		wg.Wait()
	}
	total := func(m *keys.Manager) (int64, error) {
		s, err := m.UsageSummary(ctx, "acct_u", usage.Filter{})
		if err != nil {
			return 0, err
		}
		return s.TotalRequests, nil
	}
	send(a, 400, 200)
	send(b, 200, 500)
	advance(time.Minute)
	for _, m := range ms {
		if err := m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range ms {
		if n, err := total(m); err != nil || n != 600 {
			t.Fatalf("instance %d reads %d (%v), want 600", i, n, err)
		}
	}
	// The outage: writes to usage_counts wait on the lock past the query
	// timeout.
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE "`+schema+`".usage_counts IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	send(a, 100, 200)
	advance(time.Minute)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if err := a.Flush(short); err == nil {
		t.Fatal("a flush into a locked table succeeded")
	}
	cancel()
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := a.UsageSummary(short, "acct_u", usage.Filter{}); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("A read with its batch unstored: %v", err)
	}
	cancel()
	if n, err := total(b); err != nil || n != 600 {
		t.Fatalf("B reads %d (%v) during A's outage, want 600", n, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil { // nothing left: a no-op
		t.Fatal(err)
	}
	for i, m := range ms {
		if n, err := total(m); err != nil || n != 700 {
			t.Fatalf("after recovery instance %d reads %d (%v), want 700", i, n, err)
		}
	}
}
