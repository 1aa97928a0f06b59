package keys_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
)

// The maximum lifetime at its edges, on an injected clock.
func TestMaxKeyLifetime(t *testing.T) {
	const life = 366 * 24 * time.Hour
	f := newFixture(t, keys.WithMaxKeyLifetime(life))
	ctx := context.Background()
	now := f.clock.Now()
	c := f.create(t, keys.APIKeyCreate{Name: "default", Environment: keys.Test})
	if c.ExpiresAt == nil || !c.ExpiresAt.Equal(now.Add(life)) {
		t.Fatalf("no expires_at: got %v, want creation + %v", c.ExpiresAt, life)
	}
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	if _, err := f.m.Create(ctx, keys.APIKeyCreate{Name: "edge", Environment: keys.Test, AccountID: "a", ExpiresAt: at(life)}); err != nil {
		t.Fatalf("exactly the lifetime: %v", err)
	}
	var ve *keys.ValidationError
	if _, err := f.m.Create(ctx, keys.APIKeyCreate{Name: "over", Environment: keys.Test, AccountID: "a", ExpiresAt: at(life + time.Microsecond)}); !errors.As(err, &ve) || ve.Param != "expires_at" {
		t.Fatalf("a microsecond over: %v", err)
	}
	f.clock.Advance(24 * time.Hour) // the bound counts from creation, not from the update
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{ExpiresAt: keys.Change(now.Add(life))}); err != nil {
		t.Fatalf("update to creation + lifetime: %v", err)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{ExpiresAt: keys.Change(now.Add(life + time.Hour))}); !errors.As(err, &ve) || ve.Param != "expires_at" {
		t.Fatalf("update past creation + lifetime: %v", err)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{ExpiresAt: keys.Clear[time.Time]()}); !errors.As(err, &ve) || ve.Param != "expires_at" {
		t.Fatalf("update to never: %v", err)
	}
	// A roll's successor keeps its predecessor's expiry (within the
	// bound from now).
	r, err := f.m.Roll(ctx, c.ID, 0)
	if err != nil || !r.ExpiresAt.Equal(now.Add(life)) {
		t.Fatalf("roll: %v, expires %v", err, r.ExpiresAt)
	}
	// A key from before the policy (no expiry) rolls into one that has it.
	free := newFixture(t)
	old := free.create(t, keys.APIKeyCreate{Name: "old", Environment: keys.Test})
	strict, err := keys.New(free.store, keys.WithClock(free.clock.Now), keys.WithMaxKeyLifetime(life))
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close(ctx)
	r, err = strict.Roll(ctx, old.ID, 0)
	if err != nil || r.ExpiresAt == nil || !r.ExpiresAt.Equal(free.clock.Now().Add(life)) {
		t.Fatalf("rolling a key without expiry under the policy: %v %v", err, r)
	}
	for _, d := range []time.Duration{-time.Hour, time.Second} {
		if _, err := keys.New(free.store, keys.WithMaxKeyLifetime(d)); err == nil {
			t.Fatalf("WithMaxKeyLifetime(%v) accepted", d)
		}
	}
}

// Keys expiring in a window: the list filter (one account) and
// NotifyExpiring (every account) with its window's edges.
func TestExpiring(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	now := f.clock.Now()
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	in1 := f.create(t, keys.APIKeyCreate{Name: "soon", Environment: keys.Test, ExpiresAt: at(time.Hour)})
	f.create(t, keys.APIKeyCreate{Name: "later", Environment: keys.Test, ExpiresAt: at(48 * time.Hour)})
	f.create(t, keys.APIKeyCreate{Name: "never", Environment: keys.Test})
	in2 := f.create(t, keys.APIKeyCreate{Name: "other account", Environment: keys.Test, AccountID: "acct_2", ExpiresAt: at(24*time.Hour - time.Microsecond)})
	edge := f.create(t, keys.APIKeyCreate{Name: "at the end", Environment: keys.Test, AccountID: "acct_2", ExpiresAt: at(24 * time.Hour)})
	revoked := f.create(t, keys.APIKeyCreate{Name: "revoked", Environment: keys.Test, ExpiresAt: at(time.Hour)})
	if _, err := f.m.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	l, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_test", ExpiringWithin: 24 * time.Hour, Revoked: new(bool)})
	if err != nil || len(l.Data) != 1 || l.Data[0].ID != in1.ID {
		t.Fatalf("expiring within a day in acct_test: %v %+v", err, l)
	}
	if _, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_test", ExpiringWithin: (366 * 24 * time.Hour) + time.Second}); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("a window over the maximum: %v", err)
	}
	ev.reset()
	n, err := f.m.NotifyExpiring(ctx, now, now.Add(24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("NotifyExpiring = %d, %v; want 2", n, err)
	}
	seen := map[string]bool{}
	for _, e := range ev.all {
		if e.Type != event.KeyExpiring {
			t.Fatalf("event %s", e.Type)
		}
		seen[e.KeyID] = true
	}
	if !seen[in1.ID] || !seen[in2.ID] || seen[edge.ID] || seen[revoked.ID] {
		t.Fatalf("announced %v", seen)
	}
	if _, err := f.m.NotifyExpiring(ctx, now, now); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("an empty window: %v", err)
	}
}

// NotifyExpiring pages through a window of more keys than one page.
func TestNotifyExpiringPages(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	exp := f.clock.Now().Add(time.Hour)
	for i := range 250 {
		f.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: []string{"a", "b", "c"}[i%3], ExpiresAt: &exp})
		f.clock.Advance(time.Millisecond)
	}
	ev.reset()
	n, err := f.m.NotifyExpiring(ctx, exp, exp.Add(time.Microsecond))
	if err != nil || n != 250 {
		t.Fatalf("NotifyExpiring = %d, %v; want 250", n, err)
	}
	seen := map[string]bool{}
	for _, e := range ev.all {
		seen[e.KeyID] = true
	}
	if len(seen) != 250 {
		t.Fatalf("%d distinct keys announced of 250", len(seen))
	}
}

// A key expires at its expires_at exactly, and a rolled key's grace ends
// at its revoked_at exactly: valid one nanosecond before, refused at.
func TestExactInstants(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	exp := f.clock.Now().Add(time.Hour)
	k := f.create(t, keys.APIKeyCreate{Name: "expiring", Environment: keys.Test, ExpiresAt: &exp})
	rolled := f.create(t, keys.APIKeyCreate{Name: "rolled", Environment: keys.Test})
	if _, err := f.m.Roll(ctx, rolled.ID, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	graceEnd := f.clock.Now().Add(30 * time.Minute)

	f.clock.Advance(graceEnd.Sub(f.clock.Now()) - time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(rolled.Key)); err != nil {
		t.Fatalf("a rolled key a nanosecond before its grace ends: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(rolled.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("a rolled key when its grace ends: %v", err)
	}

	f.clock.Advance(exp.Sub(f.clock.Now()) - time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatalf("a key a nanosecond before it expires: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrKeyExpired) {
		t.Fatalf("a key at its expiry: %v", err)
	}
}
