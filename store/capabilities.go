package store

import (
	"context"
	"errors"
	"time"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/usage"
)

// The optional capabilities of a Store, each found by type assertion
// (through wrappers: see Capability). A Manager on a store without one
// does without what it keeps, and says so: usage is not served (a 404
// over HTTP), credits on a key are a validation error, and an import
// writes one record at a time.

// UsageStore is the optional capability that keeps request counts.
// memstore and pgstore have it; with a store that lacks it, usage is
// neither kept nor served.
type UsageStore interface {
	// AddUsage adds a batch of minute rows (each with a KeyID), and adds
	// each to its hour and its UTC day too. It is idempotent: a batch
	// whose ID was added before (within 7 days) changes nothing, so a
	// flush retried after an answer was lost counts nothing twice. Rows
	// of a batch may repeat a bucket; their counts add up.
	AddUsage(ctx context.Context, b UsageBatch) error
	// Usage returns the query's rows summed by bucket and API (KeyID
	// empty in each), ordered by bucket. Its cost should not grow with the
	// account's keys when q.KeyID is empty: memstore and pgstore keep the
	// account's totals beside each key's buckets.
	Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
}

// UsageRow is one bucket of one key's requests to one API. Failed counts
// every failed request and RateLimited the ones among them that a limit
// refused (429), as the API's failed and rate_limit_hits do.
type UsageRow struct {
	Bucket      time.Time // its start, UTC
	AccountID   string
	KeyID       string
	API         string
	Successful  int64
	Failed      int64
	RateLimited int64 // part of Failed
}

// UsageBatch is what one flush writes: minute rows, under an ID that makes
// the write idempotent. A Manager puts at most 10,000 rows in one batch;
// a flush of more is several batches.
type UsageBatch struct {
	ID   string
	Rows []UsageRow
}

// UsageQuery selects usage: an account's, optionally one key's or one
// API's, in buckets of Granularity from From (inclusive) to To
// (exclusive), both on the granularity's boundaries.
type UsageQuery struct {
	AccountID   string
	KeyID       string // "": every key
	API         string // "": every API
	Granularity usage.Granularity
	From, To    time.Time
}

// MinuteRetention is how long a UsageStore must keep minute buckets: a
// usage read whose edges are not whole hours reads them for up to 48
// hours back. Hours and days are kept longer (memstore: 400 days).
const MinuteRetention = 48 * time.Hour

// CreditStore is the optional capability that keeps credit budgets:
// memstore and pgstore have it. On a store without it, a key cannot be
// given credits. Budgets are written by Store.Write (Write.Credits), in
// the same all-or-nothing step as the record that names them.
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
	SpendCredits(ctx context.Context, id string, cost int64, now time.Time) (Budget, error)
	// ReadCredits returns the budgets named by ids that exist, as At(now)
	// computes them, by ID; it stores nothing.
	ReadCredits(ctx context.Context, ids []string, now time.Time) (map[string]Budget, error)
	// SetCredits sets the budget named id outside any Write, or deletes
	// it (b nil): an account's budget, which no record names. A budget
	// set so is never deleted by the store (budgets set by a Write go
	// with the records naming them).
	SetCredits(ctx context.Context, id string, b *Budget) error
	// RefundCredits gives back cost that SpendCredits took from the budget
	// named id, whose Period was then period: nothing if a refill has set
	// the budget anew since (its Period moved) or it is gone, and never
	// beyond credits.Max. The Manager refunds a spend when a request that
	// spends two budgets (its account's, then its key's) cannot spend
	// the second.
	RefundCredits(ctx context.Context, id string, cost int64, period time.Time) error
}

// ErrCreditsExhausted: SpendCredits found the budget short of the cost.
// keys.ErrCreditsExhausted is the same value.
var ErrCreditsExhausted = errors.New("keys: credits exhausted")

// Budget is a credit budget as a store keeps it.
type Budget struct {
	Remaining int64           // 0 to credits.Max
	Refill    *credits.Refill // nil: none
	// Period is the start of the refill period Remaining belongs to (the
	// UTC day or month in which it was last set or refilled).
	Period time.Time
	// ByHost says the provider set the budget: then only the provider
	// can change or remove it. Stores keep it.
	ByHost bool
}

// At returns b as it stands at now: if it has a refill and a refill period
// has begun after b.Period, Remaining is the refill's amount and Period
// that period's start. Stores call it before they spend or read a budget.
func (b Budget) At(now time.Time) Budget {
	if b.Refill != nil {
		if p := b.Refill.Interval.PeriodStart(now); p.After(b.Period) {
			b.Remaining, b.Period = b.Refill.Amount, p
		}
	}
	return b
}

func (b Budget) valid() bool {
	return b.Remaining >= 0 && b.Remaining <= credits.Max &&
		(b.Refill == nil || b.Refill.Amount >= 1 && b.Refill.Amount <= credits.Max && b.Refill.Interval.Valid())
}

// CreditBudget is what a Write sets: the budget named ID is set to Budget
// (created, or replaced whatever it held).
type CreditBudget struct {
	ID     string
	Budget Budget
}

// Importer is the optional capability that imports a batch of records in
// one step (one transaction, or a COPY). Import inserts every record of
// recs whose ID and Digest are not stored yet (nor earlier in recs), all
// or none, and returns how many it inserted; the others are skipped,
// whatever their other fields. Import does not apply Write's bounds: the
// host is bringing in keys that already exist. A store that is no
// Importer is given one Write per record.
type Importer interface {
	Import(ctx context.Context, recs []*Record) (inserted int, err error)
}

// Marker is the optional capability that remembers marks for a while,
// shared by every instance of a host on the store: what must happen once
// across instances (package secretscanning's alerts: a replayed alert is
// refused by every instance, not only the one that took it first).
// memstore and pgstore have it; on a store without it the Manager
// remembers marks in its own memory (enough for one instance, such as
// sqlitestore's).
type Marker interface {
	// Mark records mark until until, and reports whether it is new: false
	// if it is recorded already, unexpired at now. Of concurrent calls
	// with one mark, from any instance, exactly one reports true. Expired
	// marks may be deleted at any time (pgstore: on the last-used flush).
	Mark(ctx context.Context, mark Digest, until, now time.Time) (fresh bool, err error)
	// Unmark deletes mark, so that the next Mark of it is new (the work
	// it guarded failed, and must be let in again). Unmarking a mark not
	// recorded is no error.
	Unmark(ctx context.Context, mark Digest) error
	// Marked reports whether mark is recorded, unexpired at now, by any
	// instance, without recording anything (the portal's ended sessions).
	Marked(ctx context.Context, mark Digest, now time.Time) (bool, error)
}

// LogStore is the optional capability that keeps the request log
// (package reqlog): memstore, pgstore and sqlitestore have it. Only
// entries with an AccountID reach it. On a store without it, no log is
// kept (GET /developers/logs is a 404) and only a host's reqlog.Exporter
// sees the entries.
type LogStore interface {
	// AddLogs stores a batch of entries, in any order. Of one account's
	// entries of one UTC day (by Timestamp) it keeps MaxPerDay at most,
	// across every batch and instance, and drops the rest, returning
	// how many it dropped. It is idempotent: a batch whose ID was added
	// before changes nothing, so a flush retried after its answer was
	// lost stores nothing twice.
	AddLogs(ctx context.Context, b LogBatch) (dropped int, err error)
	// Logs returns q.AccountID's entries that match q, newest first (by
	// Timestamp, then RequestID, both descending), after q.After if set,
	// q.Limit at most. Its cost grows with what it returns, not with
	// the account's entries or another account's.
	Logs(ctx context.Context, q LogQuery) ([]reqlog.Entry, error)
	// PruneLogs deletes entries older than before, or (pgstore) whole
	// days of them, older than before's UTC day; it may keep up to a day
	// more, never less.
	PruneLogs(ctx context.Context, before time.Time) error
}

// LogBatch is what one flush of the request log writes.
type LogBatch struct {
	ID        string
	Entries   []reqlog.Entry // each with an AccountID
	MaxPerDay int            // entries one account keeps a UTC day
}

// LogQuery selects an account's entries.
type LogQuery struct {
	AccountID  string
	Start, End time.Time // [Start, End); zero: unbounded
	KeyID      string    // "": any
	Status     reqlog.Status
	Method     string // "": any
	API        string // "": any
	RequestID  string // "": any
	// Environment, if not "", selects that environment's entries (a test
	// principal's reads).
	Environment string
	After       *LogCursor
	Limit       int // 1 to 101
}

// LogCursor is where a page of entries ended: the next page holds the
// entries after it, newest first.
type LogCursor struct {
	Timestamp time.Time
	RequestID string
}

// Before reports whether e comes after c in the log's order (newest
// first): older, or as old with a smaller RequestID.
func (c *LogCursor) Before(e *reqlog.Entry) bool {
	return e.Timestamp.Before(c.Timestamp) || e.Timestamp.Equal(c.Timestamp) && e.RequestID < c.RequestID
}

// Matches reports whether e matches q (its account, filters and cursor),
// for stores that filter in Go.
func (q *LogQuery) Matches(e *reqlog.Entry) bool {
	return e.AccountID == q.AccountID &&
		(q.Start.IsZero() || !e.Timestamp.Before(q.Start)) && (q.End.IsZero() || e.Timestamp.Before(q.End)) &&
		(q.KeyID == "" || e.KeyID == q.KeyID) && (q.Method == "" || e.Method == q.Method) &&
		(q.API == "" || e.API == q.API) && (q.Environment == "" || e.Environment == q.Environment) && (q.RequestID == "" || e.RequestID == q.RequestID) &&
		(q.Status.Min == 0 || e.Status >= q.Status.Min && e.Status <= q.Status.Max) &&
		(q.After == nil || q.After.Before(e))
}
