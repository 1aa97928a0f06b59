package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/store"
)

// accountBudgetID names an account's budget in the CreditStore: apart from
// every key's (whose budgets are named by key IDs, "key_…").
func accountBudgetID(account string) string { return "account:" + account }

// errNoAccountCredits: account budgets need plans (they ride on the
// account's cached plan, so that a Verify of an account without one costs
// nothing) and a store that keeps credits.
var errNoAccountCredits = errors.New("keys: account credits need WithPlans and a store that keeps credits (store.CreditStore)")

// SetAccountCredits sets the provider's budget of account (nil removes
// it): shared by every key of the account, in addition to each key's own.
// A request of any of its keys spends from the account's budget and its
// key's, both or neither; a refusal is a *CreditsError whose Account says
// which ran out. Only the provider sets it; a customer reads it
// (Account). It needs WithPlans: this instance applies it at once, others
// within the plans' TTL.
func (m *Manager) SetAccountCredits(ctx context.Context, account string, b *credits.Budget) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if m.plans == nil || m.credits == nil {
		return errNoAccountCredits
	}
	if account == "" {
		return invalid("account_id", "an account is required")
	}
	var sb *store.Budget
	if b != nil {
		v, err := validateCredits(b, m.now())
		if err != nil {
			return err
		}
		v.ByHost = true
		sb = &v
	}
	if err := m.credits.SetCredits(ctx, accountBudgetID(account), sb); err != nil {
		return fmt.Errorf("%w: setting credits: %w", ErrUnavailable, err)
	}
	m.plans.entries.Delete(account) // asked again, budget and all, by the next request
	return nil
}

// Account is what a customer may read of its account (GET
// /developers/account): its plan and the provider's budget, each nil when
// there is none.
type Account struct {
	ID      string
	Plan    *Plan           // nil: none (no WithPlans, or a zero Plan)
	Credits *credits.Budget // nil: none
}

// Account returns account's plan (WithPlans) and budget
// (SetAccountCredits).
func (m *Manager) Account(ctx context.Context, account string) (*Account, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	a := &Account{ID: account}
	if m.plans == nil {
		return a, nil
	}
	now := m.now()
	e, err := m.plans.of(ctx, account, now)
	if err != nil {
		return nil, err
	}
	if p := e.plan; p.Name != "" || p.PerMinute|p.PerDay|p.Concurrent|p.MaxKeys != 0 || len(p.Endpoints) > 0 {
		a.Plan = &p
	}
	if m.credits == nil {
		return a, nil
	}
	id := accountBudgetID(account)
	got, err := m.credits.ReadCredits(ctx, []string{id}, now)
	if err != nil {
		return nil, fmt.Errorf("%w: reading credits: %w", ErrUnavailable, err)
	}
	if b, ok := got[id]; ok {
		a.Credits = shownBudget(b, now)
	}
	return a, nil
}

// Account is the principal's account.
func (s Scoped) Account(ctx context.Context) (*Account, error) {
	if err := s.c.valid(); err != nil {
		return nil, err
	}
	return s.m.Account(ctx, s.c.p.AccountID)
}

// hasAccountBudget reports whether account has a budget, for its plan's
// cache entry.
func (m *Manager) hasAccountBudget(ctx context.Context, account string, now time.Time) (bool, error) {
	if m.credits == nil {
		return false, nil
	}
	id := accountBudgetID(account)
	got, err := m.credits.ReadCredits(ctx, []string{id}, now)
	if err != nil {
		return false, err
	}
	_, ok := got[id]
	return ok, nil
}
