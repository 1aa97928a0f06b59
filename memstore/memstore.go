// Package memstore is the in-memory store.Store: for tests, demos and a
// single-instance host. Everything is lost when the process ends: the
// event log too, and with it the webhook deliveries not yet made, so a
// webhook's "at least once" holds only while the process lives.
//
// Records are held by digest in 256 shards. Each shard is an
// open-addressing table that readers search without any lock (one atomic
// load per probe), while writers take the shard's mutex and publish with
// atomic stores; growing copies the table and swaps it in. A digest is a
// uniformly random 256-bit value, so its own bytes serve as the hash: no
// hashing on lookup, and no one can flood a probe chain, since only
// server-generated keys are ever inserted. Every read returns the stored
// *store.Record without copying: records are read-only under the store.Store
// contract, and the store never changes one in place, it replaces it.
//
// Staleness: none. A Write is visible to every lookup that starts after it
// returns; there is no cache.
//
// One tenant cannot stall another: each account's records sit in their
// own index, sorted in List's order, so a List seeks to its cursor and
// never looks at another account's keys; a List, a last-used flush and
// the expiry of idempotency entries each work in chunks, releasing the
// store's lock between them, so a writer waits for one chunk at most.
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

	"github.com/txcloud/keys/internal/marks"
	"github.com/txcloud/keys/store"
)

// Store is an in-memory store.Store. Use New.
type Store struct {
	shards [shardCount]shard

	// byID, accounts and idem are off the hot path, behind one lock that
	// Write also takes so that its parts appear together.
	mu       sync.RWMutex
	byID     map[string]*store.Record
	accounts map[string]*account
	idem     map[store.Digest]*store.IdempotencyRecord
	// idemOf names the idempotency entry of a record (its KeyID), so that
	// a record deleted by Write.KeepRevoked takes its entry with it.
	idemOf map[string]store.Digest
	// expiring lists idempotency entries in the order they were stored,
	// which is the order they expire in (every entry lives the same TTL):
	// expiry pops them from the front, a chunk at a time.
	expiring []idemExpiry
	// now is the latest instant the Manager has shown the store (an
	// entry's CreatedAt, a lookup's now, a last-used time): expiry runs on
	// the Manager's clock, never on one of its own.
	now time.Time

	usage   usageCounts
	credits credits
	marks   marks.Set // store.Marker
	logs    logBook   // store.LogStore
	ev      eventLog  // store.EventStore, behind mu
}

// account is one account's records, sorted by (CreatedAt, ID) ascending:
// List's order read backwards. Keys are created in time order, so an
// insert is almost always an append.
type account struct {
	recs    []*store.Record
	active  int // records with a zero RevokedAt
	revoked int // the others
}

// count moves the account's counts by d for a record in r's state.
func (a *account) count(r *store.Record, d int) {
	if r.RevokedAt.IsZero() {
		a.active += d
	} else {
		a.revoked += d
	}
}

type idemExpiry struct {
	scope     store.Digest
	expiresAt time.Time
}

// chunk bounds the work done under one hold of the store's lock by List,
// TouchLastUsed and idempotency expiry.
const chunk = 128

const shardCount = 256

type shard struct {
	mu    sync.Mutex // writers only
	table atomic.Pointer[table]
	count int      // records in the table; under mu
	_     [40]byte // keep shards on separate cache lines
}

// table is an open-addressing hash table with linear probing, kept at most
// half full (counting tombstones). Slots are only ever filled or replaced,
// never emptied: a deleted record's slot gets a tombstone, a record with
// no ID, which probes pass over and which growing drops. So a reader that
// takes no lock never stops short of a record further along its chain.
//
// Each slot holds, beside the record, a tag of its digest (bytes the
// probe's start does not use), written before the record is published and
// never changed: a probe compares tags and reads only the record whose tag
// matches, so passing over a neighbour (or missing, for a key that is not
// stored) costs no load of a record, each a cache miss in a large store.
type table struct {
	slots []slot
	mask  uint64
}

type slot struct {
	tag uint64
	rec atomic.Pointer[store.Record]
}

func newTable(size int) *table {
	return &table{slots: make([]slot, size), mask: uint64(size - 1)}
}

// home is where a digest's probe starts: bytes the shard index (byte 0)
// does not use.
func home(h *store.Digest) uint64 { return binary.LittleEndian.Uint64(h[8:16]) }

// tag is what a slot holds of a digest: bytes neither the shard nor home
// uses.
func tag(h *store.Digest) uint64 { return binary.LittleEndian.Uint64(h[24:32]) }

// sameDigest compares two digests as four 64-bit words: inlined, where
// == on the arrays calls the runtime's memequal.
func sameDigest(a, b *store.Digest) bool {
	le := binary.LittleEndian
	return le.Uint64(a[0:]) == le.Uint64(b[0:]) && le.Uint64(a[8:]) == le.Uint64(b[8:]) &&
		le.Uint64(a[16:]) == le.Uint64(b[16:]) && le.Uint64(a[24:]) == le.Uint64(b[24:])
}

// find returns the slot holding the record with digest h, and the
// record; or the empty slot that ends h's probe, and nil. A new record
// goes in that slot with set.
func (t *table) find(h *store.Digest) (*slot, *store.Record) {
	want := tag(h)
	for i := home(h) & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		r := sl.rec.Load()
		if r == nil {
			return sl, nil
		}
		if sl.tag == want && sameDigest(&r.Digest, h) && r.ID != "" {
			return sl, r
		}
	}
}

// set publishes r in sl, an empty slot or r's own. sh.mu is held.
func (sl *slot) set(r *store.Record) {
	sl.tag = tag(&r.Digest)
	sl.rec.Store(r)
}

// add inserts r, unless a record with its digest is there: then it
// changes nothing and returns that record's slot. One probe does both.
// sh.mu is held.
func (sh *shard) add(r *store.Record) (taken *slot) {
	t := sh.table.Load()
	sl, old := t.find(&r.Digest)
	if old != nil {
		return sl
	}
	if 2*(sh.count+1) > len(t.slots) {
		t = sh.rebuild(t)
		sl, _ = t.find(&r.Digest)
	}
	sl.set(r)
	sh.count++
	return nil
}

// put inserts or replaces r; sh.mu is held.
func (sh *shard) put(r *store.Record) {
	if sl := sh.add(r); sl != nil {
		sl.rec.Store(r)
	}
}

// rebuild copies the live records of t into a new table sized for them
// (at most a quarter full), dropping tombstones, and publishes it. sh.mu
// is held.
func (sh *shard) rebuild(t *table) *table {
	live := 0
	for i := range t.slots {
		if rec := t.slots[i].rec.Load(); rec != nil && rec.ID != "" {
			live++
		}
	}
	size := 8
	for size < 4*(live+1) {
		size *= 2
	}
	n := newTable(size)
	for i := range t.slots {
		if rec := t.slots[i].rec.Load(); rec != nil && rec.ID != "" {
			sl, _ := n.find(&rec.Digest)
			sl.set(rec)
		}
	}
	sh.table.Store(n)
	sh.count = live
	return n
}

// remove puts a tombstone in the place of the record with digest h.
// sh.mu is held.
func (sh *shard) remove(h *store.Digest) {
	if sl, r := sh.table.Load().find(h); r != nil {
		sl.rec.Store(&store.Record{}) // the tag stays: probes pass over it as over any other
	}
}

func (sh *shard) get(h *store.Digest) *store.Record {
	_, r := sh.table.Load().find(h)
	return r
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
	_ store.Marker   = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	s := &Store{
		byID:     make(map[string]*store.Record),
		accounts: make(map[string]*account),
		idem:     make(map[store.Digest]*store.IdempotencyRecord),
		idemOf:   make(map[string]store.Digest),
	}
	s.marks.Max = 100_000
	for i := range s.shards {
		s.shards[i].table.Store(newTable(8))
	}
	return s
}

func (s *Store) shardOf(h store.Digest) *shard { return &s.shards[h[0]] }

// Write implements store.Store. An inserted record (a roll's successor) is
// published before the replaced one, so a reader never sees the old key
// revoked without its successor in place.
func (s *Store) Write(_ context.Context, w store.Write) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := w.Insert; r != nil && w.MaxActive > 0 {
		if a := s.accounts[r.AccountID]; a != nil && a.active >= w.MaxActive {
			return fmt.Errorf("memstore: account holds %d active keys: %w", a.active, store.ErrKeyLimit)
		}
	}
	if err := s.checkIdempotency(w.Idempotency); err != nil {
		return err
	}
	if err := w.CheckEvents(); err != nil {
		return err
	}
	if err := s.checkEvents(&w); err != nil {
		return err
	}
	var old *store.Record
	if r := w.Replace; r != nil {
		old = s.byID[r.ID]
		switch {
		case old == nil:
			return store.ErrNotFound
		case old.Version != r.Version-1:
			return fmt.Errorf("memstore: %s is at version %d, not %d: %w", r.ID, old.Version, r.Version-1, store.ErrStale)
		case old.Digest != r.Digest:
			return errors.New("memstore: a Replace may not change a record's digest")
		}
	}
	var a *account // Insert's
	if w.Insert != nil {
		var err error
		if a, err = s.insert(w.Insert); err != nil {
			return err
		}
	}
	if r := w.Replace; r != nil {
		r.LastUsed = old.LastUsed // only TouchLastUsed moves it
		s.replace(r)
	}
	s.storeIdempotency(w.Idempotency)
	s.setCredits(w.Credits)
	if r := w.Insert; r != nil && w.KeepRevoked > 0 {
		s.prune(a, w.KeepRevoked, r.CreatedAt)
	}
	s.applyEvents(&w)
	return nil
}

// Import implements store.Importer: the batch appears at once, under the
// write lock (a batch is at most store.ImportBatch records).
func (s *Store) Import(_ context.Context, recs []*store.Record) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Imported keys come in any order of creation: each account's new
	// records are sorted and merged into its index once, instead of
	// inserted one by one into the middle of it.
	added := map[*account][]*store.Record{}
	for _, r := range recs {
		a, err := s.index(r)
		if err != nil {
			continue // its ID or digest is stored (or came earlier in the batch): skipped
		}
		added[a] = append(added[a], r)
	}
	n := 0
	for a, rs := range added {
		slices.SortFunc(rs, older)
		merged := make([]*store.Record, 0, len(a.recs)+len(rs))
		i := 0
		for _, r := range rs {
			for i < len(a.recs) && older(a.recs[i], r) < 0 {
				merged = append(merged, a.recs[i])
				i++
			}
			merged = append(merged, r)
		}
		a.recs = append(merged, a.recs[i:]...)
		n += len(rs)
	}
	return n, nil
}

// prune deletes a's oldest records revoked by now while it holds more
// than keep revoked records, at most store.MaxPrunedPerWrite of them, in
// one pass over its index. s.mu is held.
func (s *Store) prune(a *account, keep int, now time.Time) {
	if a.revoked <= keep {
		return
	}
	j, budget := 0, store.MaxPrunedPerWrite
	for i, r := range a.recs {
		if a.revoked > keep && budget > 0 && !r.RevokedAt.IsZero() && !r.RevokedAt.After(now) {
			s.delete(r)
			a.revoked--
			budget--
			continue
		}
		if (a.revoked <= keep || budget == 0) && i == j {
			return // nothing deleted ahead of here: nothing to move
		}
		a.recs[j] = r
		j++
	}
	clear(a.recs[j:])
	a.recs = a.recs[:j]
}

// delete drops r from the ID and digest indexes, with its idempotency
// entry; the caller drops it from the account's. s.mu is held.
func (s *Store) delete(r *store.Record) {
	delete(s.byID, r.ID)
	s.ref(r.CreditsID, -1)
	if scope, ok := s.idemOf[r.ID]; ok {
		if e := s.idem[scope]; e != nil && e.KeyID == r.ID {
			delete(s.idem, scope)
		}
		delete(s.idemOf, r.ID)
	}
	sh := s.shardOf(r.Digest)
	sh.mu.Lock()
	sh.remove(&r.Digest)
	sh.mu.Unlock()
}

// insert adds a new record to both indexes, refusing a taken ID or
// digest, and returns its account. s.mu is held.
func (s *Store) insert(rec *store.Record) (*account, error) {
	a, err := s.index(rec)
	if err != nil {
		return nil, err
	}
	if n := len(a.recs); n == 0 || older(a.recs[n-1], rec) < 0 {
		a.recs = append(a.recs, rec) // the usual case: keys are made in time order
		return a, nil
	}
	a.recs = slices.Insert(a.recs, a.search(rec.CreatedAt, rec.ID), rec)
	return a, nil
}

// index adds rec to the ID and digest indexes and its account's counts,
// refusing a taken ID or digest, and returns the account, whose sorted
// list the caller puts rec in (insert one at a time, Import a batch at
// once). s.mu is held.
func (s *Store) index(rec *store.Record) (*account, error) {
	if _, taken := s.byID[rec.ID]; taken {
		return nil, fmt.Errorf("memstore: id %s: %w", rec.ID, store.ErrDuplicate)
	}
	sh := s.shardOf(rec.Digest)
	sh.mu.Lock()
	taken := sh.add(rec)
	sh.mu.Unlock()
	if taken != nil {
		return nil, fmt.Errorf("memstore: digest: %w", store.ErrDuplicate)
	}
	s.byID[rec.ID] = rec
	s.ref(rec.CreditsID, 1)
	a := s.account(rec.AccountID)
	a.count(rec, 1)
	return a, nil
}

// account returns the account's index, made if new. s.mu is held.
func (s *Store) account(id string) *account {
	a := s.accounts[id]
	if a == nil {
		a = &account{}
		s.accounts[id] = a
	}
	return a
}

// older orders records as an account's index does: by CreatedAt, then ID.
func older(x, y *store.Record) int {
	if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(x.ID, y.ID)
}

// search returns the position of the first record at or after (t, id) in
// the account's ascending order.
func (a *account) search(t time.Time, id string) int {
	i, _ := slices.BinarySearchFunc(a.recs, struct {
		t  time.Time
		id string
	}{t, id}, func(r *store.Record, k struct {
		t  time.Time
		id string
	}) int {
		if c := r.CreatedAt.Compare(k.t); c != 0 {
			return c
		}
		return strings.Compare(r.ID, k.id)
	})
	return i
}

// replace publishes rec in place of the record with its ID and digest, in
// both indexes. s.mu is held.
func (s *Store) replace(rec *store.Record) {
	old := s.byID[rec.ID]
	s.byID[rec.ID] = rec
	// CreatedAt and ID never change, so the record keeps its place.
	a := s.accounts[rec.AccountID]
	if old != nil {
		a.count(old, -1)
		a.count(rec, 1)
		if old.CreditsID != rec.CreditsID {
			s.ref(rec.CreditsID, 1)
			s.ref(old.CreditsID, -1)
		}
	}
	if i := a.search(rec.CreatedAt, rec.ID); i < len(a.recs) && a.recs[i].ID == rec.ID {
		a.recs[i] = rec
	}
	sh := s.shardOf(rec.Digest)
	sh.mu.Lock()
	sh.put(rec)
	sh.mu.Unlock()
}

// expire drops at most chunk idempotency entries that expired by now, from
// the front of the queue, and reports whether more may be due. An entry
// whose scope was taken over by a newer one stays. s.mu is held.
func (s *Store) expire(now time.Time) (more bool) {
	n := 0
	for ; n < len(s.expiring) && n < chunk; n++ {
		e := s.expiring[n]
		if e.expiresAt.After(now) {
			break
		}
		if cur := s.idem[e.scope]; cur != nil && !cur.ExpiresAt.After(now) {
			delete(s.idem, e.scope)
			if s.idemOf[cur.KeyID] == e.scope {
				delete(s.idemOf, cur.KeyID)
			}
		}
	}
	s.expiring = s.expiring[n:]
	if len(s.expiring) == 0 {
		s.expiring = nil // let the emptied array go
	}
	return n == chunk
}

// LookupDigest implements store.Store. It takes no lock.
func (s *Store) LookupDigest(_ context.Context, d store.Digest) (*store.Record, error) {
	rec := s.shardOf(d).get(&d)
	if rec == nil {
		return nil, store.ErrNotFound
	}
	return rec, nil
}

// Get implements store.Store.
func (s *Store) Get(_ context.Context, id string) (*store.Record, error) {
	s.mu.RLock()
	rec := s.byID[id]
	s.mu.RUnlock()
	if rec == nil {
		return nil, store.ErrNotFound
	}
	return rec, nil
}

// LookupIdempotency implements store.Store.
func (s *Store) LookupIdempotency(_ context.Context, scope store.Digest, now time.Time) (*store.IdempotencyRecord, error) {
	s.mu.RLock()
	e := s.idem[scope]
	s.mu.RUnlock()
	if e == nil || !e.ExpiresAt.After(now) {
		return nil, store.ErrNotFound
	}
	c := *e
	c.Sealed = append([]byte(nil), e.Sealed...)
	return &c, nil
}

// checkIdempotency refuses an entry whose scope holds an unexpired one.
// s.mu is held.
func (s *Store) checkIdempotency(idem *store.IdempotencyRecord) error {
	if idem == nil {
		return nil
	}
	if prev, ok := s.idem[idem.Scope]; ok && prev.ExpiresAt.After(idem.CreatedAt) {
		return store.ErrIdempotencyKeyExists
	}
	return nil
}

// storeIdempotency keeps an entry that checkIdempotency allowed. s.mu is
// held.
func (s *Store) storeIdempotency(idem *store.IdempotencyRecord) {
	if idem != nil {
		if prev := s.idem[idem.Scope]; prev != nil {
			delete(s.idemOf, prev.KeyID) // expired, and replaced here
		}
		s.idem[idem.Scope] = idem
		s.idemOf[idem.KeyID] = idem.Scope
		s.expiring = append(s.expiring, idemExpiry{idem.Scope, idem.ExpiresAt})
		s.saw(idem.CreatedAt)
		s.expire(s.now)
	}
}

// saw moves the store's idea of now forward. s.mu is held.
func (s *Store) saw(t time.Time) {
	if t.After(s.now) {
		s.now = t
	}
}

// List implements store.Store. It seeks to the cursor in the account's own
// index and walks it newest first, releasing the lock every chunk records
// (the index is re-sought by position, so a write in between changes
// nothing it has not yet reached).
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	if q.AccountID == "" {
		return s.listEveryAccount(ctx, q)
	}
	var out []*store.Record
	var pos store.ListPosition // the last record examined, once started
	started := q.After != nil
	if started {
		pos = *q.After
	}
	for !s.listChunk(q, &pos, &started, &out) {
	}
	return out, nil
}

// listChunk examines at most chunk records after *pos (from the newest if
// not *started), appending matches to out and moving *pos past what it
// examined. It reports whether the listing is complete.
func (s *Store) listChunk(q store.ListQuery, pos *store.ListPosition, started *bool, out *[]*store.Record) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.accounts[q.AccountID]
	if a == nil {
		return true
	}
	i := len(a.recs) // newest first: walk down from here
	if *started {
		i = a.search(pos.CreatedAt, pos.ID)
	}
	for n := 0; i > 0 && n < chunk; n++ {
		i--
		r := a.recs[i]
		pos.CreatedAt, pos.ID, *started = r.CreatedAt, r.ID, true
		if !matches(&q, r) {
			continue
		}
		if *out = append(*out, r); len(*out) == q.Limit {
			return true
		}
	}
	return i == 0
}

// matches applies q's filters to r.
func matches(q *store.ListQuery, r *store.Record) bool {
	return (q.Environment == "" || r.Environment == q.Environment) &&
		(q.Revoked == nil || *q.Revoked != r.RevokedAt.IsZero()) &&
		(q.OwnerID == "" || r.OwnerID == q.OwnerID) &&
		(q.ExpiresBefore.IsZero() || !r.ExpiresAt.IsZero() && !r.ExpiresAt.Before(q.ExpiresFrom) && r.ExpiresAt.Before(q.ExpiresBefore))
}

// listEveryAccount serves a List with no account (an expiry window across
// accounts, for the host): one page from each account, merged. Each
// account is read as its own List, so the lock is released between
// chunks as there.
func (s *Store) listEveryAccount(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	if q.ExpiresBefore.IsZero() {
		return nil, errors.New("memstore: List: an account is required unless an expiry window is given")
	}
	s.mu.RLock()
	ids := make([]string, 0, len(s.accounts))
	for id := range s.accounts {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	var out []*store.Record
	for _, id := range ids {
		q.AccountID = id
		page, _ := s.List(ctx, q)
		out = append(out, page...)
	}
	slices.SortFunc(out, func(a, b *store.Record) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out[:min(len(out), q.Limit)], nil
}

// TouchLastUsed implements store.Store. It replaces each touched record with
// an updated copy, never changing one a reader may hold, and releases its
// lock between chunks of the batch. The Manager flushes once a minute, so
// it also expires due idempotency entries, a chunk per hold of the lock:
// entries expire without a goroutine, and without a later idempotent
// create having to come along.
func (s *Store) TouchLastUsed(_ context.Context, batch []store.LastUsed) error {
	for len(batch) > 0 {
		n := min(len(batch), chunk)
		s.touch(batch[:n])
		batch = batch[n:]
	}
	for s.expireChunk() {
	}
	return nil
}

func (s *Store) expireChunk() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.expire(s.now)
}

// touch applies one chunk of a batch in three steps, so that the write
// lock covers only pointer swaps: the current records are read under the
// read lock (no allocation), copied with no lock held (allocation, and any
// GC assist it brings, holds up nobody), and swapped in under the write
// lock if each is still the one copied; a record replaced meanwhile is
// copied again.
func (s *Store) touch(batch []store.LastUsed) {
	olds := make([]*store.Record, len(batch))
	for len(batch) > 0 {
		olds = olds[:len(batch)]
		s.mu.RLock()
		for i, e := range batch {
			olds[i] = s.byID[e.ID]
		}
		s.mu.RUnlock()
		recs := make([]*store.Record, len(batch))
		for i, e := range batch {
			if old := olds[i]; old != nil && e.At.After(old.LastUsed) {
				recs[i] = old.Clone()
				recs[i].LastUsed = e.At.UTC().Truncate(time.Microsecond)
			}
		}
		var again []store.LastUsed
		s.mu.Lock()
		for i, e := range batch {
			s.saw(e.At)
			switch {
			case recs[i] == nil:
			case s.byID[e.ID] != olds[i]:
				again = append(again, e)
			default:
				s.replace(recs[i])
			}
		}
		s.mu.Unlock()
		batch = again
	}
}

// Mark implements store.Marker, in memory: at most 100,000 marks (at the
// bound, expired ones go first, then the oldest).
func (s *Store) Mark(_ context.Context, mark store.Digest, until, now time.Time) (bool, error) {
	return s.marks.Mark(mark, until, now), nil
}

// Marked implements store.Marker.
func (s *Store) Marked(_ context.Context, mark store.Digest, now time.Time) (bool, error) {
	return s.marks.Marked(mark, now), nil
}

// Unmark implements store.Marker.
func (s *Store) Unmark(_ context.Context, mark store.Digest) error {
	s.marks.Unmark(mark)
	return nil
}
