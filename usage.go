package keys

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// usageRecorder keeps last-used times in memory so that Verify never writes
// to the store. Each key's latest use is kept (one map entry per key however
// often it is used) and written in one TouchLastUsed batch per interval, and
// on Close.
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
	// pending maps a record to its last use (Unix ns). Keyed by pointer,
	// which hashes faster than the ID; flush reads the ID from the record.
	pending map[*Record]int64
	_       [40]byte // keep shards on separate cache lines
}

func startUsageRecorder(store Store, interval time.Duration, logger *slog.Logger, obs Observer) *usageRecorder {
	u := &usageRecorder{store: store, logger: logger, interval: interval, obs: obs, stop: make(chan struct{}), done: make(chan struct{})}
	for i := range u.shards {
		u.shards[i].pending = make(map[*Record]int64)
	}
	go u.run()
	return u
}

// notePrecision is how stale a noted last-used time may be: a key used again
// within it is not noted again, which keeps the pending map's lock off the
// hot path of a busy key.
const notePrecision = int64(time.Second)

// note records a use. hint spreads keys over shards; any byte that is the
// same for every use of one key will do (Verify passes a digest byte).
func (u *usageRecorder) note(rec *Record, hint byte, now time.Time) {
	t := now.UnixNano()
	if t-rec.noted.Load() < notePrecision {
		return
	}
	rec.noted.Store(t)
	s := &u.shards[hint%usageShards]
	s.mu.Lock()
	if s.pending[rec] < t {
		s.pending[rec] = t
	}
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
		for rec, t := range s.pending {
			latest[rec.ID] = max(latest[rec.ID], t)
		}
		clear(s.pending)
		s.mu.Unlock()
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
// records behind it are not at hand, so each entry goes in under a stand-in
// Record holding only the ID; flush merges by ID, and a newer use of the
// same key wins.
func (u *usageRecorder) restore(batch []LastUsed) {
	s := &u.shards[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range batch {
		s.pending[&Record{ID: e.ID}] = e.At.UnixNano()
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
