package keys

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// usageRecorder keeps last-used times in memory so that Verify never writes
// to the store. A record's latest use is the record's own noted time; the
// recorder lists each record used since the last flush once (the record's
// queued flag), and writes the list in one TouchLastUsed batch per
// interval, and on Close.
type usageRecorder struct {
	shards   [usageShards]usageShard
	store    Store
	logger   *slog.Logger
	interval time.Duration
	obs      Observer // nil: none
	stop     chan struct{}
	done     chan struct{}
}

const usageShards = 64

type usageShard struct {
	mu sync.Mutex
	// pending lists the records used since the last flush, each once: an
	// append under the lock, where a map keyed by record cost a hash, a
	// probe and the map's growth for every key's first use in a flush
	// (on a walk over a million keys, a third of Verify).
	pending []*Record
	_       [32]byte // keep shards on separate cache lines
}

func startUsageRecorder(store Store, interval time.Duration, logger *slog.Logger, obs Observer) *usageRecorder {
	u := &usageRecorder{store: store, logger: logger, interval: interval, obs: obs, stop: make(chan struct{}), done: make(chan struct{})}
	go u.run()
	return u
}

// notePrecision is how stale a noted last-used time may be: a key used again
// within it is not noted again, which keeps the pending list's lock off the
// hot path of a busy key.
const notePrecision = int64(time.Second)

// note records a use. hint spreads keys over shards; any byte that is the
// same for every use of one key will do (Verify passes a digest byte).
func (u *usageRecorder) note(rec *Record, hint byte, now time.Time) {
	t := now.UnixNano()
	if old := rec.noted.Load(); t-old < notePrecision || !rec.noted.CompareAndSwap(old, t) {
		return // noted within the second, or by another request just now
	}
	if !rec.queued.CompareAndSwap(false, true) {
		return // listed already: the flush reads the time from the record
	}
	s := &u.shards[hint%usageShards]
	s.mu.Lock()
	s.pending = append(s.pending, rec)
	s.mu.Unlock()
}

func (u *usageRecorder) run() {
	defer close(u.done)
	tick := time.NewTicker(u.interval)
	defer tick.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), u.interval)
			if err := u.flush(ctx); err != nil {
				u.logger.Warn("keys: flushing last-used times failed; will retry", "err", err)
			}
			cancel()
		}
	}
}

// flush writes every pending time in one batch. If the store fails, the
// batch goes back to memory (unless newer uses arrived meanwhile) for the
// next flush.
func (u *usageRecorder) flush(ctx context.Context) (err error) {
	if u.obs != nil {
		var end func(error)
		ctx, end = u.obs.Operation(ctx, OpFlushLastUsed)
		defer func() { end(err) }()
	}
	// Merge by ID: a store that replaces a record (memstore on every
	// TouchLastUsed) leaves two pointers for one key, and a batch must name
	// each key once.
	latest := make(map[string]int64)
	for i := range u.shards {
		s := &u.shards[i]
		s.mu.Lock()
		recs := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, rec := range recs {
			// Unlisted before its time is read: a use in between lists it
			// again, for the next flush (a time written twice is harmless:
			// last-used never moves backwards).
			rec.queued.Store(false)
			latest[rec.ID] = max(latest[rec.ID], rec.noted.Load())
		}
	}
	if len(latest) == 0 {
		return nil
	}
	batch := make([]LastUsed, 0, len(latest))
	for id, t := range latest {
		batch = append(batch, LastUsed{ID: id, At: time.Unix(0, t).UTC()})
	}
	if err = u.store.TouchLastUsed(ctx, batch); err != nil {
		u.restore(batch)
	}
	return err
}

// restore puts a batch the store refused back for the next flush. The
// records behind it are not at hand, so each entry goes in as a stand-in
// Record holding only the ID and the time; flush merges by ID, and a newer
// use of the same key wins.
func (u *usageRecorder) restore(batch []LastUsed) {
	s := &u.shards[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range batch {
		r := &Record{ID: e.ID}
		r.noted.Store(e.At.UnixNano())
		r.queued.Store(true)
		s.pending = append(s.pending, r)
	}
}

func (u *usageRecorder) close(ctx context.Context) error {
	close(u.stop)
	select {
	case <-u.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return u.flush(ctx)
}
