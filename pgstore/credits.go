package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/store"
)

var _ store.CreditStore = (*Store)(nil)

// due is true when a refill period has begun since the budget's period:
// $3 is the start of the current UTC day, $4 of the current UTC month
// (credits.Interval.PeriodStart on the Manager's clock).
const due = `(refill_interval = 'daily' AND period < $3 OR refill_interval = 'monthly' AND period < $4)`

// The credit statements (migration 8).
const (
	// credSpend is the whole spend in one statement: the refill, if due,
	// and the spend, only if what remains pays for it. The row lock and
	// READ COMMITTED's re-check of the WHERE on the latest row make
	// concurrent spends, from any instance, serialise on the row, so none
	// takes a credit twice or the budget below zero.
	credSpend = `UPDATE {{schema}}.key_credits SET
	remaining = (CASE WHEN ` + due + ` THEN refill_amount ELSE remaining END) - $2,
	period = CASE WHEN refill_interval = 'daily' AND period < $3 THEN $3 WHEN refill_interval = 'monthly' AND period < $4 THEN $4 ELSE period END
WHERE id = $1 AND (CASE WHEN ` + due + ` THEN refill_amount ELSE remaining END) >= $2
RETURNING remaining, refill_interval, refill_amount, period, by_host`
	// credSetAlone sets a budget outside any Write (SetCredits);
	// credDelAlone deletes one; credRefund gives back a spend, only in the
	// period it was spent in.
	credSetAlone = `INSERT INTO {{schema}}.key_credits (id, remaining, refill_interval, refill_amount, period, by_host, standalone) VALUES ($1, $2, $3, $4, $5, $6, true)
ON CONFLICT (id) DO UPDATE SET remaining = EXCLUDED.remaining, refill_interval = EXCLUDED.refill_interval,
	refill_amount = EXCLUDED.refill_amount, period = EXCLUDED.period, by_host = EXCLUDED.by_host, standalone = true`
	credDelAlone = `DELETE FROM {{schema}}.key_credits WHERE id = $1 AND standalone`
	credRefund   = `UPDATE {{schema}}.key_credits SET remaining = least(remaining + $2, $4) WHERE id = $1 AND period = $3`
	credRead     = `SELECT id, remaining, refill_interval, refill_amount, period, by_host FROM {{schema}}.key_credits WHERE id = ANY($1)`
	credSet      = `INSERT INTO {{schema}}.key_credits (id, remaining, refill_interval, refill_amount, period, by_host) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET remaining = EXCLUDED.remaining, refill_interval = EXCLUDED.refill_interval,
	refill_amount = EXCLUDED.refill_amount, period = EXCLUDED.period, by_host = EXCLUDED.by_host`
	// credSweep deletes budgets no key names, a chunk at a time. A
	// budget's ID is the ID of the key it was set on, and only a key that
	// names a budget, or is that key, can name it again (a roll, an
	// update): so a budget neither named nor set on a stored key stays
	// unnamed, and deleting it races with nothing.
	credSweep = `DELETE FROM {{schema}}.key_credits WHERE id IN (
	SELECT c.id FROM {{schema}}.key_credits c
	WHERE NOT c.standalone
	  AND NOT EXISTS (SELECT 1 FROM {{schema}}.api_keys k WHERE k.credits_id = c.id)
	  AND NOT EXISTS (SELECT 1 FROM {{schema}}.api_keys k WHERE k.id = c.id)
	LIMIT 1000)`
)

// SpendCredits implements store.CreditStore. Concurrent spends of one
// budget on this instance are coalesced: while one UPDATE is in flight,
// the spends that arrive wait, and the next UPDATE takes them all, their
// costs summed, so a flood of requests on a credited key costs one
// statement per round trip, not one per request (16 clients: about one
// statement in 16 requests; one each, serialised on the row, before). A
// batch the budget cannot pay in full is spent one request at a time, in
// the order they came, so a refusal still means that the budget cannot
// pay for that request; nothing is reserved or held back, and across
// instances the row's lock keeps every spend exact.
//
// A spend that spends nothing is told apart by a read: an exhausted
// budget from a missing one (if the budget was raised in between, the
// spend is tried once more). A budget found spent is remembered for a
// second (or until its refill, if sooner): a flood of requests on a spent
// key costs this instance a query a second, not two a request. A raise
// made through this instance is seen at once; one made through another,
// within that second.
func (s *Store) SpendCredits(ctx context.Context, id string, cost int64, now time.Time) (store.Budget, error) {
	if s.closed.Load() {
		return store.Budget{}, ErrClosed
	}
	if cost < 1 {
		return store.Budget{}, fmt.Errorf("pgstore: a spend of %d credits", cost)
	}
	if c, ok := s.spent.refuses(id, cost, now); ok {
		s.spentRefusals.Add(1)
		return c, store.ErrCreditsExhausted
	}
	r := &spendReq{cost: cost, now: now, turn: make(chan bool, 1)}
	lead, linger := s.spends.join(id, r)
	if !lead && !<-r.turn {
		return r.c, r.err // a leader spent it in its batch
	}
	if !lead || linger {
		// Spends are queueing on this budget (this one was handed the
		// lead, or the budget's last batch held several an instant ago):
		// wait a moment for those on their way, the clients of the last
		// batch coming back, so that one statement takes them all. A
		// spend of a quiet budget does not wait.
		time.Sleep(spendLinger)
	}
	// This spend leads: it takes every spend waiting (its own among them),
	// runs them, and hands the lead to the first that came meanwhile. Its
	// statements run without the caller's cancellation: they are others'
	// spends as well.
	batch := s.spends.take(id)
	s.spendBatch(context.WithoutCancel(ctx), id, batch)
	s.spends.handOver(id)
	for _, b := range batch {
		if b != r {
			b.turn <- false
		}
	}
	return r.c, r.err
}

// spendReq is one spend waiting for, or in, a batch.
type spendReq struct {
	cost int64
	now  time.Time
	turn chan bool // false: c and err are set; true: lead the next batch
	c    store.Budget
	err  error
}

// spendQueues are the spends waiting per budget, and whether one leads.
// A budget's entry lives while spends of it are in flight, and a moment
// after a batch of several (so that the next spend knows to wait for
// company); a sweep drops entries idle for a second once there are many.
type spendQueues struct {
	mu sync.Mutex
	m  map[string]*spendQueue
}

type spendQueue struct {
	waiting []*spendReq
	leading bool
	last    int   // how many spends the last batch held
	ended   int64 // when the last batch ended (Unix ns), if none leads
}

// spendLinger is how long a batch waits for more spends when spends are
// queueing: about a client's round trip on a LAN. It adds that to a
// credited request's time under a flood only.
const spendLinger = 300 * time.Microsecond

// join queues r. lead: r leads (no spend of the budget in flight); linger:
// the budget's last batch held several and ended an instant ago.
func (q *spendQueues) join(id string, r *spendReq) (lead, linger bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.m == nil {
		q.m = make(map[string]*spendQueue)
	}
	sq := q.m[id]
	if sq == nil {
		if len(q.m) >= 4096 {
			q.sweep(time.Now().UnixNano())
		}
		sq = &spendQueue{}
		q.m[id] = sq
	}
	sq.waiting = append(sq.waiting, r)
	if sq.leading {
		return false, false
	}
	sq.leading = true
	return true, sq.last > 1 && time.Now().UnixNano()-sq.ended < int64(10*time.Millisecond)
}

// sweep drops the entries of budgets idle for a second. The caller holds
// q.mu.
func (q *spendQueues) sweep(now int64) {
	for id, sq := range q.m {
		if !sq.leading && now-sq.ended > int64(time.Second) {
			delete(q.m, id)
		}
	}
}

// take returns the spends waiting on id, emptying the queue.
func (q *spendQueues) take(id string) []*spendReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq := q.m[id]
	batch := sq.waiting
	sq.waiting, sq.last = nil, len(batch)
	return batch
}

// handOver gives the lead to the first spend that came during the batch;
// with none, the budget is quiet (its entry kept a moment after a batch
// of several).
func (q *spendQueues) handOver(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq := q.m[id]
	if len(sq.waiting) > 0 {
		sq.waiting[0].turn <- true
		return
	}
	sq.leading, sq.ended = false, time.Now().UnixNano()
	if sq.last <= 1 {
		delete(q.m, id)
	}
}

// spendBatch spends a batch's costs in one statement, or, when the budget
// cannot pay them all, one spend at a time.
func (s *Store) spendBatch(ctx context.Context, id string, batch []*spendReq) {
	conn, ctx, done, err := s.conn(ctx)
	if err != nil {
		for _, r := range batch {
			r.err = err
		}
		return
	}
	defer done()
	now := batch[0].now
	var total int64
	for _, r := range batch {
		total += r.cost
		if r.now.After(now) {
			now = r.now
		}
	}
	day, month := credits.Daily.PeriodStart(now), credits.Monthly.PeriodStart(now)
	if len(batch) > 1 {
		var c store.Budget
		s.creditQueries.Add(1)
		err := scanCredits(conn.QueryRow(ctx, s.qSpend, id, total, day, month), &c)
		if !errors.Is(err, pgx.ErrNoRows) {
			// Each sees the budget as after its own spend, in order.
			after := c.Remaining + total
			for _, r := range batch {
				after -= r.cost
				r.c, r.err = c, err
				r.c.Remaining = after
			}
			return
		}
	}
	for _, r := range batch {
		r.c, r.err = s.spendOne(ctx, conn, id, r.cost, r.now)
	}
}

// spendOne spends one request's cost: one UPDATE, and when it spends
// nothing, a read.
func (s *Store) spendOne(ctx context.Context, conn *pgxpool.Conn, id string, cost int64, now time.Time) (store.Budget, error) {
	if c, ok := s.spent.refuses(id, cost, now); ok {
		s.spentRefusals.Add(1)
		return c, store.ErrCreditsExhausted
	}
	day, month := credits.Daily.PeriodStart(now), credits.Monthly.PeriodStart(now)
	for attempt := 0; ; attempt++ {
		var c store.Budget
		s.creditQueries.Add(1)
		err := scanCredits(conn.QueryRow(ctx, s.qSpend, id, cost, day, month), &c)
		if !errors.Is(err, pgx.ErrNoRows) {
			return c, err
		}
		s.creditQueries.Add(1)
		got, err := s.readCredits(ctx, conn, []string{id}, now)
		if err != nil {
			return store.Budget{}, err
		}
		c, ok := got[id]
		switch {
		case !ok:
			return store.Budget{}, store.ErrNotFound
		case c.Remaining < cost || attempt > 0:
			s.spent.remember(id, c, now)
			return c, store.ErrCreditsExhausted
		}
	}
}

// spentMemo remembers budgets found spent, by ID, each until a second on
// or its next refill, whichever is sooner. It holds at most maxSpent: past
// that, expired entries are dropped, and if it is still full a spent
// budget is not remembered (it costs its queries, as without the memo).
type spentMemo struct {
	mu sync.Mutex
	m  map[string]spentEntry
}

type spentEntry struct {
	until int64 // Unix ns
	c     store.Budget
}

const (
	spentMemory = time.Second
	maxSpent    = 1 << 16
)

// refuses reports whether id is remembered spent for a request of cost at
// now, and the budget as remembered.
func (m *spentMemo) refuses(id string, cost int64, now time.Time) (store.Budget, bool) {
	m.mu.Lock()
	e, ok := m.m[id]
	m.mu.Unlock()
	if !ok || now.UnixNano() >= e.until || e.c.Remaining >= cost {
		return store.Budget{}, false
	}
	return e.c, true
}

func (m *spentMemo) remember(id string, c store.Budget, now time.Time) {
	until := now.Add(spentMemory)
	if c.Refill != nil {
		if next := c.Refill.Interval.Next(now); next.Before(until) {
			until = next // a refill ends the refusal
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]spentEntry)
	}
	if len(m.m) >= maxSpent {
		t := now.UnixNano()
		for k, e := range m.m {
			if e.until <= t {
				delete(m.m, k)
			}
		}
		if len(m.m) >= maxSpent {
			return
		}
	}
	m.m[id] = spentEntry{until: until.UnixNano(), c: c}
}

// forget drops id, whose budget this instance has just set.
func (m *spentMemo) forget(id string) {
	m.mu.Lock()
	delete(m.m, id)
	m.mu.Unlock()
}

// ReadCredits implements store.CreditStore.
func (s *Store) ReadCredits(ctx context.Context, ids []string, now time.Time) (map[string]store.Budget, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	conn, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return s.readCredits(ctx, conn, ids, now)
}

func (s *Store) readCredits(ctx context.Context, conn *pgxpool.Conn, ids []string, now time.Time) (map[string]store.Budget, error) {
	rows, err := conn.Query(ctx, s.qReadCredits, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]store.Budget, len(ids))
	for rows.Next() {
		var id string
		var c store.Budget
		if err := scanCredits(rows, &c, &id); err != nil {
			return nil, err
		}
		out[id] = c.At(now)
	}
	return out, rows.Err()
}

// scanCredits reads a budget's columns (remaining, refill_interval,
// refill_amount, period, by_host), after the leading columns in first.
func scanCredits(row pgx.Row, c *store.Budget, first ...any) error {
	var interval *string
	var amount *int64
	if err := row.Scan(append(first, &c.Remaining, &interval, &amount, &c.Period, &c.ByHost)...); err != nil {
		return err
	}
	c.Period = c.Period.UTC()
	if interval != nil && amount != nil {
		c.Refill = &credits.Refill{Interval: credits.Interval(*interval), Amount: *amount}
	}
	return nil
}

// setCredits stores a Write's budget in its transaction.
func (s *Store) setCredits(ctx context.Context, tx pgx.Tx, b *store.CreditBudget) error {
	if b == nil {
		return nil
	}
	var interval *string
	var amount *int64
	if r := b.Budget.Refill; r != nil {
		iv := string(r.Interval)
		interval, amount = &iv, &r.Amount
	}
	_, err := tx.Exec(ctx, s.qSetCredits, b.ID, b.Budget.Remaining, interval, amount, b.Budget.Period, b.Budget.ByHost)
	return err
}

// sweepCredits deletes up to 1,000 budgets no key names (those of pruned
// records, or cleared by an update), at most once an hour per instance:
// budgets never pile up past the keys that named them.
func (s *Store) sweepCredits(ctx context.Context, now time.Time) error {
	last := s.creditsSwept.Load()
	if now.UnixNano()-last < int64(time.Hour) || !s.creditsSwept.CompareAndSwap(last, now.UnixNano()) {
		return nil
	}
	_, err := s.exec(ctx, s.qSweepCredits)
	return err
}

// SetCredits implements store.CreditStore: an upsert marked standalone,
// which the sweep of unnamed budgets leaves alone; nil deletes it.
func (s *Store) SetCredits(ctx context.Context, id string, b *store.Budget) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var err error
	if b == nil {
		_, err = s.exec(ctx, s.sql(credDelAlone), id)
	} else {
		var interval *string
		var amount *int64
		if r := b.Refill; r != nil {
			iv := string(r.Interval)
			interval, amount = &iv, &r.Amount
		}
		_, err = s.exec(ctx, s.sql(credSetAlone), id, b.Remaining, interval, amount, b.Period, b.ByHost)
	}
	if err == nil {
		s.spent.forget(id) // this instance sees the change at once
	}
	return err
}

// RefundCredits implements store.CreditStore in one UPDATE.
func (s *Store) RefundCredits(ctx context.Context, id string, cost int64, period time.Time) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if cost < 1 {
		return fmt.Errorf("pgstore: a refund of %d credits", cost)
	}
	_, err := s.exec(ctx, s.sql(credRefund), id, cost, period, int64(credits.Max))
	if err == nil {
		s.spent.forget(id)
	}
	return err
}
