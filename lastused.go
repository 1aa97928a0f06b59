package keys

import (
	"context"
	"sync"
	"time"

	"github.com/txcloud/keys/store"
)

// lastUsed keeps last-used times in memory so that Verify never writes to
// the store. A key's latest use is its state's noted time, and its queued
// flag says it has one the store has not been told: Verify touches only
// the key's own state (no list, no lock shared with other keys), and a
// flush walks the states and writes the queued ones in one TouchLastUsed
// batch.
type lastUsed struct {
	mu sync.Mutex
	// failed is a batch the store refused, written again with the next.
	failed []store.LastUsed
}

// notePrecision is how stale a noted last-used time may be: a key used
// again within it is not noted again, which keeps even the key's own
// state from being written by every request of a busy key.
const notePrecision = int64(time.Second)

// note records a use of st at t (Unix ns).
func (u *lastUsed) note(st *keyState, t int64) {
	if old := st.noted.Load(); t-old < notePrecision || !st.noted.CompareAndSwap(old, t) {
		return // noted within the second, or by another request just now
	}
	if !st.queued.Load() {
		st.queued.Store(true)
	}
}

// flush writes the time of every queued state (and of a batch the store
// refused before) in one batch. If the store fails, the batch is kept for
// the next flush.
func (u *lastUsed) flush(ctx context.Context, st store.Store, states *states) error {
	// Merge by ID: a key swept and used again has two states, and a batch
	// names each key once.
	latest := make(map[string]int64)
	take := func(k *keyState) {
		if !k.queued.Load() {
			return
		}
		// Unqueued before its time is read: a use in between queues it
		// again, for the next flush (a time written twice is harmless:
		// last-used never moves backwards).
		k.queued.Store(false)
		latest[k.id] = max(latest[k.id], k.noted.Load())
	}
	states.each(take)
	for _, k := range states.retired {
		take(k)
	}
	u.mu.Lock()
	for _, e := range u.failed {
		latest[e.ID] = max(latest[e.ID], e.At.UnixNano())
	}
	u.failed = nil
	u.mu.Unlock()
	if len(latest) == 0 {
		return nil
	}
	batch := make([]store.LastUsed, 0, len(latest))
	for id, t := range latest {
		batch = append(batch, store.LastUsed{ID: id, At: time.Unix(0, t).UTC()})
	}
	if err := st.TouchLastUsed(ctx, batch); err != nil {
		u.mu.Lock()
		u.failed = batch
		u.mu.Unlock()
		return err
	}
	return nil
}
