package keys

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Credits are an optional budget of uses on a key (Unkey's "remaining"):
// each verified request spends its cost, and a request that would take the
// budget below zero is refused with a *CreditsError (ErrCreditsExhausted),
// which is not a rate limit: waiting does not help unless the budget has a
// refill, and then only until the refill.
//
// A refill is never implied: a budget without one is spent once. With one,
// at the start of every UTC day (RefillDaily) or UTC calendar month
// (RefillMonthly) the budget is set to Refill.Amount (set, not added: what
// is left of a period does not carry over). The refill is applied lazily,
// by the first spend or read of the new period, so an idle key costs
// nothing.
//
// A rolled key's successor shares its predecessor's budget
// (Record.CreditsID), so a roll cannot double a budget while both secrets
// work.
type Credits struct {
	// Remaining is what is left of the budget.
	Remaining int64 `json:"remaining"`
	// Refill is the budget's refill; nil: none.
	Refill *Refill `json:"refill,omitempty"`
	// RefillsAt is when the next refill is due; nil: no refill. The
	// Manager sets it when it shows a key; stores leave it nil.
	RefillsAt *time.Time `json:"refills_at,omitempty"`
	// Period is the start of the refill period Remaining belongs to (the
	// UTC day or month in which it was last set or refilled). Stores keep
	// it beside Remaining; it is not shown.
	Period time.Time `json:"-"`
	// ByHost says the provider set the budget (the Manager's own Create
	// or Update): then only the provider can change or remove it, and a
	// principal's attempt is a *PermissionError on credits. A budget a
	// principal set, the principal's account may change. Stores keep it.
	ByHost bool `json:"-"`
}

// Refill says when and how a budget is refilled.
type Refill struct {
	Interval RefillInterval `json:"interval"`
	Amount   int64          `json:"amount"` // what the budget is set to, 1 to MaxCredits
}

// RefillInterval is how often a budget is refilled.
type RefillInterval string

// The refill intervals. The periods are UTC calendar days and months, so
// every client can know the instant of the next refill in advance.
const (
	RefillDaily   RefillInterval = "daily"
	RefillMonthly RefillInterval = "monthly"
)

// MaxCredits bounds a budget's Remaining and Refill.Amount: 10^15, exact
// in any JSON reader's numbers (a float64 holds integers to 2^53).
const MaxCredits = 1_000_000_000_000_000

// MaxCost bounds the cost of one request (CreditCost).
const MaxCost = 1_000_000

// PeriodStart is the start of the refill period holding t: its UTC day or
// UTC month. Stores that compute refills in their own language (pgstore,
// in SQL) take both instants from it, so the Manager's clock decides.
func (i RefillInterval) PeriodStart(t time.Time) time.Time {
	y, mo, d := t.UTC().Date()
	if i == RefillMonthly {
		d = 1
	}
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}

// Next is the start of the period after the one holding t: when a budget
// with this refill is next refilled.
func (i RefillInterval) Next(t time.Time) time.Time {
	start := i.PeriodStart(t)
	if i == RefillMonthly {
		return start.AddDate(0, 1, 0)
	}
	return start.AddDate(0, 0, 1)
}

// At returns c as it stands at now: if it has a refill and a refill period
// has begun after c.Period, Remaining is the refill's amount and Period
// that period's start. Stores call it before they spend or read a budget.
func (c Credits) At(now time.Time) Credits {
	if c.Refill != nil {
		if p := c.Refill.Interval.PeriodStart(now); p.After(c.Period) {
			c.Remaining, c.Period = c.Refill.Amount, p
		}
	}
	return c
}

// CreditBudget is a budget as a Write stores it: the budget named ID is set
// to Credits (created, or replaced whatever it held).
type CreditBudget struct {
	ID      string
	Credits Credits
}

// CheckCredits refuses a Write that sets a budget none of its records
// names, or one out of range. A CreditStore calls it before it writes
// anything.
func (w *Write) CheckCredits() error {
	b := w.Credits
	if b == nil {
		return nil
	}
	if b.ID == "" || !(w.Insert != nil && w.Insert.CreditsID == b.ID || w.Replace != nil && w.Replace.CreditsID == b.ID) {
		return errors.New("keys: a Write sets a credit budget that none of its records names")
	}
	if c := b.Credits; c.Remaining < 0 || c.Remaining > MaxCredits || c.Refill != nil && (c.Refill.Amount < 1 || c.Refill.Amount > MaxCredits ||
		c.Refill.Interval != RefillDaily && c.Refill.Interval != RefillMonthly) {
		return fmt.Errorf("keys: a credit budget out of range: %+v", c)
	}
	return nil
}

// CreditStore is the optional Store capability that keeps credits:
// memstore and pgstore have it. On a store without it, a key cannot be
// given credits (a *ValidationError on credits). Package keystest checks
// its rules (Credits).
//
// Budgets are written by Store.Write (Write.Credits), in the same
// all-or-nothing step as the record that names them.
type CreditStore interface {
	// SpendCredits takes cost from the budget named id at now, in one
	// atomic step across every instance sharing the store: the budget
	// first as At(now) computes it, then, if its Remaining is at least
	// cost, Remaining less cost, which is stored and returned. Otherwise
	// nothing is spent and it returns the budget as At(now) computes it
	// with an error matching ErrCreditsExhausted. Concurrent spends of one
	// budget never take it below zero, nor spend one credit twice. No
	// such budget: an error matching ErrNotFound.
	//
	// A store shared by instances may answer ErrCreditsExhausted from
	// memory for a budget it found spent, for at most a second and never
	// past the budget's next refill; a budget set through the same store
	// value since is read again at once (pgstore does this, so that a
	// flood on a spent key does not reach the database).
	SpendCredits(ctx context.Context, id string, cost int64, now time.Time) (Credits, error)
	// ReadCredits returns the budgets named by ids that exist, as At(now)
	// computes them, by ID; it stores nothing.
	ReadCredits(ctx context.Context, ids []string, now time.Time) (map[string]Credits, error)
}

// ErrCreditsExhausted: the key's credits are spent (or the request costs
// more than remain). The error Verify returns is a *CreditsError.
var ErrCreditsExhausted = errors.New("keys: credits exhausted")

// CreditsError is Verify's refusal of a request its key's credits cannot
// pay for (wrapping ErrCreditsExhausted).
type CreditsError struct {
	Credits Credits // the budget as it stands, RefillsAt included
	Cost    int64   // what the request would have cost
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

// shown is c as the API shows it at now: RefillsAt set from its refill.
func (c Credits) shown(now time.Time) *Credits {
	c = c.At(now)
	if c.Refill != nil {
		t := c.Refill.Interval.Next(now)
		c.RefillsAt = &t
	}
	return &c
}

// CreditsSpec is what a create or update sets a key's credits to: the
// API's credits object. Remaining is required; Refill is optional and
// never defaulted.
type CreditsSpec struct {
	Remaining *int64  `json:"remaining,omitempty"`
	Refill    *Refill `json:"refill,omitempty"`
}

// validateCredits checks a CreditsSpec and returns the budget it sets at
// now (its Period the current period, so the first refill is the next
// one).
func validateCredits(s *CreditsSpec, now time.Time) (Credits, error) {
	if s.Remaining == nil {
		return Credits{}, &ValidationError{Code: CodeMissingParameter, Param: "credits.remaining", Message: "credits.remaining is required"}
	}
	if *s.Remaining < 0 || *s.Remaining > MaxCredits {
		return Credits{}, invalid("credits.remaining", "credits.remaining must be from 0 to %d", int64(MaxCredits))
	}
	c := Credits{Remaining: *s.Remaining}
	if r := s.Refill; r != nil {
		if r.Interval != RefillDaily && r.Interval != RefillMonthly {
			return Credits{}, invalid("credits.refill.interval", "credits.refill.interval must be daily or monthly")
		}
		if r.Amount < 1 || r.Amount > MaxCredits {
			return Credits{}, invalid("credits.refill.amount", "credits.refill.amount must be from 1 to %d", int64(MaxCredits))
		}
		c.Refill = &Refill{Interval: r.Interval, Amount: r.Amount}
		c.Period = r.Interval.PeriodStart(now)
	}
	return c, nil
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

// spend takes the request's cost from rec's budget at now.
func (m *Manager) spend(ctx context.Context, rec *Record, cost int64, now time.Time) (Credits, error) {
	if m.credits == nil {
		return Credits{}, errNoCreditStore
	}
	c, err := m.credits.SpendCredits(ctx, rec.CreditsID, cost, now)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, ErrCreditsExhausted):
		e := &CreditsError{Credits: *c.shown(now), Cost: cost}
		if e.Credits.RefillsAt != nil {
			e.RetryAfter = e.Credits.RefillsAt.Sub(now)
		}
		return c, e
	default:
		return c, fmt.Errorf("%w: spending credits: %w", ErrUnavailable, err)
	}
}

// showCredits fills in the credits of the keys shown (one read for all
// of them); ks[i] is recs[i]'s.
func (m *Manager) showCredits(ctx context.Context, recs []*Record, ks []*APIKey) error {
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
		if c, ok := got[r.CreditsID]; ok && r.CreditsID != "" {
			ks[i].Credits = c.shown(now)
		}
	}
	return nil
}
