package pgstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
)

// Two instances (two Managers, two pools, one database) spend one key's
// credits exactly: of 16 goroutines verifying through both, exactly the
// budget passes; the rest are refused for credits, and the budget reads
// 0 from either instance. Then a daily refill set through one instance
// applies on the other.
func TestCreditsAcrossInstances(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t, newPool(t))
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var ms []*keys.Manager
	for range 2 {
		m, err := keys.New(newStore(t, newPool(t), schema), keys.WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(ctx) })
		ms = append(ms, m)
	}
	const budget = 400
	n := int64(budget)
	k, err := ms[0].Create(ctx, keys.APIKeyCreate{AccountID: "acct_c", Name: "metered", Environment: keys.Live, Credits: &credits.Budget{Remaining: n}})
	if err != nil {
		t.Fatal(err)
	}
	var passed, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		m := ms[i%2]
		wg.Go(func() {
			for range budget / 8 {
				_, err := m.Verify(ctx, string(k.Key))
				switch {
				case err == nil:
					passed.Add(1)
				case errors.Is(err, keys.ErrCreditsExhausted):
					refused.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != budget || refused.Load() != budget {
		t.Fatalf("%d passed and %d refused across two instances, want %d and %d", passed.Load(), refused.Load(), budget, budget)
	}
	for i, m := range ms {
		if got, err := m.Get(ctx, k.ID); err != nil || got.Credits == nil || got.Credits.Remaining != 0 {
			t.Fatalf("instance %d reads %+v, %v", i, got, err)
		}
	}
	zero := int64(0)
	if _, err := ms[1].Update(ctx, k.ID, keys.APIKeyUpdate{Credits: keys.Change(credits.Budget{Remaining: zero, Refill: &credits.Refill{Interval: credits.Daily, Amount: 7}})}); err != nil {
		t.Fatal(err)
	}
	// The first instance remembers the budget spent for up to a second
	// (pgstore's SpendCredits), then reads the refill set through the
	// other.
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	_, err = ms[0].Verify(ctx, string(k.Key))
	var ce *keys.CreditsError
	if !errors.As(err, &ce) || ce.Credits.Refill == nil || ce.Credits.RefillsAt == nil || ce.RetryAfter <= 0 || ce.RetryAfter > 24*time.Hour {
		t.Fatalf("the other instance after the refill was set: %v", err)
	}
}
