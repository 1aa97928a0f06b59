package keys

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys/internal/sentinel"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
)

// errUsageNotKept is what the usage reads return on a store that keeps no
// usage (no store.UsageStore): a not-found, which the HTTP endpoints
// answer with 404.
var errUsageNotKept = fmt.Errorf("keys: %w: %w", sentinel.ErrUsageNotKept, ErrNotFound)

// addTotals adds a stored row's counts to t.
func addTotals(t *usage.Totals, r store.UsageRow) {
	t.TotalRequests += r.Successful + r.Failed
	t.Successful += r.Successful
	t.Failed += r.Failed
	t.RateLimitHits += r.RateLimited
}

// maxSeriesBuckets bounds a series: a day of minutes.
const maxSeriesBuckets = 1440

// parseMicros reads a non-negative decimal with at most 6 decimals as
// millionths.
func parseMicros(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 6 || len(whole) > 12 || strings.Trim(whole+frac, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal amount with at most 6 decimals", truncate(s, 20))
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	f, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return w*1_000_000 + f, nil
}

// formatMicros writes millionths as a decimal.
func formatMicros(n int64) json.Number {
	s := fmt.Sprintf("%d.%06d", n/1_000_000, n%1_000_000)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return json.Number(s)
}

// day is a UTC calendar day's length.
const day = 24 * time.Hour

// usageSpans splits [start, end) into spans each read at the coarsest
// granularity whose boundaries it lies on: minutes up to the first whole
// hour, hours up to the first whole day, days, then hours and minutes at
// the end.
func usageSpans(start, end time.Time) []store.UsageQuery {
	var spans []store.UsageQuery
	add := func(g usage.Granularity, from, to time.Time) {
		if from.Before(to) {
			spans = append(spans, store.UsageQuery{Granularity: g, From: from, To: to})
		}
	}
	ceil := func(t time.Time, d time.Duration) time.Time {
		if c := t.Truncate(d); c.Equal(t) {
			return c
		} else {
			return c.Add(d)
		}
	}
	h1, d1 := ceil(start, time.Hour), ceil(start, day)
	d2, h2 := end.Truncate(day), end.Truncate(time.Hour)
	if !d1.Before(d2) { // no whole day inside
		if !h1.Before(h2) { // no whole hour either
			add(usage.Minute, start, end)
			return spans
		}
		add(usage.Minute, start, h1)
		add(usage.Hour, h1, h2)
		add(usage.Minute, h2, end)
		return spans
	}
	add(usage.Minute, start, h1)
	add(usage.Hour, h1, d1)
	add(usage.Day, d1, d2)
	add(usage.Hour, d2, h2)
	add(usage.Minute, h2, end)
	return spans
}

// UsageSummary is the account's usage over f's period (package usage):
// what the store holds plus this instance's counts not yet flushed, so a
// client sees its own requests at once. On a store that keeps no usage
// it is an error the HTTP endpoints answer with 404.
func (m *Manager) UsageSummary(ctx context.Context, accountID string, f usage.Filter) (*usage.Summary, error) {
	now := m.now().UTC()
	if f.Start.IsZero() {
		f.Start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	if f.End.IsZero() {
		f.End = now.Truncate(time.Minute).Add(time.Minute)
	}
	f.Start, f.End = f.Start.UTC(), f.End.UTC()
	switch {
	case !f.Start.Truncate(time.Minute).Equal(f.Start):
		return nil, invalid("start", "start must be a whole minute")
	case !f.End.Truncate(time.Minute).Equal(f.End):
		return nil, invalid("end", "end must be a whole minute")
	case !f.Start.Before(f.End):
		return nil, invalid("end", "end must be after start")
	case f.End.Sub(f.Start) > 400*day:
		return nil, invalid("end", "a period is at most 400 days")
	}
	s := &usage.Summary{Period: usage.Period{Start: f.Start, End: f.End}, ByAPI: map[string]usage.Totals{},
		EstimatedCost: usage.Money{Amount: "0", Currency: m.currency}}
	spans := usageSpans(f.Start, f.End)
	for i := range spans {
		if spans[i].Granularity == usage.Minute && spans[i].From.Before(now.Add(-store.MinuteRetention)) {
			return nil, invalid("start", "minutes are kept 48 hours: an older start or end must be a whole hour")
		}
		spans[i].AccountID, spans[i].KeyID, spans[i].API = accountID, f.KeyID, f.API
	}
	rows, err := m.usageRows(ctx, spans...)
	if err != nil {
		return nil, err
	}
	var cost int64
	for _, r := range rows {
		addTotals(&s.Totals, r)
		t := s.ByAPI[r.API]
		addTotals(&t, r)
		s.ByAPI[r.API] = t
		price, ok := m.prices[r.API]
		if !ok {
			price = m.prices["*"]
		}
		cost += price * r.Successful
	}
	s.EstimatedCost.Amount = formatMicros(cost)
	return s, nil
}

// KeyUsage is one key's usage from start to end in buckets of g, empty
// buckets included. Zero end is the end of the current bucket, zero start
// a day of buckets before it (30 days of days). start and end must lie on
// g's boundaries, at most 1,440 buckets apart.
func (m *Manager) KeyUsage(ctx context.Context, keyID string, g usage.Granularity, start, end time.Time) (*usage.Series, error) {
	rec, err := m.load(ctx, trusted, keyID)
	if err != nil {
		return nil, err
	}
	return m.keyUsage(ctx, rec.AccountID, rec.ID, g, start, end)
}

// keyUsage is the series of account's key keyID, or of all its keys
// together when keyID is "".
func (m *Manager) keyUsage(ctx context.Context, account, keyID string, g usage.Granularity, start, end time.Time) (*usage.Series, error) {
	d := g.Duration()
	now := m.now().UTC()
	if end.IsZero() {
		end = now.Truncate(d).Add(d)
	}
	if start.IsZero() {
		span := day
		if g == usage.Day {
			span = 30 * day
		}
		start = end.Add(-span)
	}
	start, end = start.UTC(), end.UTC()
	switch {
	case !start.Truncate(d).Equal(start):
		return nil, invalid("start", "start must be a whole %s", g)
	case !end.Truncate(d).Equal(end):
		return nil, invalid("end", "end must be a whole %s", g)
	case !start.Before(end):
		return nil, invalid("end", "end must be after start")
	case end.Sub(start)/d > maxSeriesBuckets:
		return nil, invalid("end", "a series is at most %d buckets", maxSeriesBuckets)
	case g == usage.Minute && start.Before(now.Add(-store.MinuteRetention)):
		return nil, invalid("start", "minutes are kept 48 hours")
	}
	rows, err := m.usageRows(ctx, store.UsageQuery{AccountID: account, KeyID: keyID, Granularity: g, From: start, To: end})
	if err != nil {
		return nil, err
	}
	series := &usage.Series{KeyID: keyID, Granularity: g.String(), Period: usage.Period{Start: start, End: end}, Data: make([]usage.Bucket, end.Sub(start)/d)}
	for i := range series.Data {
		series.Data[i].Start = start.Add(time.Duration(i) * d)
	}
	for _, r := range rows {
		addTotals(&series.Data[r.Bucket.Sub(start)/d].Totals, r)
	}
	return series, nil
}

// UsageSummary is the principal's account's usage. A KeyID must name a
// key the principal may see (ErrNotFound otherwise).
func (s Scoped) UsageSummary(ctx context.Context, f usage.Filter) (*usage.Summary, error) {
	if err := s.c.valid(); err != nil {
		return nil, err
	}
	if f.KeyID != "" {
		if _, err := s.m.load(ctx, s.c, f.KeyID); err != nil {
			return nil, err
		}
	}
	return s.m.UsageSummary(ctx, s.c.p.AccountID, f)
}

// KeyUsage is the usage series of one of the principal's keys, or, with
// keyID "", of all its account's keys together (Series.KeyID is then "";
// the same counts UsageSummary reads, in buckets: what a dashboard charts).
func (s Scoped) KeyUsage(ctx context.Context, keyID string, g usage.Granularity, start, end time.Time) (*usage.Series, error) {
	if keyID == "" {
		if err := s.c.valid(); err != nil {
			return nil, err
		}
		return s.m.keyUsage(ctx, s.c.p.AccountID, "", g, start, end)
	}
	rec, err := s.m.load(ctx, s.c, keyID)
	if err != nil {
		return nil, err
	}
	return s.m.keyUsage(ctx, rec.AccountID, rec.ID, g, start, end)
}

// usageRows returns the usage of the queries (spans of one period, for
// one account, key and API), summed by bucket and API: what the store
// holds plus what this instance has counted and not flushed yet, walked
// once for them all. Batches a flush could not store are stored first;
// while the store fails, it fails (ErrUnavailable) rather than answer a
// count it cannot vouch for.
func (m *Manager) usageRows(ctx context.Context, qs ...store.UsageQuery) ([]store.UsageRow, error) {
	if m.meter == nil {
		return nil, errUsageNotKept
	}
	for _, q := range qs {
		if q.AccountID == "" || !q.From.Before(q.To) || !bucketOf(q.From, q.Granularity).Equal(q.From) || !bucketOf(q.To, q.Granularity).Equal(q.To) {
			return nil, invalid("start", "give an account, and a start before the end, each on a %s boundary", q.Granularity)
		}
	}
	// Batches a flush could not store are stored first (the store may
	// have applied one whose answer was lost: idempotent, it counts once),
	// so that the read is exact: the store, then what the cells hold.
	m.background.mu.Lock()
	defer m.background.mu.Unlock()
	if err := m.meter.storePending(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var out []store.UsageRow
	var minutes []store.UsageRow // not flushed yet, read once
	for i, q := range qs {
		stored, err := m.meter.store.Usage(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("%w: reading usage: %w", ErrUnavailable, err)
		}
		if i == 0 {
			minutes = m.unflushed(q, m.now())
		}
		out = append(out, sumByBucket(q, stored, minutes)...)
	}
	return out, nil
}

// sumByBucket sums stored (q's rows) and the minute rows of minutes that
// fall in q, by q's bucket and API, ordered by bucket, then API.
func sumByBucket(q store.UsageQuery, stored, minutes []store.UsageRow) []store.UsageRow {
	type bucketAPI struct {
		bucket int64
		api    string
	}
	sums := make(map[bucketAPI]*store.UsageRow, len(stored))
	var order []bucketAPI
	add := func(r store.UsageRow) {
		k := bucketAPI{r.Bucket.Unix(), r.API}
		s, ok := sums[k]
		if !ok {
			s = &store.UsageRow{Bucket: r.Bucket.UTC(), AccountID: q.AccountID, KeyID: q.KeyID, API: r.API}
			sums[k] = s
			order = append(order, k)
		}
		s.Successful += r.Successful
		s.Failed += r.Failed
		s.RateLimited += r.RateLimited
	}
	for _, r := range stored {
		add(r)
	}
	for _, r := range minutes {
		if r.Bucket = bucketOf(r.Bucket, q.Granularity); !r.Bucket.Before(q.From) && r.Bucket.Before(q.To) {
			add(r)
		}
	}
	slices.SortFunc(order, func(a, b bucketAPI) int {
		if c := cmp.Compare(a.bucket, b.bucket); c != 0 {
			return c
		}
		return cmp.Compare(a.api, b.api)
	})
	out := make([]store.UsageRow, 0, len(order))
	for _, k := range order {
		if s := sums[k]; s.Successful+s.Failed > 0 {
			out = append(out, *s)
		}
	}
	return out
}
