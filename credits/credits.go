// Package credits describes a key's budget of uses, Unkey's "remaining":
// how much a key may still spend, and how it is refilled. A host gives a
// key a Budget when it creates or updates it (keys.APIKeyCreate.Credits,
// keys.APIKeyUpdate.Credits); every request the key makes through
// keys.Manager.Verify then spends its cost (1, or what keys.WithCreditCosts
// sets for the request's API), and a request the budget cannot pay for in
// full is refused with a *keys.CreditsError and spends nothing.
//
// A refill is never implied: a budget without one is spent once. With one,
// at the start of every UTC day (Daily) or UTC calendar month (Monthly)
// the budget is set to Refill.Amount: set, not added, so what is left of a
// period does not carry over. Every client can know the instant of the
// next refill in advance (Budget.RefillsAt). A refill is applied lazily,
// by the first spend or read of the new period, so an idle key costs
// nothing. A rolled key's successor shares its predecessor's budget, so a
// roll cannot double a budget while both secrets work.
//
// This package holds only the budget's shape and its calendar. The Manager
// (package keys) spends budgets; a store keeps them through the optional
// store.CreditStore capability (package store), which memstore and pgstore
// have.
package credits

import "time"

// Budget is a key's credits as the API shows them, and what a create or
// update sets them to (RefillsAt is then ignored).
type Budget struct {
	// Remaining is what is left: 0 to Max.
	Remaining int64 `json:"remaining"`
	// Refill is the budget's refill; nil: none.
	Refill *Refill `json:"refill,omitempty"`
	// RefillsAt is when the next refill is due; nil with no refill. The
	// Manager sets it when it shows a key.
	RefillsAt *time.Time `json:"refills_at,omitempty"`
}

// Refill says when a budget is refilled and to what.
type Refill struct {
	Interval Interval `json:"interval"`
	// Amount is what the budget is set to at each refill: 1 to Max.
	Amount int64 `json:"amount"`
}

// Interval is how often a budget is refilled.
type Interval string

// The refill intervals: UTC calendar days and months.
const (
	Daily   Interval = "daily"
	Monthly Interval = "monthly"
)

// Max bounds a budget's Remaining and a refill's Amount: 10^15, exact in
// any JSON reader's numbers (a float64 holds integers to 2^53).
const Max = 1_000_000_000_000_000

// MaxCost bounds what one request may cost (keys.CreditCost,
// keys.WithCreditCosts).
const MaxCost = 1_000_000

// Valid reports whether i is Daily or Monthly.
func (i Interval) Valid() bool { return i == Daily || i == Monthly }

// PeriodStart is the start of the refill period holding t: its UTC day,
// or its UTC month.
func (i Interval) PeriodStart(t time.Time) time.Time {
	y, mo, d := t.UTC().Date()
	if i == Monthly {
		d = 1
	}
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}

// Next is the start of the period after the one holding t: when a budget
// refilled at this interval is next refilled.
func (i Interval) Next(t time.Time) time.Time {
	start := i.PeriodStart(t)
	if i == Monthly {
		return start.AddDate(0, 1, 0)
	}
	return start.AddDate(0, 0, 1)
}
