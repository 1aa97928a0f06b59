package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UsageTotals are request counts as the API shows them: failed counts
// every 4xx and 5xx, rate_limit_hits the 429s among them, so that
// total_requests = successful + failed.
type UsageTotals struct {
	TotalRequests int64 `json:"total_requests"`
	Successful    int64 `json:"successful"`
	Failed        int64 `json:"failed"`
	RateLimitHits int64 `json:"rate_limit_hits"`
}

func (t *UsageTotals) add(c UsageCounts) {
	t.TotalRequests += c.Total()
	t.Successful += c.Successful
	t.Failed += c.Failed + c.RateLimited
	t.RateLimitHits += c.RateLimited
}

// Period is a half-open span of time, [Start, End).
type Period struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Cost is an amount of money: Amount is a decimal number with at most 6
// decimals, exact (it is computed in millionths).
type Cost struct {
	Amount   json.Number `json:"amount"`
	Currency string      `json:"currency"`
}

// UsageSummary is an account's usage over a period (GET
// /developers/usage).
type UsageSummary struct {
	Period Period `json:"period"`
	UsageTotals
	// ByAPI has the same counts per API (see httpadapter.WithAPIName).
	ByAPI         map[string]UsageTotals `json:"by_api"`
	EstimatedCost Cost                   `json:"estimated_cost"`
}

// UsageFilter narrows a summary. Start and End are whole minutes; zero
// Start is the start of the current UTC month, zero End the end of the
// current minute.
type UsageFilter struct {
	Start, End time.Time
	KeyID      string // "": every key of the account
	API        string // "": every API
}

// UsageSeries is one key's usage in consecutive buckets, empty ones
// included, ready to chart (GET /developers/keys/{id}/usage).
type UsageSeries struct {
	KeyID       string        `json:"key_id"`
	Granularity string        `json:"granularity"`
	Period      Period        `json:"period"`
	Data        []UsageBucket `json:"data"`
}

// UsageBucket is one bucket of a series.
type UsageBucket struct {
	Start time.Time `json:"start"`
	UsageTotals
}

// MaxSeriesBuckets bounds a series: a day of minutes.
const MaxSeriesBuckets = 1440

// minuteRetention is how long stores keep minute buckets (memstore and
// pgstore: 48 hours). A summary's edges that are not whole hours are read
// from minutes, so they must be within it.
const minuteRetention = 48 * time.Hour

// WithPrices sets what a successful request to each API costs, for the
// usage summary's estimated_cost: prices maps an API name (or "*", any
// other API) to a decimal amount of currency (at most 6 decimals, e.g.
// "0.002"). Failed and rate-limited requests cost nothing. Without
// prices, every request costs nothing: the amount is 0 in currency "USD".
func WithPrices(currency string, prices map[string]string) Option {
	return func(c *config) error {
		if len(currency) != 3 || strings.ToUpper(currency) != currency {
			return fmt.Errorf("keys: WithPrices: currency %q is not an ISO 4217 code", truncate(currency, 10))
		}
		c.currency = currency
		c.prices = make(map[string]int64, len(prices))
		for api, p := range prices {
			micros, err := parseMicros(p)
			if err != nil {
				return fmt.Errorf("keys: WithPrices: the price of %q: %w", truncate(api, 40), err)
			}
			c.prices[api] = micros
		}
		return nil
	}
}

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

// usageSpans splits [start, end) into spans each read at the coarsest
// granularity whose boundaries it lies on: minutes up to the first whole
// hour, hours up to the first whole day, days, then hours and minutes at
// the end.
func usageSpans(start, end time.Time) []UsageQuery {
	var spans []UsageQuery
	add := func(g Granularity, from, to time.Time) {
		if from.Before(to) {
			spans = append(spans, UsageQuery{Granularity: g, From: from, To: to})
		}
	}
	ceil := func(t time.Time, d time.Duration) time.Time {
		if c := t.Truncate(d); c.Equal(t) {
			return c
		} else {
			return c.Add(d)
		}
	}
	h1, d1 := ceil(start, time.Hour), ceil(start, Day)
	d2, h2 := end.Truncate(Day), end.Truncate(time.Hour)
	if !d1.Before(d2) { // no whole day inside
		if !h1.Before(h2) { // no whole hour either
			add(Minute, start, end)
			return spans
		}
		add(Minute, start, h1)
		add(Hour, h1, h2)
		add(Minute, h2, end)
		return spans
	}
	add(Minute, start, h1)
	add(Hour, h1, d1)
	add(UTCDay, d1, d2)
	add(Hour, d2, h2)
	add(Minute, h2, end)
	return spans
}

// UsageSummary is the account's usage over f's period: what the store
// holds plus this instance's counts not yet flushed.
func (m *Manager) UsageSummary(ctx context.Context, accountID string, f UsageFilter) (*UsageSummary, error) {
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
	case f.End.Sub(f.Start) > 400*Day:
		return nil, invalid("end", "a period is at most 400 days")
	}
	s := &UsageSummary{Period: Period{f.Start, f.End}, ByAPI: map[string]UsageTotals{}, EstimatedCost: Cost{Amount: "0", Currency: m.currency}}
	var cost int64
	for _, span := range usageSpans(f.Start, f.End) {
		if span.Granularity == Minute && span.From.Before(now.Add(-minuteRetention)) {
			return nil, invalid("start", "minutes are kept 48 hours: an older start or end must be a whole hour")
		}
		span.AccountID, span.KeyID, span.API = accountID, f.KeyID, f.API
		rows, err := m.Usage(ctx, span)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			s.UsageTotals.add(r.UsageCounts)
			t := s.ByAPI[r.API]
			t.add(r.UsageCounts)
			s.ByAPI[r.API] = t
			price, ok := m.prices[r.API]
			if !ok {
				price = m.prices["*"]
			}
			cost += price * r.Successful
		}
	}
	s.EstimatedCost.Amount = formatMicros(cost)
	return s, nil
}

// KeyUsage is one key's usage from start to end in buckets of g, empty
// buckets included. Zero end is the end of the current bucket, zero start
// a day of buckets before it (a day of minutes at most). start and end
// must lie on g's boundaries, at most MaxSeriesBuckets apart.
func (m *Manager) KeyUsage(ctx context.Context, keyID string, g Granularity, start, end time.Time) (*UsageSeries, error) {
	rec, err := m.load(ctx, trusted, keyID)
	if err != nil {
		return nil, err
	}
	return m.keyUsage(ctx, rec, g, start, end)
}

func (m *Manager) keyUsage(ctx context.Context, rec *Record, g Granularity, start, end time.Time) (*UsageSeries, error) {
	d := g.Duration()
	now := m.now().UTC()
	if end.IsZero() {
		end = now.Truncate(d).Add(d)
	}
	if start.IsZero() {
		span := Day
		if g == UTCDay {
			span = 30 * Day
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
	case end.Sub(start)/d > MaxSeriesBuckets:
		return nil, invalid("end", "a series is at most %d buckets", MaxSeriesBuckets)
	case g == Minute && start.Before(now.Add(-minuteRetention)):
		return nil, invalid("start", "minutes are kept 48 hours")
	}
	rows, err := m.Usage(ctx, UsageQuery{AccountID: rec.AccountID, KeyID: rec.ID, Granularity: g, From: start, To: end})
	if err != nil {
		return nil, err
	}
	series := &UsageSeries{KeyID: rec.ID, Granularity: g.String(), Period: Period{start, end}, Data: make([]UsageBucket, end.Sub(start)/d)}
	for i := range series.Data {
		series.Data[i].Start = start.Add(time.Duration(i) * d)
	}
	for _, r := range rows {
		series.Data[r.Bucket.Sub(start)/d].add(r.UsageCounts)
	}
	return series, nil
}

// UsageSummary is the principal's account's usage. A KeyID must name a
// key the principal may see (ErrNotFound otherwise).
func (s Scoped) UsageSummary(ctx context.Context, f UsageFilter) (*UsageSummary, error) {
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

// KeyUsage is the usage series of one of the principal's keys.
func (s Scoped) KeyUsage(ctx context.Context, keyID string, g Granularity, start, end time.Time) (*UsageSeries, error) {
	rec, err := s.m.load(ctx, s.c, keyID)
	if err != nil {
		return nil, err
	}
	return s.m.keyUsage(ctx, rec, g, start, end)
}

// ParseGranularity reads "minute", "hour" or "day".
func ParseGranularity(s string) (Granularity, error) {
	switch s {
	case "minute":
		return Minute, nil
	case "hour":
		return Hour, nil
	case "day":
		return UTCDay, nil
	}
	return 0, errors.New("granularity is minute, hour or day")
}
