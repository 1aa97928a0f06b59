// Package marks is a bounded set of marks that expire: the memory of
// store.Marker in memstore, and the Manager's own on a store without one.
package marks

import (
	"sync"
	"time"
)

// Set is a bounded set of 32-byte marks, each with its expiry. Safe for
// concurrent use; the zero Set holds no mark and is ready to use, with
// Max (0: 10,000) marks at most.
type Set struct {
	Max int

	mu    sync.Mutex
	until map[[32]byte]int64 // Unix ns
	order []entry            // marks in the order they were made, for bounding
}

type entry struct {
	mark  [32]byte
	until int64
}

// Mark records mark until until, reporting whether it is new (not
// recorded, or expired at now). At the bound, expired marks go first,
// then the oldest.
func (s *Set) Mark(mark [32]byte, until, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.until == nil {
		s.until = make(map[[32]byte]int64)
	}
	t := now.UnixNano()
	if u, ok := s.until[mark]; ok && u > t {
		return false
	}
	limit := s.Max
	if limit <= 0 {
		limit = 10_000
	}
	for len(s.order) > 0 && (len(s.until) >= limit || s.order[0].until <= t) {
		e := s.order[0]
		s.order = s.order[1:]
		if u, ok := s.until[e.mark]; ok && u == e.until { // not re-marked since
			delete(s.until, e.mark)
		}
	}
	s.until[mark] = until.UnixNano()
	s.order = append(s.order, entry{mark, until.UnixNano()})
	return true
}

// Marked reports whether mark is recorded, unexpired at now.
func (s *Set) Marked(mark [32]byte, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.until[mark]
	return ok && u > now.UnixNano()
}

// Unmark deletes mark.
func (s *Set) Unmark(mark [32]byte) {
	s.mu.Lock()
	delete(s.until, mark)
	s.mu.Unlock()
}
