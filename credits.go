package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/store"
)

// ErrCreditsExhausted: the key's credits are spent (or the request costs
// more than remain). The error Verify returns is a *CreditsError. It is
// the same value as store.ErrCreditsExhausted, which stores return.
var ErrCreditsExhausted = store.ErrCreditsExhausted

// CreditsError is Verify's refusal of a request its key's credits cannot
// pay for (wrapping ErrCreditsExhausted).
type CreditsError struct {
	Credits credits.Budget // the budget as it stands, RefillsAt included
	Cost    int64          // what the request would have cost
	// Account is true when the account's budget (SetAccountCredits) ran
	// out, false when the key's did.
	Account bool
	// RetryAfter is the wait until the refill (from Verify's instant), or
	// 0 with no refill: then only a change of the budget helps.
	RetryAfter time.Duration
}

func (e *CreditsError) Error() string {
	if e.Credits.RefillsAt != nil {
		return fmt.Sprintf("keys: credits exhausted (%d left, %d needed) until %s", e.Credits.Remaining, e.Cost, e.Credits.RefillsAt.Format(time.RFC3339))
	}
	return fmt.Sprintf("keys: credits exhausted (%d left, %d needed)", e.Credits.Remaining, e.Cost)
}

// Unwrap makes errors.Is(err, ErrCreditsExhausted) hold.
func (e *CreditsError) Unwrap() error { return ErrCreditsExhausted }

// shownBudget is b as the API shows it at now: refilled if due, and
// RefillsAt set from its refill.
func shownBudget(b store.Budget, now time.Time) *credits.Budget {
	b = b.At(now)
	c := &credits.Budget{Remaining: b.Remaining}
	if b.Refill != nil {
		r := *b.Refill
		t := r.Interval.Next(now)
		c.Refill, c.RefillsAt = &r, &t
	}
	return c
}

// validateCredits checks a budget a create or update sets and returns it
// as stored at now (its Period the current period, so the first refill is
// the next one).
func validateCredits(c *credits.Budget, now time.Time) (store.Budget, error) {
	if c.Remaining < 0 || c.Remaining > credits.Max {
		return store.Budget{}, invalid("credits.remaining", "credits.remaining must be from 0 to %d", int64(credits.Max))
	}
	b := store.Budget{Remaining: c.Remaining}
	if r := c.Refill; r != nil {
		if !r.Interval.Valid() {
			return store.Budget{}, invalid("credits.refill.interval", "credits.refill.interval must be daily or monthly")
		}
		if r.Amount < 1 || r.Amount > credits.Max {
			return store.Budget{}, invalid("credits.refill.amount", "credits.refill.amount must be from 1 to %d", int64(credits.Max))
		}
		b.Refill = &credits.Refill{Interval: r.Interval, Amount: r.Amount}
		b.Period = r.Interval.PeriodStart(now)
	}
	return b, nil
}

// keepsCredits refuses credits, naming the field, on a store without them.
func (m *Manager) keepsCredits() error {
	if m.credits == nil {
		return invalid("credits", "this server's key store keeps no credits")
	}
	return nil
}

// errNoCreditStore: a record names a budget, and the store keeps none (a
// record written by another program, or a store swapped under the keys):
// refused, never admitted.
var errNoCreditStore = fmt.Errorf("%w: the key names a credit budget the store does not keep", ErrUnavailable)

// mayChangeCredits refuses a principal's change of a budget the provider
// set.
func (m *Manager) mayChangeCredits(ctx context.Context, id string) error {
	if m.credits == nil {
		return nil // keepsCredits refused the change already
	}
	got, err := m.credits.ReadCredits(ctx, []string{id}, m.now())
	if err != nil {
		return fmt.Errorf("%w: reading credits: %w", ErrUnavailable, err)
	}
	if got[id].ByHost {
		return &PermissionError{Param: "credits", Message: "the key's credits were set by the provider; only the provider can change or remove them"}
	}
	return nil
}

// spend takes cost from the budget named id at now, and returns the
// budget after it. A budget that is gone is store.ErrNotFound.
func (m *Manager) spend(ctx context.Context, id string, cost int64, now time.Time) (store.Budget, error) {
	if m.credits == nil {
		return store.Budget{}, errNoCreditStore
	}
	b, err := m.credits.SpendCredits(ctx, id, cost, now)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, store.ErrCreditsExhausted):
		e := &CreditsError{Credits: *shownBudget(b, now), Cost: cost}
		if e.Credits.RefillsAt != nil {
			e.RetryAfter = e.Credits.RefillsAt.Sub(now)
		}
		return store.Budget{}, e
	default: // a budget that is gone too: the record names one the store lacks
		return store.Budget{}, fmt.Errorf("%w: spending credits: %w", ErrUnavailable, err)
	}
}

// showCredits fills in the credits of the keys shown (one read for all
// of them); ks[i] is recs[i]'s.
func (m *Manager) showCredits(ctx context.Context, recs []*store.Record, ks []*APIKey) error {
	var ids []string
	for _, r := range recs {
		if r.CreditsID != "" {
			ids = append(ids, r.CreditsID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if m.credits == nil {
		return errNoCreditStore
	}
	now := m.now()
	got, err := m.credits.ReadCredits(ctx, ids, now)
	if err != nil {
		return fmt.Errorf("%w: reading credits: %w", ErrUnavailable, err)
	}
	for i, r := range recs {
		if b, ok := got[r.CreditsID]; ok && r.CreditsID != "" {
			ks[i].Credits = shownBudget(b, now)
		}
	}
	return nil
}
