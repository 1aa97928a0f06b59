package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/memstore"
)

// eventsOf waits until account's log holds want events of typ, and
// returns them (it fails if more appear).
func eventsOf(t *testing.T, m *keys.Manager, account string, typ event.Type, want int) []event.Event {
	t.Helper()
	var l *event.Page
	waitFor(t, string(typ), 2*time.Second, func() bool {
		var err error
		l, err = m.As(keys.Principal{AccountID: account}).Events(context.Background(), event.Filter{Type: typ, Limit: 100})
		return err == nil && len(l.Data) >= want
	})
	time.Sleep(10 * time.Millisecond) // time for one more, if one were coming
	l, _ = m.As(keys.Principal{AccountID: account}).Events(context.Background(), event.Filter{Type: typ, Limit: 100})
	if len(l.Data) != want {
		t.Fatalf("%d %s events, want %d", len(l.Data), typ, want)
	}
	return l.Data
}

// A budget crossing the host's low mark, and reaching 0, is reported once
// per crossing, by the spend that crossed it.
func TestCreditsCrossingsAreEvents(t *testing.T) {
	ctx := context.Background()
	m, err := keys.New(memstore.New(), keys.WithEvents(event.Config{CreditsLow: 2}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "metered", Environment: keys.Test, AccountID: "acct_c", Credits: &credits.Budget{Remaining: 5}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		_, err := m.Verify(ctx, string(k.Key))
		if (i < 5) != (err == nil) || i >= 5 && !errors.Is(err, keys.ErrCreditsExhausted) {
			t.Fatalf("verify %d: %v", i, err)
		}
	}
	low := eventsOf(t, m, "acct_c", event.CreditsLow, 1)
	spent := eventsOf(t, m, "acct_c", event.CreditsExhausted, 1)
	var d event.Credits
	if err := json.Unmarshal(low[0].Data, &d); err != nil || d.KeyID != k.ID || d.Remaining != 2 || d.Threshold != 2 || low[0].Environment != "test" {
		t.Fatalf("credits.low %+v %s", d, low[0].Data)
	}
	if err := json.Unmarshal(spent[0].Data, &d); err != nil || d.Remaining != 0 || spent[0].KeyID != k.ID {
		t.Fatalf("credits.exhausted %+v", d)
	}
	// Topped up and spent again: a second crossing, a second event.
	if _, err := m.Update(ctx, k.ID, keys.APIKeyUpdate{Credits: keys.Change(credits.Budget{Remaining: 1})}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatal(err)
	}
	eventsOf(t, m, "acct_c", event.CreditsExhausted, 2)
	eventsOf(t, m, "acct_c", event.CreditsLow, 1) // set to 1, under the mark: no spend crossed it
}

// An account's day quota at 80% and 100% is reported once each per day,
// after the usage flush that saw it.
func TestQuotaThresholdsAreEvents(t *testing.T) {
	if buildtag.Mutation {
		t.Skip("observed.go is not mutated; skipped under mutation testing, which pays each test once per mutant")
	}
	ctx := context.Background()
	clk := newClock()
	m, err := keys.New(memstore.New(), keys.WithClock(clk.Now), keys.WithPlans(func(context.Context, string) (keys.Plan, error) {
		return keys.Plan{PerDay: 10}, nil
	}, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "q", Environment: keys.Live, AccountID: "acct_q"})
	if err != nil {
		t.Fatal(err)
	}
	verify := func(n int) {
		for range n {
			v, err := m.Verify(ctx, string(k.Key))
			if err != nil {
				t.Fatal(err)
			}
			m.CountUsage(&v, "GET /v1/things", 200) // as the adapters count every request
		}
		clk.Advance(time.Minute)
		if err := m.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	verify(7)
	eventsOf(t, m, "acct_q", event.UsageQuotaThreshold, 0)
	verify(1)
	got := eventsOf(t, m, "acct_q", event.UsageQuotaThreshold, 1)
	var q event.Quota
	if err := json.Unmarshal(got[0].Data, &q); err != nil || q.Threshold != 80 || q.Limit != 10 || q.Used != 8 || q.Day != clk.Now().UTC().Format(time.DateOnly) {
		t.Fatalf("80%%: %+v", q)
	}
	verify(1)
	eventsOf(t, m, "acct_q", event.UsageQuotaThreshold, 1)
	verify(1)
	got = eventsOf(t, m, "acct_q", event.UsageQuotaThreshold, 2)
	if err := json.Unmarshal(got[0].Data, &q); err != nil || q.Threshold != 100 || q.Used != 10 {
		t.Fatalf("100%%: %+v", q)
	}
	if _, err := m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("past the quota: %v", err)
	}
	clk.Advance(time.Minute)
	_ = m.Flush(ctx)
	eventsOf(t, m, "acct_q", event.UsageQuotaThreshold, 2)
}

// The account's own budget crosses its marks too: events without a key,
// in the live environment.
func TestAccountCreditsCrossingsAreEvents(t *testing.T) {
	ctx := context.Background()
	m, err := keys.New(memstore.New(), keys.WithEvents(event.Config{CreditsLow: 1}), keys.WithPlans(func(context.Context, string) (keys.Plan, error) {
		return keys.Plan{Name: "metered"}, nil
	}, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	if err := m.SetAccountCredits(ctx, "acct_ac", &credits.Budget{Remaining: 3}); err != nil {
		t.Fatal(err)
	}
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: "acct_ac"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := m.Verify(ctx, string(k.Key)); (i < 3) != (err == nil) {
			t.Fatalf("verify %d: %v", i, err)
		}
	}
	for _, typ := range []event.Type{event.CreditsLow, event.CreditsExhausted} {
		e := eventsOf(t, m, "acct_ac", typ, 1)[0]
		var d event.Credits
		if err := json.Unmarshal(e.Data, &d); err != nil || d.KeyID != "" || e.KeyID != "" || e.Environment != "live" {
			t.Fatalf("%s: %+v %+v", typ, e, d)
		}
	}
}
