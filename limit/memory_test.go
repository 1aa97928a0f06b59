package limit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/txcloud/keys/limit"
)

func allowKey(ctx context.Context, l limit.Limiter, id string, perMinute int, at time.Time) (limit.Status, bool, error) {
	return l.Allow(ctx, limit.Checks{{Name: limit.Key, ID: id, Max: perMinute}}, at)
}

// The in-memory limiter's sweep (once a window per shard) drops only keys
// whose bucket is full again: a key still limited when the sweep runs
// keeps its state. With 2 a minute: two at t0, a third at t0+40s (the
// bucket refilled one), then at t0+61s, when the sweep runs, exactly one
// more passes; a sweep that forgot the key would let two through.
func TestLimiterSweepKeepsLimitedKeys(t *testing.T) {
	ctx := context.Background()
	l := limit.NewMemory()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	allow := func(at time.Time) bool {
		_, ok, err := allowKey(ctx, l, "key_sweep", 2, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	first, second, third := allow(t0), allow(t0), allow(t0)
	if !first || !second || third {
		t.Fatal("a burst of 2, then a refusal, at t0")
	}
	if !allow(t0.Add(40 * time.Second)) {
		t.Fatal("one more at t0+40s")
	}
	passed := 0
	for range 3 {
		if allow(t0.Add(61 * time.Second)) {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d passed at t0+61s, as the sweep ran: want 1", passed)
	}
}

// The in-memory limiter forgets idle keys: 2,000 keys each used once hold
// state for a window, and a window later (when each shard sweeps on its
// next call) nothing of them remains but the callers of that moment.
func TestLimiterForgetsIdleKeys(t *testing.T) {
	ctx := context.Background()
	l := limit.NewMemory()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 2000 {
		if _, _, err := allowKey(ctx, l, fmt.Sprintf("key_idle_%d", i), 60, t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := limit.Entries(l); n != 2000 {
		t.Fatalf("%d entries after 2,000 keys' first use", n)
	}
	// Half a window on: nothing is due, and no shard sweeps yet.
	for i := range 200 {
		_, _, _ = allowKey(ctx, l, fmt.Sprintf("key_mid_%d", i), 60, t0.Add(30*time.Second))
	}
	if n := limit.Entries(l); n != 2200 {
		t.Fatalf("%d entries half a window on, want 2,200", n)
	}
	// A window and a second on, 1,000 new callers reach every shard (with
	// 200, about one run in twenty left a shard of 64 unreached, holding
	// its idle keys: a flaky bound, not a leak).
	for i := range 1000 {
		_, _, _ = allowKey(ctx, l, fmt.Sprintf("key_late_%d", i), 60, t0.Add(61*time.Second))
	}
	if n := limit.Entries(l); n > 1100 {
		t.Fatalf("%d entries a window after 2,000 keys went idle: they were not forgotten", n)
	}
}
