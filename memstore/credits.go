package memstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	kcredits "github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/store"
)

var _ store.CreditStore = (*Store)(nil)

// credits is the store's credit budgets. The map has a lock of its own, so
// that a spend never waits for a List chunk or a flush; each budget has
// its own, so that spends of different keys never wait for each other.
// Write (under the store's lock) takes the map's lock inside it.
type credits struct {
	mu      sync.RWMutex
	budgets map[string]*budget
	// refs counts the records naming each budget (store.Record.CreditsID): a
	// budget no record names is deleted with the last one, so budgets
	// never outnumber records.
	refs map[string]int
}

type budget struct {
	mu sync.Mutex
	b  store.Budget
}

// SpendCredits implements store.CreditStore.
func (s *Store) SpendCredits(_ context.Context, id string, cost int64, now time.Time) (store.Budget, error) {
	if cost < 1 {
		return store.Budget{}, fmt.Errorf("memstore: a spend of %d credits", cost)
	}
	s.credits.mu.RLock()
	b := s.credits.budgets[id]
	s.credits.mu.RUnlock()
	if b == nil {
		return store.Budget{}, store.ErrNotFound
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.b.At(now)
	if c.Remaining < cost {
		return c, store.ErrCreditsExhausted
	}
	c.Remaining -= cost
	b.b = c
	return c, nil
}

// ReadCredits implements store.CreditStore.
func (s *Store) ReadCredits(_ context.Context, ids []string, now time.Time) (map[string]store.Budget, error) {
	out := make(map[string]store.Budget, len(ids))
	s.credits.mu.RLock()
	defer s.credits.mu.RUnlock()
	for _, id := range ids {
		if b := s.credits.budgets[id]; b != nil {
			b.mu.Lock()
			out[id] = b.b.At(now)
			b.mu.Unlock()
		}
	}
	return out, nil
}

// SetCredits implements store.CreditStore.
func (s *Store) SetCredits(_ context.Context, id string, b *store.Budget) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b == nil {
		c := &s.credits
		c.mu.Lock()
		if c.refs[id] == 0 { // a budget records name goes with them
			delete(c.budgets, id)
		}
		c.mu.Unlock()
		return nil
	}
	s.setCredits(&store.CreditBudget{ID: id, Budget: *b})
	return nil
}

// RefundCredits implements store.CreditStore.
func (s *Store) RefundCredits(_ context.Context, id string, cost int64, period time.Time) error {
	if cost < 1 {
		return fmt.Errorf("memstore: a refund of %d credits", cost)
	}
	s.credits.mu.RLock()
	b := s.credits.budgets[id]
	s.credits.mu.RUnlock()
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Period.Equal(period) {
		b.b.Remaining = min(b.b.Remaining+cost, kcredits.Max)
	}
	return nil
}

// setCredits stores a Write's budget, replacing the one with its ID in
// place (a spend holding it sees the new value). s.mu is held.
func (s *Store) setCredits(nb *store.CreditBudget) {
	if nb == nil {
		return
	}
	c := &s.credits
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.budgets[nb.ID]; b != nil {
		b.mu.Lock()
		b.b = nb.Budget
		b.mu.Unlock()
		return
	}
	if c.budgets == nil {
		c.budgets, c.refs = map[string]*budget{}, map[string]int{}
	}
	c.budgets[nb.ID] = &budget{b: nb.Budget}
}

// ref moves the count of records naming id by d; at zero the budget goes.
// s.mu is held.
func (s *Store) ref(id string, d int) {
	if id == "" {
		return
	}
	c := &s.credits
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs == nil {
		c.budgets, c.refs = map[string]*budget{}, map[string]int{}
	}
	if n := c.refs[id] + d; n > 0 {
		c.refs[id] = n
		return
	}
	delete(c.refs, id)
	delete(c.budgets, id)
}
