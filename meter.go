package keys

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Usage metering: every request a verified key makes is counted by
// account, key, API and outcome, in minute buckets, and flushed in batches
// to a UsageStore, which rolls minutes up into hours and days.

// Granularity is the size of a usage bucket.
type Granularity uint8

// The bucket sizes.
const (
	Minute Granularity = iota
	Hour
	UTCDay
)

// Duration is the bucket's length.
func (g Granularity) Duration() time.Duration {
	switch g {
	case Hour:
		return time.Hour
	case UTCDay:
		return Day
	}
	return time.Minute
}

// String is the API's name for it: "minute", "hour" or "day".
func (g Granularity) String() string {
	switch g {
	case Hour:
		return "hour"
	case UTCDay:
		return "day"
	}
	return "minute"
}

// Outcome of a metered request.
const (
	// UsageSuccessful is a 2xx or 3xx answer.
	UsageSuccessful = iota
	// UsageFailed is a 4xx or 5xx answer other than a limit's 429.
	UsageFailed
	// UsageRateLimited is a 429 from one of the key's limits.
	UsageRateLimited
	usageOutcomes
)

// UsageCounts are the requests of one bucket, by outcome.
type UsageCounts struct {
	Successful  int64
	Failed      int64 // 4xx and 5xx, not counting RateLimited
	RateLimited int64 // refused by a limit (429)
}

// Total is every request counted.
func (c UsageCounts) Total() int64 { return c.Successful + c.Failed + c.RateLimited }

// Add adds o's counts to c.
func (c *UsageCounts) Add(o UsageCounts) {
	c.Successful += o.Successful
	c.Failed += o.Failed
	c.RateLimited += o.RateLimited
}

// UsageRow is one bucket of one key's requests to one API.
type UsageRow struct {
	Bucket    time.Time // its start, UTC
	AccountID string
	KeyID     string
	API       string
	UsageCounts
}

// UsageBatch is what one flush writes: minute rows, under an ID that makes
// the write idempotent.
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
	Granularity Granularity
	From, To    time.Time
}

// UsageStore is the optional Store capability that keeps usage. memstore
// and pgstore have it; with a store that lacks it, usage is neither kept
// nor served.
type UsageStore interface {
	// AddUsage adds a batch of minute rows (each with a KeyID), and adds
	// each to its hour and its UTC day too. It is idempotent: a batch whose ID was added
	// before (within 7 days) changes nothing, so a flush retried after
	// an answer was lost counts nothing twice. Rows of a batch may repeat
	// a bucket; their counts add up.
	AddUsage(ctx context.Context, b UsageBatch) error
	// Usage returns the query's rows summed by bucket and API (KeyID
	// empty in each), ordered by bucket. Its cost should not grow with the
	// account's keys when q.KeyID is empty: memstore and pgstore keep the
	// account's totals beside each key's buckets.
	Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
}

// Bounds on what the meter keeps in memory.
const (
	// maxMeterCells bounds the (key, API) pairs counted at once: a cell
	// idle for two flushes is retired, so this bounds the pairs in use
	// within about half a minute.
	maxMeterCells = 1 << 20
	// maxAPIsPerKey bounds one key's APIs: a key's cells are looked up by
	// a walk, and copied when one is added.
	maxAPIsPerKey = 64
	// maxPendingRows bounds the rows held for a store that is failing.
	maxPendingRows = 500_000
	// usageFlushInterval is how often counts are flushed: often enough
	// that every minute's slot is drained before it is needed again.
	usageFlushInterval = 10 * time.Second
)

// meter counts requests. Its hot path (count) takes no lock and allocates
// nothing once a key has been counted for an API: the counters hang off
// the key's Record, two minute slots each.
type meter struct {
	store  UsageStore
	logger *slog.Logger
	now    func() time.Time
	obs    Observer

	mu      sync.Mutex // not on the hot path: new cells, flushes, reads
	cells   []*meterCell
	pending []UsageBatch // drained but not stored yet, oldest first
	rows    int          // rows in pending
	flushMu sync.Mutex   // one flush at a time

	maxCells   int          // maxMeterCells; tests lower it
	dropped    atomic.Int64 // requests not counted: past a bound
	lastLogged atomic.Int64 // of the dropped count, Unix ns

	stop, done chan struct{}
}

// keyMeter is the cells of one Record, one per API, replaced (never
// changed) when a new API is first counted.
type keyMeter struct {
	owner *meter // a record shared by two Managers (one store, one process) has one meter's cells at a time
	cells []*meterCell
}

type meterCell struct {
	account, key, api string
	rec               *Record // whose keyMeter holds the cell, until retired
	slots             [2]meterSlot
	// idle counts the drains in a row that found the cell empty; at two it
	// is retired (unlinked from its record), and one drain later dropped.
	idle    int
	retired atomic.Bool
	// late counts requests whose minute's slot was still held by a minute
	// the flusher had not drained yet (it was late); a flush attributes
	// them to its own minute.
	late [usageOutcomes]atomic.Int64
}

type meterSlot struct {
	minute atomic.Int64 // minutes since 1970, plus one; 0: free
	n      [usageOutcomes]atomic.Int64
}

func newMeter(store Store, logger *slog.Logger, now func() time.Time, obs Observer) *meter {
	us, ok := capability[UsageStore](store)
	if !ok {
		return nil
	}
	m := &meter{store: us, logger: logger, now: now, obs: obs, maxCells: maxMeterCells, stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	return m
}

func minuteOf(t time.Time) int64 { return t.Unix()/60 + 1 }

// count counts one request. It takes no lock and allocates nothing once
// the key has a cell for api.
func (m *meter) count(rec *Record, api string, outcome int, now time.Time) {
	var c *meterCell
	if km := rec.meter.Load(); km != nil && km.owner == m {
		for _, x := range km.cells {
			if x.api == api {
				c = x
				break
			}
		}
	}
	if c == nil || c.retired.Load() {
		if c = m.newCell(rec, api); c == nil {
			m.drop(1)
			return
		}
	}
	minute := minuteOf(now)
	s := &c.slots[minute&1]
	if cur := s.minute.Load(); cur != minute && !(cur == 0 && s.minute.CompareAndSwap(0, minute)) && s.minute.Load() != minute {
		c.late[outcome].Add(1)
		return
	}
	s.n[outcome].Add(1)
}

// newCell registers a cell for the record and api, or returns nil past
// maxMeterCells.
func (m *meter) newCell(rec *Record, api string) *meterCell {
	m.mu.Lock()
	defer m.mu.Unlock()
	km := rec.meter.Load()
	if km != nil && km.owner != m {
		km = nil // another Manager's: its cells stay in its registry
	}
	if km != nil {
		for _, x := range km.cells {
			if x.api == api && !x.retired.Load() {
				return x
			}
		}
	}
	if len(m.cells) >= m.maxCells || km != nil && len(km.cells) >= maxAPIsPerKey {
		return nil
	}
	c := &meterCell{account: rec.AccountID, key: rec.ID, api: api, rec: rec}
	m.cells = append(m.cells, c)
	next := &keyMeter{owner: m}
	if km != nil {
		next.cells = slices.Clone(km.cells)
	}
	next.cells = append(next.cells, c)
	rec.meter.Store(next)
	return c
}

// drop counts requests that could not be counted, and logs it at most once
// a minute.
func (m *meter) drop(n int64) {
	total := m.dropped.Add(n)
	now := time.Now().UnixNano()
	if last := m.lastLogged.Load(); now-last > int64(time.Minute) && m.lastLogged.CompareAndSwap(last, now) {
		m.logger.Warn("keys: usage past the meter's memory bound was dropped", "requests_dropped_total", total)
	}
}

func (m *meter) run() {
	defer close(m.done)
	tick := time.NewTicker(usageFlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), usageFlushInterval)
			if err := m.flush(ctx, false); err != nil {
				m.logger.Warn("keys: flushing usage failed; will retry", "err", err)
			}
			cancel()
		}
	}
}

// drain takes the counts of every minute before now (all of them, if
// all) out of the cells, into rows.
func (m *meter) drain(now time.Time, all bool) []UsageRow {
	current := minuteOf(now)
	m.mu.Lock()
	cells := m.cells
	m.mu.Unlock()
	var rows []UsageRow
	var retire, drop []*meterCell
	for _, c := range cells {
		before := len(rows)
		busy := false
		for i := range c.slots {
			s := &c.slots[i]
			minute := s.minute.Load()
			if minute == 0 {
				continue
			}
			if minute >= current && !all {
				busy = true
				continue
			}
			var n UsageCounts
			n.Successful = s.n[UsageSuccessful].Swap(0)
			n.Failed = s.n[UsageFailed].Swap(0)
			n.RateLimited = s.n[UsageRateLimited].Swap(0)
			s.minute.Store(0)
			if n.Total() > 0 {
				rows = append(rows, UsageRow{Bucket: time.Unix((minute-1)*60, 0).UTC(), AccountID: c.account, KeyID: c.key, API: c.api, UsageCounts: n})
			}
		}
		var n UsageCounts
		n.Successful = c.late[UsageSuccessful].Swap(0)
		n.Failed = c.late[UsageFailed].Swap(0)
		n.RateLimited = c.late[UsageRateLimited].Swap(0)
		if n.Total() > 0 {
			rows = append(rows, UsageRow{Bucket: now.UTC().Truncate(time.Minute), AccountID: c.account, KeyID: c.key, API: c.api, UsageCounts: n})
		}
		switch {
		case c.retired.Load():
			drop = append(drop, c) // drained once more after retiring
		case busy || len(rows) > before:
			c.idle = 0
		default:
			if c.idle++; c.idle >= 2 {
				retire = append(retire, c)
			}
		}
	}
	m.retire(retire, drop)
	return rows
}

// retire unlinks idle cells from their records, so a request finds none
// and makes a new one; cells retired at the drain before are dropped from
// the registry (a request that found one just before it was retired has
// had a whole flush interval to count).
func (m *meter) retire(retire, drop []*meterCell) {
	if len(retire) == 0 && len(drop) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range retire {
		c.retired.Store(true)
		if km := c.rec.meter.Load(); km != nil && km.owner == m {
			next := &keyMeter{owner: m, cells: slices.DeleteFunc(slices.Clone(km.cells), func(x *meterCell) bool { return x == c })}
			c.rec.meter.Store(next)
		}
		c.rec = nil
	}
	if len(drop) > 0 {
		gone := make(map[*meterCell]bool, len(drop))
		for _, c := range drop {
			gone[c] = true
		}
		m.cells = slices.DeleteFunc(slices.Clone(m.cells), func(x *meterCell) bool { return gone[x] })
	}
}

// flush drains the finished minutes (every minute, if all) into a batch
// and writes the pending batches, oldest first, each under its own ID. A
// batch the store refuses stays pending, with its ID, for the next flush.
func (m *meter) flush(ctx context.Context, all bool) (err error) {
	if m.obs != nil {
		var end func(error)
		ctx, end = m.obs.Operation(ctx, OpFlushUsage)
		defer func() { end(err) }()
	}
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	rows := m.drain(m.now(), all)
	m.mu.Lock()
	if len(rows) > 0 {
		if m.rows+len(rows) > maxPendingRows {
			var n int64
			for _, r := range rows {
				n += r.Total()
			}
			m.mu.Unlock()
			m.drop(n)
			m.mu.Lock()
		} else {
			m.pending = append(m.pending, UsageBatch{ID: newBatchID(), Rows: rows})
			m.rows += len(rows)
		}
	}
	m.mu.Unlock()
	return m.storePending(ctx)
}

// storePending writes the pending batches, oldest first, each under its
// own ID. The caller holds flushMu.
func (m *meter) storePending(ctx context.Context) error {
	m.mu.Lock()
	batches := slices.Clone(m.pending)
	m.mu.Unlock()
	for _, b := range batches {
		if err := m.store.AddUsage(ctx, b); err != nil {
			return fmt.Errorf("keys: storing usage: %w", err)
		}
		m.mu.Lock()
		m.pending = m.pending[1:]
		m.rows -= len(b.Rows)
		m.mu.Unlock()
	}
	return nil
}

func newBatchID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *meter) close(ctx context.Context) error {
	close(m.stop)
	select {
	case <-m.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return m.flush(ctx, true)
}

// unflushed is what this instance has counted and not drained yet, for
// the query: the cells' current counts (read, not taken), bucketed at the
// query's granularity. The caller holds flushMu, so no batch is on its way
// to the store meanwhile.
func (m *meter) unflushed(q UsageQuery, now time.Time) []UsageRow {
	var out []UsageRow
	keep := func(r UsageRow) {
		if r.Total() == 0 || q.KeyID != "" && r.KeyID != q.KeyID || q.API != "" && r.API != q.API {
			return
		}
		r.Bucket = bucketOf(r.Bucket, q.Granularity)
		if r.Bucket.Before(q.From) || !r.Bucket.Before(q.To) {
			return
		}
		out = append(out, r)
	}
	m.mu.Lock()
	cells := m.cells
	m.mu.Unlock()
	for _, c := range cells {
		if c.account != q.AccountID {
			continue
		}
		for i := range c.slots {
			s := &c.slots[i]
			if minute := s.minute.Load(); minute != 0 {
				keep(UsageRow{Bucket: time.Unix((minute-1)*60, 0).UTC(), AccountID: c.account, KeyID: c.key, API: c.api, UsageCounts: UsageCounts{
					Successful: s.n[UsageSuccessful].Load(), Failed: s.n[UsageFailed].Load(), RateLimited: s.n[UsageRateLimited].Load()}})
			}
		}
		keep(UsageRow{Bucket: now.UTC().Truncate(time.Minute), AccountID: c.account, KeyID: c.key, API: c.api, UsageCounts: UsageCounts{
			Successful: c.late[UsageSuccessful].Load(), Failed: c.late[UsageFailed].Load(), RateLimited: c.late[UsageRateLimited].Load()}})
	}
	return out
}

// bucketOf is the start of t's bucket.
func bucketOf(t time.Time, g Granularity) time.Time {
	return t.UTC().Truncate(g.Duration())
}

// ErrUsageNotKept is what the usage calls return on a store that is no
// UsageStore.
var ErrUsageNotKept = errors.New("keys: this store keeps no usage")

// CountUsage counts a request the verified key made to api, by the status
// it was answered with: 2xx and 3xx successful, 429 rate-limited when a
// limit refused it (refusedByLimit), any other 4xx or 5xx failed. The HTTP
// middleware and the gRPC interceptors call it; a host serving requests
// another way calls it once per request. It takes no lock and allocates
// nothing once the key has been counted for api. Without a UsageStore it
// does nothing.
func (m *Manager) CountUsage(v *Verified, api string, status int, refusedByLimit bool) {
	if m.meter == nil || v == nil || v.Key == nil || v.Key.AccountID == "" || v.Key.ID == "" {
		return
	}
	outcome := UsageFailed
	switch {
	case refusedByLimit:
		outcome = UsageRateLimited
	case status >= 200 && status < 400:
		outcome = UsageSuccessful
	}
	at := v.at
	if at.IsZero() { // a Verified the caller made
		at = m.now()
	}
	m.meter.count(v.Key, api, outcome, at)
}

// FlushUsage writes the usage counted in every finished minute to the
// store now, instead of at the next interval.
func (m *Manager) FlushUsage(ctx context.Context) error {
	if m.meter == nil {
		return nil
	}
	return m.meter.flush(ctx, false)
}

// UsageDropped is how many requests were not counted because the meter's
// memory bound was reached (too many keys and APIs counted between
// flushes, or a store failing for long). Each drop is also logged.
func (m *Manager) UsageDropped() int64 {
	if m.meter == nil {
		return 0
	}
	return m.meter.dropped.Load()
}

// Usage returns the query's usage, summed by bucket and API: what the
// store holds plus what this instance has counted and not flushed yet, so
// a client sees its own requests at once. Batches a flush could not
// store are stored first; while the store fails, Usage fails
// (ErrUnavailable) rather than answer a count it cannot vouch for.
func (m *Manager) Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error) {
	if m.meter == nil {
		return nil, ErrUsageNotKept
	}
	if q.AccountID == "" || !q.From.Before(q.To) || !bucketOf(q.From, q.Granularity).Equal(q.From) || !bucketOf(q.To, q.Granularity).Equal(q.To) {
		return nil, invalid("start", "give an account, and a start before the end, each on a %s boundary", q.Granularity)
	}
	// Batches a flush could not store are stored first (the store may
	// have applied one whose answer was lost: idempotent, it counts once),
	// so that the read is exact: the store, then what the cells hold.
	m.meter.flushMu.Lock()
	defer m.meter.flushMu.Unlock()
	if err := m.meter.storePending(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	stored, err := m.meter.store.Usage(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%w: reading usage: %w", ErrUnavailable, err)
	}
	type bucketAPI struct {
		bucket int64
		api    string
	}
	sums := make(map[bucketAPI]*UsageRow, len(stored))
	var order []bucketAPI
	add := func(r UsageRow) {
		k := bucketAPI{r.Bucket.Unix(), r.API}
		s, ok := sums[k]
		if !ok {
			s = &UsageRow{Bucket: r.Bucket.UTC(), AccountID: q.AccountID, KeyID: q.KeyID, API: r.API}
			sums[k] = s
			order = append(order, k)
		}
		s.Add(r.UsageCounts)
	}
	for _, r := range stored {
		add(r)
	}
	for _, r := range m.meter.unflushed(q, m.now()) {
		add(r)
	}
	slices.SortFunc(order, func(a, b bucketAPI) int {
		if c := cmp.Compare(a.bucket, b.bucket); c != 0 {
			return c
		}
		return cmp.Compare(a.api, b.api)
	})
	out := make([]UsageRow, 0, len(order))
	for _, k := range order {
		if s := sums[k]; s.Total() > 0 {
			out = append(out, *s)
		}
	}
	return out, nil
}
