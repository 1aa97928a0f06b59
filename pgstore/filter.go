package pgstore

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys/store"
)

// filter is a Bloom filter of every digest in the table, so that a key
// that was never issued (a forged key with a valid public checksum) is
// refused without a database query. A digest is a uniformly random 256-bit
// value, so its own bits serve as the filter's hash functions.
//
// It is loaded whenever the invalidation listener connects (after LISTEN,
// so an insert is either in the load or in a notification) and fed by the
// insert notifications of every instance, and by this instance's own
// inserts at once. It is trusted only while the listener is connected:
// without notifications it could miss keys created elsewhere. A miss still
// reaches the database at a small rate (missBudget), so that a key created
// on another instance an instant ago, whose notification is still on its
// way, verifies; a flood of forged keys spends that budget in a moment and
// is refused from memory from then on.
type filter struct {
	ready atomic.Bool
	bits  atomic.Pointer[bitset]
	miss  missBudget
}

// filterHashes is the number of bit positions per digest; with 16 bits of
// filter per key it gives about 0.1% false positives.
const filterHashes = 6

type bitset struct {
	words []atomic.Uint64
	mask  uint64 // bits - 1
}

// newBitset sizes a filter for n keys: 16 bits per key, for at least twice
// the keys loaded and at least 2^16 keys, as a power of two.
func newBitset(n int) *bitset {
	bits := uint64(1 << 20)
	for bits < uint64(max(2*n, 1<<16))*16 {
		bits <<= 1
	}
	return &bitset{words: make([]atomic.Uint64, bits/64), mask: bits - 1}
}

// positions derives the bit positions of d by double hashing on two of its
// 64-bit words (bytes the stores' own indexes do not use).
func positions(d *store.Digest, f func(pos uint64) bool) {
	h1 := binary.LittleEndian.Uint64(d[16:24])
	h2 := binary.LittleEndian.Uint64(d[24:32]) | 1
	for i := range uint64(filterHashes) {
		if !f(h1 + i*h2) {
			return
		}
	}
}

func (b *bitset) add(d *store.Digest) {
	positions(d, func(p uint64) bool {
		p &= b.mask
		b.words[p/64].Or(1 << (p % 64))
		return true
	})
}

func (b *bitset) has(d *store.Digest) bool {
	in := true
	positions(d, func(p uint64) bool {
		p &= b.mask
		in = b.words[p/64].Load()&(1<<(p%64)) != 0
		return in
	})
	return in
}

// add records a digest in the current filter.
func (f *filter) add(d *store.Digest) {
	if b := f.bits.Load(); b != nil {
		b.add(d)
	}
}

// absent reports whether d was certainly never stored, as far as a ready
// filter knows and the miss budget does not let the lookup through.
func (f *filter) absent(d *store.Digest) bool {
	if !f.ready.Load() {
		return false
	}
	b := f.bits.Load()
	return b != nil && !b.has(d) && !f.miss.take(time.Now().UnixNano())
}

// missBudget lets filter misses through to the database at missRate a
// second, in bursts of missBurst: a GCRA held in one atomic word, so the
// forged-key path takes no lock.
type missBudget struct{ tat atomic.Int64 }

const (
	missRate  = 20
	missBurst = 20
	missEvery = int64(time.Second) / missRate
)

func (m *missBudget) take(now int64) bool {
	for {
		tat := m.tat.Load()
		next := max(tat, now-missBurst*missEvery) + missEvery
		if next > now {
			return false
		}
		if m.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}
