package keys_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
)

// usageStore is a memstore whose AddUsage can fail, before or after the
// batch is applied (an answer lost on the way back).
type usageStore struct {
	*memstore.Store
	failBefore, failAfter atomic.Int64 // how many calls fail so
	adds                  atomic.Int64
	largest               atomic.Int64 // rows in the largest batch
}

func (s *usageStore) AddUsage(ctx context.Context, b store.UsageBatch) error {
	s.adds.Add(1)
	for n := int64(len(b.Rows)); ; {
		if l := s.largest.Load(); n <= l || s.largest.CompareAndSwap(l, n) {
			break
		}
	}
	if s.failBefore.Add(-1) >= 0 {
		return errors.New("connection refused")
	}
	err := s.Store.AddUsage(ctx, b)
	if s.failAfter.Add(-1) >= 0 {
		return errors.New("connection reset after the commit")
	}
	return err
}

type meterFixture struct {
	m     *keys.Manager
	store *usageStore
	clock *clock
}

func newMeterFixture(t *testing.T, opts ...keys.Option) *meterFixture {
	t.Helper()
	f := &meterFixture{store: &usageStore{Store: memstore.New()}, clock: newClock()}
	f.m = newManagerAt(t, f.store, f.clock, opts...)
	return f
}

func (f *meterFixture) verified(t *testing.T, account, name string) *keys.Verified {
	t.Helper()
	c, err := f.m.Create(context.Background(), keys.APIKeyCreate{AccountID: account, Name: name, Environment: keys.Test})
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.m.Verify(context.Background(), string(c.Key))
	if err != nil {
		t.Fatal(err)
	}
	return &v
}

func (f *meterFixture) summary(t *testing.T, account string, filter usage.Filter) *usage.Summary {
	t.Helper()
	s, err := f.m.UsageSummary(context.Background(), account, filter)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Counts from many goroutines, over keys, APIs and outcomes, are exact:
// read before any flush (from memory), after a flush (from the store),
// and rolled up to hours and days.
func TestUsageCountsAreExact(t *testing.T) {
	f := newMeterFixture(t)
	a, b := f.verified(t, "acct_u", "a"), f.verified(t, "acct_u", "b")
	other := f.verified(t, "acct_other", "o")
	statuses := []int{200, 201, 304, 400, 404, 500, 429}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 700 {
				v := a
				if (g+i)%3 == 0 {
					v = b
				}
				st := statuses[i%len(statuses)]
				f.m.CountUsage(v, []string{"identity", "fraud"}[g%2], st)
			}
		})
	}
	f.m.CountUsage(other, "identity", 200)
	wg.Wait()
	want := usage.Totals{TotalRequests: 5600, Successful: 2400, Failed: 3200, RateLimitHits: 800}
	check := func(when string) {
		t.Helper()
		s := f.summary(t, "acct_u", usage.Filter{})
		if s.Totals != want {
			t.Fatalf("%s: %+v, want %+v", when, s.Totals, want)
		}
		if id, fr := s.ByAPI["identity"], s.ByAPI["fraud"]; id.TotalRequests != 2800 || fr.TotalRequests != 2800 || len(s.ByAPI) != 2 {
			t.Fatalf("%s: by_api %+v", when, s.ByAPI)
		}
		byKey := f.summary(t, "acct_u", usage.Filter{KeyID: b.KeyID})
		byAPI := f.summary(t, "acct_u", usage.Filter{API: "fraud"})
		if byKey.TotalRequests+f.summary(t, "acct_u", usage.Filter{KeyID: a.KeyID}).TotalRequests != 5600 || byKey.TotalRequests == 0 || byAPI.TotalRequests != 2800 {
			t.Fatalf("%s: key b %d, api fraud %d", when, byKey.TotalRequests, byAPI.TotalRequests)
		}
	}
	check("unflushed")
	f.clock.Advance(time.Minute)
	if err := f.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.store.adds.Load() != 1 {
		t.Fatalf("%d batches for one flush", f.store.adds.Load())
	}
	check("flushed")
	now := f.clock.Now()
	for _, g := range []usage.Granularity{usage.Minute, usage.Hour, usage.Day} {
		from := now.Truncate(g.Duration()).Add(-g.Duration())
		rows, err := f.store.Usage(context.Background(), store.UsageQuery{AccountID: "acct_u", Granularity: g, From: from, To: from.Add(2 * g.Duration())})
		var total int64
		for _, r := range rows {
			total += (r.Successful + r.Failed)
		}
		if err != nil || total != 5600 {
			t.Fatalf("%v: the store holds %d (%v)", g, total, err)
		}
	}
	if s := f.summary(t, "acct_other", usage.Filter{}); s.TotalRequests != 1 {
		t.Fatalf("another account: %+v", s.Totals)
	}
}

// A flush whose answer is lost after the store applied it is retried with
// the same batch ID and counts nothing twice; one refused before applying
// is kept and retried, and loses nothing.
func TestUsageFlushRetriesAreIdempotent(t *testing.T) {
	f := newMeterFixture(t)
	v := f.verified(t, "acct_r", "k")
	for range 10 {
		f.m.CountUsage(v, "api", 200)
	}
	f.clock.Advance(time.Minute)
	f.store.failAfter.Store(1)
	if err := f.m.Flush(context.Background()); err == nil {
		t.Fatal("the lost answer was not reported")
	}
	for range 5 {
		f.m.CountUsage(v, "api", 500)
	}
	f.clock.Advance(time.Minute)
	f.store.failBefore.Store(2)
	for range 2 {
		if err := f.m.Flush(context.Background()); err == nil {
			t.Fatal("a failing store was not reported")
		}
	}
	// A read while the store fails fails, rather than guess whether the
	// batch with the lost answer counts.
	f.store.failBefore.Store(1)
	if _, err := f.m.UsageSummary(context.Background(), "acct_r", usage.Filter{}); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("a read with the store failing: %v", err)
	}
	if err := f.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := f.summary(t, "acct_r", usage.Filter{})
	if s.TotalRequests != 15 || s.Successful != 10 || s.Failed != 5 {
		t.Fatalf("after recovery: %+v, want 10 successful and 5 failed, once each", s.Totals)
	}
	rows, _ := f.store.Usage(context.Background(), store.UsageQuery{AccountID: "acct_r", Granularity: usage.Day, From: f.clock.Now().Truncate((24 * time.Hour)), To: f.clock.Now().Truncate((24 * time.Hour)).Add((24 * time.Hour))})
	if len(rows) != 1 || (rows[0].Successful+rows[0].Failed) != 15 {
		t.Fatalf("the store holds %+v", rows)
	}
}

// Each minute's requests land in that minute's bucket, across minute
// boundaries and with a flush in between.
func TestUsageMinuteBuckets(t *testing.T) {
	f := newMeterFixture(t)
	// A Verified of the host's making: counted at the Manager's clock when
	// counted (one from Verify counts in Verify's minute).
	vv := *f.verified(t, "acct_b", "k")
	v := &keys.Verified{KeyID: vv.KeyID, AccountID: vv.AccountID}
	start := f.clock.Now().Truncate(time.Minute)
	f.clock.Advance(start.Add(time.Minute).Sub(f.clock.Now()) - time.Nanosecond) // the minute's last instant
	for m := range 4 {
		for range m + 1 {
			f.m.CountUsage(v, "api", 200)
		}
		f.clock.Advance(time.Minute)
		if m == 1 {
			if err := f.m.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	series, err := f.m.KeyUsage(context.Background(), v.KeyID, usage.Minute, start, start.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{1, 2, 3, 4, 0} {
		if b := series.Data[i]; b.TotalRequests != want || !b.Start.Equal(start.Add(time.Duration(i)*time.Minute)) {
			t.Fatalf("bucket %d: %+v, want %d", i, b, want)
		}
	}
}

// A flush writes the current minute's counts so far, not only finished
// minutes: a process killed mid-minute loses one flush interval at most
// (it lost the whole minute: 500 of 500 requests). A second flush in the
// same minute adds what came since, counting nothing twice.
func TestFlushWritesThePartialMinute(t *testing.T) {
	f := newMeterFixture(t)
	v := f.verified(t, "acct_p", "k")
	start := f.clock.Now().Truncate(time.Minute)
	for range 5 {
		f.m.CountUsage(v, "api", 200)
	}
	if err := f.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored := func() int64 {
		rows, err := f.store.Usage(context.Background(), store.UsageQuery{AccountID: "acct_p", Granularity: usage.Minute, From: start, To: start.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, r := range rows {
			n += r.Successful
		}
		return n
	}
	if n := stored(); n != 5 {
		t.Fatalf("after a flush mid-minute the store holds %d of 5 requests", n)
	}
	for range 3 {
		f.m.CountUsage(v, "api", 200)
	}
	f.clock.Advance(10 * time.Second) // still the same minute
	if err := f.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := stored(); n != 8 {
		t.Fatalf("after a second flush in the minute the store holds %d of 8 requests", n)
	}
	if s := f.summary(t, "acct_p", usage.Filter{Start: start}); s.Successful != 8 {
		t.Fatalf("the summary counts %d of 8 requests", s.Successful)
	}
}

// Close flushes everything, the current minute included.
func TestCloseFlushesUsage(t *testing.T) {
	ms := memstore.New()
	m, err := keys.New(ms)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.Create(context.Background(), keys.APIKeyCreate{AccountID: "acct_c", Name: "k", Environment: keys.Test})
	v, _ := m.Verify(context.Background(), string(c.Key))
	for range 7 {
		m.CountUsage(&v, "api", 200)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate((24 * time.Hour))
	rows, err := ms.Usage(context.Background(), store.UsageQuery{AccountID: "acct_c", Granularity: usage.Day, From: now.Add(-(24 * time.Hour)), To: now.Add((24 * time.Hour))})
	if err != nil || len(rows) != 1 || rows[0].Successful != 7 {
		t.Fatalf("after Close the store holds %+v (%v)", rows, err)
	}
}

// Past the meter's bounds on a key's APIs and on counted (key, API)
// pairs, requests are not counted but counted as dropped, and logged.
func TestUsageMemoryIsBounded(t *testing.T) {
	var log syncBuffer
	f := newMeterFixture(t, keys.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	v := f.verified(t, "acct_m", "k")
	for i := range keys.MaxAPIsPerKey + 10 {
		f.m.CountUsage(v, fmt.Sprint("api-", i), 200)
	}
	if d := keys.UsageDropped(f.m); d != 10 {
		t.Fatalf("%d dropped past a key's %d APIs, want 10", d, keys.MaxAPIsPerKey)
	}
	if !strings.Contains(log.String(), "usage past the meter's memory bound") || !strings.Contains(log.String(), "requests_dropped_total=1\n") {
		t.Fatalf("the drop was not logged: %q", log.String())
	}
	// Many keys: each key's first API is counted in the key's own state;
	// the bound is on the cells of further APIs, every key's together
	// (lowered to 1,000 here, of which the first key holds 63).
	keys.SetExtraCells(f.m, 1000)
	before := keys.UsageDropped(f.m)
	sent := int64(keys.MaxAPIsPerKey + 10)
	for i := range 1037 {
		v := &keys.Verified{KeyID: fmt.Sprint("key_", i), AccountID: "acct_m"}
		f.m.CountUsage(v, "api", 200)
		f.m.CountUsage(v, "api-2", 200)
		sent += 2
	}
	if d := keys.UsageDropped(f.m) - before; d != 100 {
		t.Fatalf("%d dropped past 1,000 extra cells, want 100", d)
	}
	// Idle keys are let go (drained empty once, then swept at the next
	// flush), so the bound is on keys in use, not keys ever seen: a new
	// key's further API is counted again once they are gone.
	f.clock.Advance(time.Minute)
	for range 4 {
		if err := f.m.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	late := &keys.Verified{KeyID: "key_late", AccountID: "acct_m"}
	f.m.CountUsage(late, "api", 200)
	f.m.CountUsage(late, "api-2", 200)
	sent += 2
	if d := keys.UsageDropped(f.m) - before; d != 100 {
		t.Fatalf("a new key after the idle ones were let go was dropped (%d)", d-100)
	}
	if s := f.summary(t, "acct_m", usage.Filter{KeyID: ""}); s.TotalRequests != sent-keys.UsageDropped(f.m) {
		t.Fatalf("%d counted of %d sent, %d dropped: want every request that was not dropped", s.TotalRequests, sent, keys.UsageDropped(f.m))
	}
}

// A flush covering more keys than one batch holds (many clients each
// calling now and then) writes them all, in batches; the bound on pending
// rows is on what a failing store leaves behind: the newest batches past
// it are dropped, counted, and the rest are written once the store is
// back.
func TestUsageFlushOfManyKeysIsBatched(t *testing.T) {
	f := newMeterFixture(t)
	keys.SetUsageBatches(f.m, 90, 30)
	countKeys := func(from, n int) {
		for i := range n {
			f.m.CountUsage(&keys.Verified{KeyID: fmt.Sprint("key_", from+i), AccountID: "acct_b"}, "api", 200)
		}
	}
	countKeys(0, 250)
	f.clock.Advance(time.Minute)
	if err := f.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := keys.UsageDropped(f.m); d != 0 {
		t.Fatalf("a healthy store lost %d of 250 requests: one flush's rows were held to the failing store's bound", d)
	}
	if a, l := f.store.adds.Load(), f.store.largest.Load(); a != 9 || l != 30 {
		t.Fatalf("250 rows in %d batches, the largest of %d rows: want 9, of at most 30", a, l)
	}
	if s := f.summary(t, "acct_b", usage.Filter{}); s.TotalRequests != 250 {
		t.Fatalf("%d counted of 250", s.TotalRequests)
	}

	f.store.failBefore.Store(1 << 30)
	countKeys(250, 250)
	f.clock.Advance(time.Minute)
	if err := f.m.Flush(context.Background()); err == nil {
		t.Fatal("a failing store was not reported")
	}
	// 9 batches of at most 30 rows, of which 3 (90 rows) fit in 90.
	if d := keys.UsageDropped(f.m); d != 160 {
		t.Fatalf("%d dropped past the pending bound, want 160", d)
	}
	f.store.failBefore.Store(0)
	if err := f.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := f.summary(t, "acct_b", usage.Filter{}); s.TotalRequests != 340 {
		t.Fatalf("%d counted, want 250 + the 90 kept", s.TotalRequests)
	}
}

// The summary's estimated cost is its successful requests times their
// API's price, exactly; without prices it is 0 USD.
func TestUsageEstimatedCost(t *testing.T) {
	f := newMeterFixture(t, keys.WithPrices("EUR", map[string]string{"identity": "0.002", "*": "0.000001"}))
	v := f.verified(t, "acct_p", "k")
	for range 1234 {
		f.m.CountUsage(v, "identity", 200)
	}
	for range 3 {
		f.m.CountUsage(v, "fraud", 200)
		f.m.CountUsage(v, "identity", 500) // free
	}
	if s := f.summary(t, "acct_p", usage.Filter{}); s.EstimatedCost.Amount != "2.468003" || s.EstimatedCost.Currency != "EUR" {
		t.Fatalf("cost %+v, want 2.468003 EUR", s.EstimatedCost)
	}
	free := newMeterFixture(t)
	w := free.verified(t, "acct_p", "k")
	free.m.CountUsage(w, "identity", 200)
	if s := free.summary(t, "acct_p", usage.Filter{}); s.EstimatedCost.Amount != "0" || s.EstimatedCost.Currency != "USD" {
		t.Fatalf("without prices: %+v", s.EstimatedCost)
	}
	for _, bad := range []string{"", "1.0000001", "-1", "1e3", ".5", "1,5"} {
		if _, err := keys.New(memstore.New(), keys.WithPrices("USD", map[string]string{"x": bad})); err == nil {
			t.Errorf("price %q accepted", bad)
		}
	}
	if _, err := keys.New(memstore.New(), keys.WithPrices("usd", nil)); err == nil {
		t.Error("currency usd accepted")
	}
}

// A summary's period is read at the coarsest granularity each part allows,
// and adds up whatever the split: a period over two days, with edges
// inside hours, equals the sum of its minutes.
func TestUsageSummaryOverMixedSpans(t *testing.T) {
	f := newMeterFixture(t)
	vv := *f.verified(t, "acct_s", "k")
	v := &keys.Verified{KeyID: vv.KeyID, AccountID: vv.AccountID}
	t0 := f.clock.Now().Truncate(time.Minute)
	var inside int64
	for i := range 60 {
		// one request every 47 minutes, over about two days
		f.m.CountUsage(v, "api", 200)
		at := f.clock.Now()
		if !at.Before(t0.Add(13*time.Minute)) && at.Before(t0.Add(40*time.Hour+7*time.Minute)) {
			inside++
		}
		f.clock.Advance(47 * time.Minute)
		if i%10 == 0 {
			_ = f.m.Flush(context.Background())
		}
	}
	s := f.summary(t, "acct_s", usage.Filter{Start: t0.Add(13 * time.Minute), End: t0.Add(40*time.Hour + 7*time.Minute)})
	if s.TotalRequests != inside {
		t.Fatalf("%d in the period, want %d", s.TotalRequests, inside)
	}
}

func TestUsageRefusesBadPeriods(t *testing.T) {
	f := newMeterFixture(t)
	v := f.verified(t, "acct_x", "k")
	now := f.clock.Now().Truncate(time.Minute)
	var ve *keys.ValidationError
	for _, c := range []usage.Filter{
		{Start: now.Add(time.Second)},
		{Start: now, End: now},
		{Start: now.Add(-3 * (24 * time.Hour)).Add(time.Minute), End: now},
		{Start: now.Add(-500 * (24 * time.Hour)), End: now},
	} {
		if _, err := f.m.UsageSummary(context.Background(), "acct_x", c); !errors.As(err, &ve) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, c := range []struct {
		g          usage.Granularity
		start, end time.Time
	}{
		{usage.Hour, now.Truncate(time.Hour).Add(time.Minute), time.Time{}},
		{usage.Minute, now.Add(-1441 * time.Minute), now},
		{usage.Minute, now.Add(-49 * time.Hour), now.Add(-48 * time.Hour)},
		{usage.Day, now.Truncate((24 * time.Hour)), now.Truncate((24 * time.Hour))},
	} {
		if _, err := f.m.KeyUsage(context.Background(), v.KeyID, c.g, c.start, c.end); !errors.As(err, &ve) {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if _, err := f.m.KeyUsage(context.Background(), "key_nope", usage.Hour, time.Time{}, time.Time{}); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("an unknown key: %v", err)
	}
}

// Two Managers on one store in one process share its records: each
// counts its own requests, and closing one loses none of the other's.
func TestUsageOfTwoManagersOnOneStore(t *testing.T) {
	store := memstore.New()
	var ms []*keys.Manager
	for range 2 {
		m, err := keys.New(store)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(context.Background())
		ms = append(ms, m)
	}
	c, err := ms[0].Create(context.Background(), keys.APIKeyCreate{AccountID: "acct_2", Name: "k", Environment: keys.Test})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		m := ms[i%2]
		v, err := m.Verify(context.Background(), string(c.Key))
		if err != nil {
			t.Fatal(err)
		}
		m.CountUsage(&v, "api", 200)
		if i == 9 {
			if err := ms[0].Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			ms[0] = ms[1]
		}
	}
	s, err := ms[1].UsageSummary(context.Background(), "acct_2", usage.Filter{})
	if err != nil || s.TotalRequests != 20 {
		t.Fatalf("%v %+v, want 20", err, s)
	}
}
