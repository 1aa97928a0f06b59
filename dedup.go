package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/txcloud/keys/store"
)

// Marked reports whether id was given to Deduplicate within its window
// and not forgotten, by this Manager or (on a store.Marker) any instance
// sharing the store; it records nothing. Package portal ends a signed-out
// session with Deduplicate and asks Marked on every page.
func (m *Manager) Marked(ctx context.Context, id [32]byte) (bool, error) {
	if m.closed.Load() {
		return false, ErrClosed
	}
	now := m.now()
	mk, ok := store.Capability[store.Marker](m.store)
	if !ok {
		return m.marks.Marked(id, now), nil
	}
	marked, err := mk.Marked(ctx, id, now)
	if err != nil {
		return false, fmt.Errorf("%w: reading a mark: %w", ErrUnavailable, err)
	}
	return marked, nil
}

// Deduplicate reports whether id is new: not given to Deduplicate within
// the last window, by this Manager or, on a store that is a store.Marker
// (memstore, pgstore), by any instance sharing the store. Of concurrent
// calls with one id, exactly one reports true. forget undoes it, for work
// that failed and must be let in again (a nil error means it is
// forgotten). On a store without the capability, ids are remembered in
// this Manager's memory, 10,000 at most (the oldest go first). Package
// secretscanning refuses replayed alerts with it, on every instance.
func (m *Manager) Deduplicate(ctx context.Context, id [32]byte, window time.Duration) (fresh bool, forget func(context.Context) error, err error) {
	if m.closed.Load() {
		return false, nil, ErrClosed
	}
	if window <= 0 {
		return false, nil, errors.New("keys: Deduplicate: the window must be positive")
	}
	now := m.now()
	mk, ok := store.Capability[store.Marker](m.store)
	if !ok {
		if !m.marks.Mark(id, now.Add(window), now) {
			return false, nil, nil
		}
		return true, func(context.Context) error { m.marks.Unmark(id); return nil }, nil
	}
	fresh, err = mk.Mark(ctx, id, now.Add(window), now)
	if err != nil {
		return false, nil, fmt.Errorf("%w: marking: %w", ErrUnavailable, err)
	}
	if !fresh {
		return false, nil, nil
	}
	return true, func(ctx context.Context) error {
		if err := mk.Unmark(ctx, id); err != nil {
			return fmt.Errorf("%w: unmarking: %w", ErrUnavailable, err)
		}
		return nil
	}, nil
}
