package keys_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

// The background flush logs a warning when a flush fails, and keeps the
// times for the next one; a flush that succeeds logs nothing.
func TestBackgroundFlushFailureIsLoggedAndRetried(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	store := &touchFails{Store: memstore.New()}
	m, err := keys.New(store, keys.WithLastUsedFlushInterval(5*time.Millisecond), keys.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "n", Environment: keys.Test, AccountID: "acct_flush"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "flushing last-used times failed") {
		if time.Now().After(deadline) {
			t.Fatal("a failing background flush was not logged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	store.healed.Store(true)
	for {
		if r, _ := store.Get(ctx, k.ID); r != nil && !r.LastUsed.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the time kept from the failed flush was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := strings.Count(logs.String(), "\n")
	time.Sleep(30 * time.Millisecond) // several successful flushes
	if after := strings.Count(logs.String(), "\n"); after != before {
		t.Fatalf("successful flushes logged: %s", logs.String())
	}
}

func TestLastUsed(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, keys.WithLastUsedFlushInterval(time.Hour))
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	idle := f.create(t, keys.APIKeyCreate{Name: "idle", Environment: keys.Test})
	f.clock.Advance(time.Minute)
	for range 100 {
		if _, err := f.m.Verify(ctx, string(c.Key)); err != nil {
			t.Fatal(err)
		}
	}
	if rec, _ := f.store.Get(ctx, c.ID); !rec.LastUsed.IsZero() || f.store.touches.Load() != 0 {
		t.Fatal("Verify wrote to the store")
	}
	used := f.clock.Now()
	if err := f.m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if f.store.touches.Load() != 1 {
		t.Fatalf("%d batches for one flush", f.store.touches.Load())
	}
	if rec, _ := f.store.Get(ctx, c.ID); !rec.LastUsed.Equal(used) {
		t.Fatalf("last used %v, want %v", rec.LastUsed, used)
	}
	if rec, _ := f.store.Get(ctx, idle.ID); !rec.LastUsed.IsZero() {
		t.Fatal("an unused key got a last-used time")
	}
	// Nothing pending: no write.
	if err := f.m.Flush(ctx); err != nil || f.store.touches.Load() != 1 {
		t.Fatal("an empty flush wrote")
	}
	// A use more than a second later is noted again, and Close flushes it.
	f.clock.Advance(2 * time.Second)
	if _, err := f.m.Verify(ctx, string(c.Key)); err != nil {
		t.Fatal(err)
	}
	later := f.clock.Now()
	if err := f.m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.store.Get(ctx, c.ID); !rec.LastUsed.Equal(later) {
		t.Fatalf("Close did not flush: %v, want %v", rec.LastUsed, later)
	}
}

func TestLastUsedBackgroundFlush(t *testing.T) {
	f := newFixture(t, keys.WithLastUsedFlushInterval(10*time.Millisecond))
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	if _, err := f.m.Verify(context.Background(), string(c.Key)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if rec, _ := f.store.Get(context.Background(), c.ID); !rec.LastUsed.IsZero() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the background flusher never wrote last_used")
}
