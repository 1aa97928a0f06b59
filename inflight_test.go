package keys_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
)

// With InFlight, Verify counts the request in flight before its limits and
// credits: a request refused for concurrency spends neither, a request
// refused after the slot was taken gives the slot back, and release ends
// it.
func TestInFlightComesFirst(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	m := newManagerAt(t, memstore.New(), clock, keys.WithPlans(func(context.Context, string) (keys.Plan, error) {
		return keys.Plan{Name: "p", PerMinute: 100, Concurrent: 1}, nil
	}, time.Minute))
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Live, AccountID: "acct_f", Credits: &credits.Budget{Remaining: 2}})
	if err != nil {
		t.Fatal(err)
	}
	var first func()
	v, err := m.Verify(ctx, string(k.Key), keys.InFlight(&first))
	if err != nil || first == nil || v.Credits != 1 {
		t.Fatalf("the first request: %+v, %v", v, err)
	}
	var second func()
	var rle *keys.RateLimitError
	if _, err := m.Verify(ctx, string(k.Key), keys.InFlight(&second)); !errors.As(err, &rle) || rle.RateLimit.Name != limit.Concurrency {
		t.Fatalf("a second request in flight: %v, want the concurrency limit", err)
	}
	if got, _ := m.Get(ctx, k.ID); got.Credits.Remaining != 1 {
		t.Fatalf("a request refused for concurrency spent credits: %d left, want 1", got.Credits.Remaining)
	}
	first()
	// The slot is free; the last credit goes, then a refusal by the
	// credits gives the slot back at once.
	var third func()
	if _, err := m.Verify(ctx, string(k.Key), keys.InFlight(&third)); err != nil {
		t.Fatal(err)
	}
	third()
	var fourth func()
	if _, err := m.Verify(ctx, string(k.Key), keys.InFlight(&fourth)); !errors.Is(err, keys.ErrCreditsExhausted) {
		t.Fatalf("a request with no credits: %v", err)
	}
	other, err := m.Create(ctx, keys.APIKeyCreate{Name: "other", Environment: keys.Live, AccountID: "acct_f"})
	if err != nil {
		t.Fatal(err)
	}
	var fifth func()
	if _, err := m.Verify(ctx, string(other.Key), keys.InFlight(&fifth)); err != nil {
		t.Fatalf("the account's one slot after a refusal by credits: %v (the refusal kept it)", err)
	}
	fifth()
	// Without a plan limiting requests in flight, release does nothing.
	plain := newManagerAt(t, memstore.New(), clock)
	pk, _ := plain.Create(ctx, keys.APIKeyCreate{Name: "p", Environment: keys.Live, AccountID: "acct_p"})
	var none func()
	if _, err := plain.Verify(ctx, string(pk.Key), keys.InFlight(&none)); err != nil || none == nil {
		t.Fatalf("InFlight without plans: %v, release set %v", err, none != nil)
	}
	none()
}

// A refusal by the credits gives back what the limits counted: the key's
// rate limit of 2 a minute passes two paid requests around a refused one.
func TestCreditsRefusalRefundsTheLimits(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	m := newManagerAt(t, memstore.New(), clock)
	two := 2
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Live, AccountID: "acct_r", RateLimit: &two, Credits: &credits.Budget{Remaining: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatal(err)
	}
	v, err := m.Verify(ctx, string(k.Key))
	if !errors.Is(err, keys.ErrCreditsExhausted) || v.RateLimit.Remaining != 1 {
		t.Fatalf("the refused request: %v, %d of the limit left; want 1 (given back)", err, v.RateLimit.Remaining)
	}
	if _, err := m.Update(ctx, k.ID, keys.APIKeyUpdate{Credits: keys.Change(credits.Budget{Remaining: 5})}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatalf("the second paid request in the minute: %v (the refusal kept its place)", err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("a third in the minute: %v, want the rate limit", err)
	}
}
