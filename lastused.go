package keys

import (
	"context"
	"sync"
	"time"

	"github.com/txcloud/keys/store"
)

// lastUsed keeps last-used times in memory so that Verify never writes to
// the store. A key's latest use is its state's noted time; the pending
// lists name each key used since the last flush once (its queued flag),
// and a flush writes them in one TouchLastUsed batch.
type lastUsed struct {
	shards [lastUsedShards]lastUsedShard
}

const lastUsedShards = 64

type lastUsedShard struct {
	mu sync.Mutex
	// pending lists the states used since the last flush, each once: an
	// append under the lock, where a map keyed by key cost a hash, a
	// probe and the map's growth for every key's first use in a flush.
	pending []*keyState
	_       [32]byte // keep shards on separate cache lines
}

// notePrecision is how stale a noted last-used time may be: a key used again
// within it is not noted again, which keeps the pending list's lock off the
// hot path of a busy key.
const notePrecision = int64(time.Second)

// note records a use of st at now. hint spreads keys over shards; any
// byte that is the same for every use of one key will do.
func (u *lastUsed) note(st *keyState, hint byte, now time.Time) {
	t := now.UnixNano()
	if old := st.noted.Load(); t-old < notePrecision || !st.noted.CompareAndSwap(old, t) {
		return // noted within the second, or by another request just now
	}
	if !st.queued.CompareAndSwap(false, true) {
		return // listed already: the flush reads the time from the state
	}
	s := &u.shards[hint%lastUsedShards]
	s.mu.Lock()
	s.pending = append(s.pending, st)
	s.mu.Unlock()
}

// flush writes every pending time in one batch. If the store fails, the
// batch goes back to memory (unless newer uses arrived meanwhile) for the
// next flush.
func (u *lastUsed) flush(ctx context.Context, st store.Store) error {
	// Merge by ID: a key swept and used again has two states, and a batch
	// names each key once.
	latest := make(map[string]int64)
	for i := range u.shards {
		s := &u.shards[i]
		s.mu.Lock()
		states := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, k := range states {
			// Unlisted before its time is read: a use in between lists it
			// again, for the next flush (a time written twice is harmless:
			// last-used never moves backwards).
			k.queued.Store(false)
			latest[k.id] = max(latest[k.id], k.noted.Load())
		}
	}
	if len(latest) == 0 {
		return nil
	}
	batch := make([]store.LastUsed, 0, len(latest))
	for id, t := range latest {
		batch = append(batch, store.LastUsed{ID: id, At: time.Unix(0, t).UTC()})
	}
	if err := st.TouchLastUsed(ctx, batch); err != nil {
		u.restore(batch)
		return err
	}
	return nil
}

// restore puts a batch the store refused back for the next flush. The
// states behind it are not at hand, so each entry goes in as a stand-in
// holding only the ID and the time; flush merges by ID, and a newer use
// of the same key wins.
func (u *lastUsed) restore(batch []store.LastUsed) {
	s := &u.shards[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range batch {
		k := &keyState{id: e.ID}
		k.noted.Store(e.At.UnixNano())
		k.queued.Store(true)
		s.pending = append(s.pending, k)
	}
}
