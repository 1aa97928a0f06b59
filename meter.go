package keys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
)

// Usage metering: every request a verified key makes is counted by
// account, key, API and outcome, in minute buckets held in the key's
// state, and flushed in batches to a UsageStore, which rolls minutes up
// into hours and days.

// The outcomes of a counted request: indexes of a cell's counters.
const (
	outcomeSuccessful  = iota // a 2xx or 3xx answer
	outcomeFailed             // a 4xx or 5xx answer other than a limit's 429
	outcomeRateLimited        // a 429
	outcomes
)

// Bounds on what the meter keeps in memory.
const (
	// maxExtraCells bounds the cells of (key, API) pairs beyond each
	// key's first: a key's cells are looked up by a walk, and copied when
	// one is added.
	maxExtraCells = 1 << 20
	// maxAPIsPerKey bounds one key's APIs.
	maxAPIsPerKey = 64
	// maxPendingRows bounds the rows held for a store that is failing.
	maxPendingRows = 500_000
	// maxBatchRows bounds the rows of one UsageBatch: a flush of more
	// keys than that (many clients each calling now and then) is written
	// as several batches, each one statement a store can finish in
	// bounded time.
	maxBatchRows = 10_000
	// usageFlushInterval is how often counts are flushed: often enough
	// that every minute's slot is drained before it is needed again.
	usageFlushInterval = 10 * time.Second
)

// meter holds what the counters have been drained into and the store has
// not taken yet. Its hot path is meterCell.count: no lock, no allocation.
type meter struct {
	store store.UsageStore

	mu      sync.Mutex         // not on the hot path: flushes and reads
	pending []store.UsageBatch // drained but not stored yet, oldest first
	rows    int                // rows in pending

	// maxPending and batchRows are maxPendingRows and maxBatchRows (tests
	// lower them).
	maxPending, batchRows int

	dropped atomic.Int64 // requests not counted: past a bound
	warned  everyMinute  // the warning of the dropped count
}

// meterCell counts one key's requests to one API: two minute slots, the
// current minute's and the one before, which the flusher drains.
type meterCell struct {
	api   string
	slots [2]meterSlot
	// late counts requests whose minute's slot was still held by a minute
	// the flusher had not drained yet (it was late); a flush attributes
	// them to its own minute.
	late [outcomes]atomic.Int64
}

type meterSlot struct {
	minute atomic.Int64 // minutes since 1970, plus one; 0: free
	n      [outcomes]atomic.Int64
}

func minuteOf(t time.Time) int64 { return t.Unix()/60 + 1 }

// count counts one request at now (Unix ns). It takes no lock.
func (c *meterCell) count(outcome int, now int64) {
	minute := now/int64(time.Minute) + 1 // minuteOf, without a time.Time
	s := &c.slots[minute&1]
	if cur := s.minute.Load(); cur != minute && !(cur == 0 && s.minute.CompareAndSwap(0, minute)) && s.minute.Load() != minute {
		c.late[outcome].Add(1)
		return
	}
	s.n[outcome].Add(1)
}

// cell returns st's cell for api, or nil if it has none yet.
func (st *keyState) cell(api string) *meterCell {
	if st.hasFirst.Load() && st.first.api == api {
		return &st.first
	}
	if more := st.more.Load(); more != nil {
		for _, c := range *more {
			if c.api == api {
				return c
			}
		}
	}
	return nil
}

// addCell returns st's cell for api, adding one; nil past a bound.
func (s *states) addCell(st *keyState, api string) *meterCell {
	sh := s.shard(&st.digest)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := st.cell(api); c != nil {
		return c
	}
	if !st.hasFirst.Load() {
		st.first.api = api
		st.hasFirst.Store(true)
		return &st.first
	}
	var cells []*meterCell
	if more := st.more.Load(); more != nil {
		cells = *more
	}
	if len(cells)+1 >= maxAPIsPerKey || s.extra.Load() >= s.maxExtra {
		return nil
	}
	s.extra.Add(1)
	c := &meterCell{api: api}
	next := append(slices.Clone(cells), c)
	st.more.Store(&next)
	return c
}

// CountUsage counts a request the verified key made to api (the name
// OnAPI gave Verify), by the status it was answered with: 2xx and 3xx
// successful, any 4xx or 5xx failed, and among those a 429 rate-limited.
// The HTTP middleware and the gRPC interceptors call it; a host serving
// requests another way calls it once per request. It takes no lock and
// allocates nothing once the key has been counted for api. Without a
// store that keeps usage it does nothing.
func (m *Manager) CountUsage(v *Verified, api string, status int) {
	if m.meter == nil || v == nil || v.AccountID == "" || v.KeyID == "" {
		return
	}
	outcome := outcomeFailed
	switch {
	case status == 429:
		outcome = outcomeRateLimited
	case status >= 200 && status < 400:
		outcome = outcomeSuccessful
	}
	at := v.at
	if at == 0 { // a Verified the caller made
		at = m.now().UnixNano()
	}
	st := v.state
	if st == nil {
		st = m.principalState(v)
	}
	st = m.states.live(st)
	c := st.cell(api)
	if c == nil {
		if c = m.states.addCell(st, api); c == nil {
			m.meter.drop(m, 1)
			return
		}
	}
	c.count(outcome, at)
}

// principalState is the state of a caller that no Verify found (a
// principal the host authenticated itself, for httpadapter's
// WithAuthenticator): found by a digest of its account and ID.
func (m *Manager) principalState(v *Verified) *keyState {
	var d store.Digest
	b := make([]byte, 0, 64)
	b = append(append(append(b, "principal\x00"...), v.AccountID...), 0)
	b = append(b, v.KeyID...)
	d = sha256.Sum256(b)
	if st := m.states.get(&d); st != nil {
		return st
	}
	return m.states.insert(&d, v.KeyID, v.AccountID, "")
}

// drop counts requests that could not be counted, and logs it at most
// once a minute.
func (mt *meter) drop(m *Manager, n int64) {
	total := mt.dropped.Add(n)
	if mt.warned.due() {
		m.logger.Warn("keys: usage past the meter's memory bound was dropped", "requests_dropped_total", total)
	}
}

// drainCell takes the counts of every slot out of c, into rows: a
// finished minute's slot is freed; the current minute's (unless all) keeps
// its minute and gives up what it counted so far, so that a process killed
// mid-minute loses one flush interval of counts at most, not the minute
// (the store adds a minute's rows up). busy says a slot of the current
// minute was left.
func drainCell(st *keyState, c *meterCell, now time.Time, all bool, rows []store.UsageRow) (_ []store.UsageRow, busy bool) {
	current := minuteOf(now)
	for i := range c.slots {
		s := &c.slots[i]
		minute := s.minute.Load()
		if minute == 0 {
			continue
		}
		ok, failed, limited := s.n[outcomeSuccessful].Swap(0), s.n[outcomeFailed].Swap(0), s.n[outcomeRateLimited].Swap(0)
		if minute >= current && !all {
			busy = true // a request counting now adds to the next flush
		} else {
			s.minute.Store(0)
		}
		if ok+failed+limited > 0 {
			rows = append(rows, store.UsageRow{Bucket: time.Unix((minute-1)*60, 0).UTC(), AccountID: st.account, KeyID: st.id, API: c.api,
				Successful: ok, Failed: failed + limited, RateLimited: limited})
		}
	}
	ok, failed, limited := c.late[outcomeSuccessful].Swap(0), c.late[outcomeFailed].Swap(0), c.late[outcomeRateLimited].Swap(0)
	if ok+failed+limited > 0 {
		rows = append(rows, store.UsageRow{Bucket: now.UTC().Truncate(time.Minute), AccountID: st.account, KeyID: st.id, API: c.api,
			Successful: ok, Failed: failed + limited, RateLimited: limited})
	}
	return rows, busy
}

// cells calls fn with each of st's cells.
func (st *keyState) cells(fn func(*meterCell)) {
	if st.hasFirst.Load() {
		fn(&st.first)
	}
	if more := st.more.Load(); more != nil {
		for _, c := range *more {
			fn(c)
		}
	}
}

// drain takes the counts of every minute before now (all of them, if
// all) out of every state, into rows, and keeps each state's idle count.
// The caller holds m.flushMu.
func (m *Manager) drain(now time.Time, all bool) []store.UsageRow {
	var rows []store.UsageRow
	one := func(st *keyState) {
		before, busy := len(rows), false
		st.cells(func(c *meterCell) {
			var b bool
			rows, b = drainCell(st, c, now, all, rows)
			busy = busy || b
		})
		if busy || len(rows) > before {
			st.idle = 0
		} else {
			st.idle++
		}
	}
	m.states.each(one)
	for _, st := range m.states.retired { // swept at the last sweep: drained until the next
		one(st)
	}
	return rows
}

// flushUsage drains the finished minutes (every minute, if all) into
// batches of at most batchRows rows and writes the pending batches,
// oldest first, each under its own ID. A batch the store refuses stays
// pending, with its ID, for the next flush; past maxPending rows the
// newest are dropped (and counted as dropped). The bound is on what a
// failing store leaves behind, not on one flush: a healthy store takes
// every row of a drain however many keys it covers. The caller holds
// m.flushMu.
func (m *Manager) flushUsage(ctx context.Context, all bool) error {
	mt := m.meter
	rows := m.drain(m.now(), all)
	accounts := map[string]struct{}{}
	for i := range rows {
		accounts[rows[i].AccountID] = struct{}{}
	}
	mt.mu.Lock()
	for len(rows) > 0 {
		n := min(len(rows), mt.batchRows)
		mt.pending = append(mt.pending, store.UsageBatch{ID: newBatchID(), Rows: rows[:n:n]})
		mt.rows += n
		rows = rows[n:]
	}
	mt.mu.Unlock()
	err := mt.storePending(ctx)
	if err != nil {
		mt.trim(m)
		return err
	}
	m.checkQuotas(ctx, accounts)
	return nil
}

// trim drops the newest pending batches past maxPending rows.
func (mt *meter) trim(m *Manager) {
	mt.mu.Lock()
	var n int64
	for mt.rows > mt.maxPending {
		b := mt.pending[len(mt.pending)-1]
		mt.pending = mt.pending[:len(mt.pending)-1]
		mt.rows -= len(b.Rows)
		for _, r := range b.Rows {
			n += r.Successful + r.Failed
		}
	}
	mt.mu.Unlock()
	if n > 0 {
		mt.drop(m, n)
	}
}

// storePending writes the pending batches, oldest first, each under its
// own ID. The caller holds the Manager's flushMu.
func (mt *meter) storePending(ctx context.Context) error {
	mt.mu.Lock()
	batches := slices.Clone(mt.pending)
	mt.mu.Unlock()
	for _, b := range batches {
		if err := mt.store.AddUsage(ctx, b); err != nil {
			return fmt.Errorf("keys: storing usage: %w", err)
		}
		mt.mu.Lock()
		mt.pending = mt.pending[1:]
		mt.rows -= len(b.Rows)
		mt.mu.Unlock()
	}
	return nil
}

func newBatchID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// unflushed is what this instance has counted and not drained yet for
// q's account (and key and API, if named), in minute rows: the cells'
// current counts, read, not taken. It walks every state once. The caller
// holds m.flushMu, so no batch is on its way to the store meanwhile.
func (m *Manager) unflushed(q store.UsageQuery, now time.Time) []store.UsageRow {
	var out []store.UsageRow
	row := func(st *keyState, c *meterCell, bucket time.Time, n *[outcomes]atomic.Int64) {
		limited := n[outcomeRateLimited].Load()
		r := store.UsageRow{Bucket: bucket, AccountID: st.account, KeyID: st.id, API: c.api,
			Successful: n[outcomeSuccessful].Load(), Failed: n[outcomeFailed].Load() + limited, RateLimited: limited}
		if r.Successful+r.Failed > 0 {
			out = append(out, r)
		}
	}
	one := func(st *keyState) {
		if st.account != q.AccountID || q.KeyID != "" && st.id != q.KeyID {
			return
		}
		st.cells(func(c *meterCell) {
			if q.API != "" && c.api != q.API {
				return
			}
			for i := range c.slots {
				s := &c.slots[i]
				if minute := s.minute.Load(); minute != 0 {
					row(st, c, time.Unix((minute-1)*60, 0).UTC(), &s.n)
				}
			}
			row(st, c, now.UTC().Truncate(time.Minute), &c.late)
		})
	}
	m.states.each(one)
	for _, st := range m.states.retired {
		one(st)
	}
	return out
}

// bucketOf is the start of t's bucket.
func bucketOf(t time.Time, g usage.Granularity) time.Time {
	return t.UTC().Truncate(g.Duration())
}

// everyMinute lets a warning through at most once a minute, so that a
// failure that repeats (a store down, a flood) is one line a minute in
// the host's log, not one a request.
type everyMinute struct{ last atomic.Int64 } // Unix ns

// due reports whether a minute has passed since the last warning it let
// through, and if so notes now; of concurrent calls, one says yes.
func (w *everyMinute) due() bool {
	now := time.Now().UnixNano()
	last := w.last.Load()
	return now-last > int64(time.Minute) && w.last.CompareAndSwap(last, now)
}
