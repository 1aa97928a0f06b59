// Package memstore is the in-memory keys.Store: for tests, demos and a
// single-instance host. Everything is lost when the process ends.
//
// Records are held by digest in 256 shards. Each shard is an
// open-addressing table that readers search without any lock (one atomic
// load per probe), while writers take the shard's mutex and publish with
// atomic stores; growing copies the table and swaps it in. A digest is a
// uniformly random 256-bit value, so its own bytes serve as the hash: no
// hashing on lookup, and no one can flood a probe chain, since only
// server-generated keys are ever inserted. Every read returns the stored
// *keys.Record without copying: records are read-only under the keys.Store
// contract, and the store never changes one in place, it replaces it.
//
// Staleness: none. A Write is visible to every lookup that starts after it
// returns; there is no cache.
package memstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys"
)

// Store is an in-memory keys.Store. Use New.
type Store struct {
	shards [shardCount]shard

	// byID and idem are off the hot path, behind one lock that Write also
	// takes so that its parts appear together.
	mu        sync.RWMutex
	byID      map[string]*keys.Record
	idem      map[keys.Digest]*keys.IdempotencyRecord
	lastSweep time.Time
}

const shardCount = 256

type shard struct {
	mu    sync.Mutex // writers only
	table atomic.Pointer[table]
	count int      // records in the table; under mu
	_     [40]byte // keep shards on separate cache lines
}

// table is an open-addressing hash table with linear probing, kept at most
// half full. Slots are only ever filled or replaced, never emptied.
type table struct {
	slots []atomic.Pointer[keys.Record]
	mask  uint64
}

func newTable(size int) *table {
	return &table{slots: make([]atomic.Pointer[keys.Record], size), mask: uint64(size - 1)}
}

// home is where a digest's probe starts: bytes the shard index (byte 0)
// does not use.
func home(h *keys.Digest) uint64 { return binary.LittleEndian.Uint64(h[8:16]) }

func (t *table) find(h *keys.Digest) (*atomic.Pointer[keys.Record], *keys.Record) {
	for i := home(h) & t.mask; ; i = (i + 1) & t.mask {
		slot := &t.slots[i]
		r := slot.Load()
		if r == nil || r.Digest == *h {
			return slot, r
		}
	}
}

// put inserts or replaces r; sh.mu is held.
func (sh *shard) put(r *keys.Record) {
	t := sh.table.Load()
	slot, old := t.find(&r.Digest)
	if old != nil {
		slot.Store(r)
		return
	}
	if 2*(sh.count+1) > len(t.slots) {
		bigger := newTable(2 * len(t.slots))
		for i := range t.slots {
			if rec := t.slots[i].Load(); rec != nil {
				s, _ := bigger.find(&rec.Digest)
				s.Store(rec)
			}
		}
		sh.table.Store(bigger)
		slot, _ = bigger.find(&r.Digest)
	}
	slot.Store(r)
	sh.count++
}

func (sh *shard) get(h *keys.Digest) *keys.Record {
	_, r := sh.table.Load().find(h)
	return r
}

var _ keys.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	s := &Store{
		byID: make(map[string]*keys.Record),
		idem: make(map[keys.Digest]*keys.IdempotencyRecord),
	}
	for i := range s.shards {
		s.shards[i].table.Store(newTable(8))
	}
	return s
}

func (s *Store) shardOf(h keys.Digest) *shard { return &s.shards[h[0]] }

// Write implements keys.Store. An inserted record (a roll's successor) is
// published before the replaced one, so a reader never sees the old key
// revoked without its successor in place.
func (s *Store) Write(_ context.Context, w keys.Write) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkIdempotency(w.Idempotency); err != nil {
		return err
	}
	var old *keys.Record
	if r := w.Replace; r != nil {
		old = s.byID[r.ID]
		switch {
		case old == nil:
			return keys.ErrNotFound
		case old.Version != r.Version-1:
			return fmt.Errorf("memstore: %s is at version %d, not %d: %w", r.ID, old.Version, r.Version-1, keys.ErrStale)
		case old.Digest != r.Digest:
			return errors.New("memstore: a Replace may not change a record's digest")
		}
	}
	if w.Insert != nil {
		if err := s.insert(w.Insert); err != nil {
			return err
		}
	}
	if r := w.Replace; r != nil {
		r.LastUsed = old.LastUsed // only TouchLastUsed moves it
		s.replace(r)
	}
	s.storeIdempotency(w.Idempotency)
	return nil
}

// insert adds a new record to both indexes, refusing a taken ID or digest.
// s.mu is held.
func (s *Store) insert(rec *keys.Record) error {
	if _, ok := s.byID[rec.ID]; ok {
		return fmt.Errorf("memstore: id %s: %w", rec.ID, keys.ErrDuplicate)
	}
	sh := s.shardOf(rec.Digest)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.get(&rec.Digest) != nil {
		return fmt.Errorf("memstore: digest: %w", keys.ErrDuplicate)
	}
	sh.put(rec)
	s.byID[rec.ID] = rec
	return nil
}

// replace publishes rec in place of the record with its ID and digest, in
// both indexes. s.mu is held.
func (s *Store) replace(rec *keys.Record) {
	s.byID[rec.ID] = rec
	sh := s.shardOf(rec.Digest)
	sh.mu.Lock()
	sh.put(rec)
	sh.mu.Unlock()
}

// sweepIdempotency drops expired entries, at most once a minute, so that the
// map does not grow without bound and no goroutine is needed. s.mu is held.
func (s *Store) sweepIdempotency(now time.Time) {
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	for k, e := range s.idem {
		if !e.ExpiresAt.After(now) {
			delete(s.idem, k)
		}
	}
	s.lastSweep = now
}

// LookupDigest implements keys.Store. It takes no lock.
func (s *Store) LookupDigest(_ context.Context, d keys.Digest) (*keys.Record, error) {
	rec := s.shardOf(d).get(&d)
	if rec == nil {
		return nil, keys.ErrNotFound
	}
	return rec, nil
}

// Get implements keys.Store.
func (s *Store) Get(_ context.Context, id string) (*keys.Record, error) {
	s.mu.RLock()
	rec := s.byID[id]
	s.mu.RUnlock()
	if rec == nil {
		return nil, keys.ErrNotFound
	}
	return rec, nil
}

// LookupIdempotency implements keys.Store.
func (s *Store) LookupIdempotency(_ context.Context, scope keys.Digest, now time.Time) (*keys.IdempotencyRecord, error) {
	s.mu.RLock()
	e := s.idem[scope]
	s.mu.RUnlock()
	if e == nil || !e.ExpiresAt.After(now) {
		return nil, keys.ErrNotFound
	}
	c := *e
	c.Sealed = append([]byte(nil), e.Sealed...)
	return &c, nil
}

// checkIdempotency refuses an entry whose scope holds an unexpired one.
// s.mu is held.
func (s *Store) checkIdempotency(idem *keys.IdempotencyRecord) error {
	if idem == nil {
		return nil
	}
	if prev, ok := s.idem[idem.Scope]; ok && prev.ExpiresAt.After(idem.CreatedAt) {
		return keys.ErrIdempotencyKeyExists
	}
	return nil
}

// storeIdempotency keeps an entry that checkIdempotency allowed. s.mu is
// held.
func (s *Store) storeIdempotency(idem *keys.IdempotencyRecord) {
	if idem != nil {
		s.idem[idem.Scope] = idem
		s.sweepIdempotency(idem.CreatedAt)
	}
}

// List implements keys.Store. It scans every record: fine in memory, and
// the reason a shared store indexes (account, created_at, id).
func (s *Store) List(_ context.Context, q keys.ListQuery) ([]*keys.Record, error) {
	s.mu.RLock()
	var out []*keys.Record
	for _, r := range s.byID {
		if r.AccountID != q.AccountID ||
			(q.Environment != "" && r.Environment != q.Environment) ||
			(q.Revoked != nil && *q.Revoked == r.RevokedAt.IsZero()) ||
			(q.After != nil && !after(r, q.After)) {
			continue
		}
		out = append(out, r)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *keys.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	if len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// after reports whether r comes after p in List's order (newest first).
func after(r *keys.Record, p *keys.ListPosition) bool {
	if c := r.CreatedAt.Compare(p.CreatedAt); c != 0 {
		return c < 0
	}
	return r.ID < p.ID
}

// touchChunk bounds how many entries of a batch one hold of the write
// lock applies, so a large flush does not stall other writers for long.
const touchChunk = 256

// TouchLastUsed implements keys.Store. It replaces each touched record with
// an updated copy, never changing one a reader may hold, and releases its
// lock between chunks of the batch.
func (s *Store) TouchLastUsed(_ context.Context, batch []keys.LastUsed) error {
	for len(batch) > 0 {
		n := min(len(batch), touchChunk)
		s.touch(batch[:n])
		batch = batch[n:]
	}
	return nil
}

func (s *Store) touch(batch []keys.LastUsed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range batch {
		old := s.byID[e.ID]
		if old == nil || !e.At.After(old.LastUsed) {
			continue
		}
		rec := old.Clone()
		rec.LastUsed = e.At.UTC().Truncate(time.Microsecond)
		s.replace(rec)
	}
}
