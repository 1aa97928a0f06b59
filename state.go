package keys

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/txcloud/keys/store"
)

// keyState is what a Manager keeps about a key it has verified: when it
// last noted a use, and the key's usage counters. A store's Record is
// plain data the Manager never writes to; this is the Manager's own,
// found by the key's digest in a table of its own, so a store may return
// a fresh copy of a record on every lookup and usage and last-used times
// stay exact.
type keyState struct {
	digest      store.Digest
	id, account string
	// noted is the latest use noted (Unix ns, the Manager's clock): the
	// last-used time the next flush writes, if queued says so. A key
	// noted within the last second is not noted again.
	noted  atomic.Int64
	queued atomic.Bool
	// swept says the state was taken out of the table: a request that
	// still holds it counts in the key's fresh state instead.
	swept atomic.Bool
	// first holds the counts of the first API the key is counted for
	// (hasFirst), in the state's own allocation; more, those of further
	// APIs, replaced (never changed) when one is added.
	hasFirst atomic.Bool
	first    meterCell
	more     atomic.Pointer[[]*meterCell]
	// idle counts the drains in a row that found no count in the
	// state's cells; the flusher's, under Manager.flushMu.
	idle int
}

// states is the Manager's table of keyStates, by digest: sharded
// open-addressing tables that Verify searches without a lock (one atomic
// load per probe), while an insert takes its shard's mutex. A digest is a
// uniformly random 256-bit value, so its own bytes are the hash, and only
// keys that are stored and pass their checks ever get a state, so nobody
// can flood a probe chain.
type states struct {
	shards [stateShards]stateShard
	// extra counts the cells of further APIs (keyState.more), bounded by
	// maxExtra (maxExtraCells; tests lower it).
	extra    atomic.Int64
	maxExtra int64
	// retired are the states swept at the last sweep: still drained and
	// flushed (a request may have counted in one, or noted it, just before
	// it was swept) until the next sweep drops them. Under the
	// background's mutex.
	retired []*keyState
}

const stateShards = 64

type stateShard struct {
	mu   sync.Mutex // inserts and sweeps
	tab  atomic.Pointer[stateTable]
	used int      // slots filled; under mu
	_    [40]byte // keep shards on separate cache lines
}

// stateTable is kept at most half full. A slot is filled once and never
// emptied: a state goes when a sweep publishes a table without it, so a
// reader that takes no lock never stops short of a state further along
// its chain.
//
// A slot holds a tag of its state's digest beside it, written before the
// state is published and never changed, so a probe reads only the state
// whose tag matches: a key used for the first time (no state yet) costs
// one load of the table, not a load of every state on its probe, each a
// cache miss when many keys are in use.
type stateTable struct {
	slots []stateSlot
	mask  uint64
}

type stateSlot struct {
	tag uint64
	st  atomic.Pointer[keyState]
}

func newStateTable(size int) *stateTable {
	return &stateTable{slots: make([]stateSlot, size), mask: uint64(size - 1)}
}

func newStates() *states {
	s := &states{maxExtra: maxExtraCells}
	for i := range s.shards {
		s.shards[i].tab.Store(newStateTable(8))
	}
	return s
}

func (s *states) shard(d *store.Digest) *stateShard { return &s.shards[d[31]%stateShards] }

// home is where a digest's probe starts: bytes other tables keyed by
// digest (memstore's) do not use.
func home(d *store.Digest) uint64 { return binary.LittleEndian.Uint64(d[16:24]) }

// stateTag is what a slot holds of a digest: bytes neither the shard nor
// home uses.
func stateTag(d *store.Digest) uint64 { return binary.LittleEndian.Uint64(d[0:8]) }

// find returns the slot holding the key's state, and the state; or the
// empty slot that ends the probe, and nil.
func (t *stateTable) find(d *store.Digest) (*stateSlot, *keyState) {
	want := stateTag(d)
	for i := home(d) & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		st := sl.st.Load()
		if st == nil {
			return sl, nil
		}
		if sl.tag == want && digestEqual(&st.digest, d) {
			return sl, st
		}
	}
}

// set publishes st in sl, an empty slot. The shard's mu is held.
func (sl *stateSlot) set(st *keyState) {
	sl.tag = stateTag(&st.digest)
	sl.st.Store(st)
}

// get returns the key's state, or nil. It takes no lock.
func (s *states) get(d *store.Digest) *keyState {
	_, st := s.shard(d).tab.Load().find(d)
	return st
}

// insert returns the key's state, making it if there is none; api, if
// not empty, names its first cell.
func (s *states) insert(d *store.Digest, id, account, api string) *keyState {
	sh := s.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	t := sh.tab.Load()
	sl, st := t.find(d)
	if st != nil {
		return st
	}
	if 2*(sh.used+1) > len(t.slots) {
		size := 8
		for size < 4*(sh.used+1) {
			size *= 2
		}
		t = sh.rehash(t, size)
		sl, _ = t.find(d)
	}
	st = &keyState{digest: *d, id: id, account: account}
	if api != "" {
		st.first.api = api
		st.hasFirst.Store(true)
	}
	sl.set(st)
	sh.used++
	return st
}

// rehash publishes a table of size slots holding t's states but the
// swept ones. sh.mu is held.
func (sh *stateShard) rehash(t *stateTable, size int) *stateTable {
	n := newStateTable(size)
	live := 0
	for i := range t.slots {
		if st := t.slots[i].st.Load(); st != nil && !st.swept.Load() {
			sl, _ := n.find(&st.digest)
			sl.set(st)
			live++
		}
	}
	sh.tab.Store(n)
	sh.used = live
	return n
}

// each calls fn with every state in the tables. It takes no lock: a state
// inserted meanwhile may be missed.
func (s *states) each(fn func(*keyState)) {
	for i := range s.shards {
		s.shards[i].each(fn)
	}
}

func (sh *stateShard) each(fn func(*keyState)) {
	t := sh.tab.Load()
	for i := range t.slots {
		if st := t.slots[i].st.Load(); st != nil {
			fn(st)
		}
	}
}

// sweep takes out of the tables every state for which idle reports true,
// and keeps them as retired until the next sweep. The caller holds the
// background's mutex.
func (s *states) sweep(idle func(*keyState) bool) {
	s.retired = nil
	for i := range s.shards {
		sh := &s.shards[i]
		var gone []*keyState
		sh.each(func(st *keyState) {
			if idle(st) {
				gone = append(gone, st)
			}
		})
		if len(gone) == 0 {
			continue
		}
		sh.mu.Lock()
		for _, st := range gone {
			st.swept.Store(true)
			s.retired = append(s.retired, st)
			if more := st.more.Load(); more != nil {
				s.extra.Add(-int64(len(*more)))
			}
		}
		// A table without them, as large again (keys used now and then
		// come back as fast as they went), smaller only when it was
		// mostly empty even before. A reader of the old table may still
		// find a swept state: it counts in the key's fresh one (live),
		// and what it noted is flushed from the retired list.
		t := sh.tab.Load() // an insert may have grown it
		size := len(t.slots)
		if 16*sh.used < size && size > 8 {
			size /= 2
		}
		sh.rehash(t, size)
		sh.mu.Unlock()
	}
}

// live returns st, or the key's state in the table if st was swept.
func (s *states) live(st *keyState) *keyState {
	if !st.swept.Load() {
		return st
	}
	if fresh := s.get(&st.digest); fresh != nil {
		return fresh
	}
	return s.insert(&st.digest, st.id, st.account, "")
}
