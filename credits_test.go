package keys_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// creditFixture is a Manager on a memstore (a store.CreditStore) with a
// settable clock.
func creditFixture(t *testing.T, opts ...keys.Option) (*keys.Manager, *clock) {
	t.Helper()
	c := newClock()
	return newManagerAt(t, memstore.New(), c, opts...), c
}

func createWithCredits(t *testing.T, m *keys.Manager, spec credits.Budget, rateLimit int) *keys.APIKeyCreated {
	t.Helper()
	req := keys.APIKeyCreate{Name: "metered", Environment: keys.Live, AccountID: "acct_credits", Credits: &spec}
	if rateLimit > 0 {
		req.RateLimit = &rateLimit
	}
	k, err := m.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCreditsAreSpentExactly: many goroutines verifying one key with a
// budget of N pass exactly N times; every other call is a *CreditsError
// (not a rate limit), and the budget never goes below zero.
func TestCreditsAreSpentExactly(t *testing.T) {
	m, _ := creditFixture(t)
	const budget = 300
	k := createWithCredits(t, m, credits.Budget{Remaining: budget}, 0)
	var passed, refused atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range budget {
				v, err := m.Verify(context.Background(), string(k.Key))
				var ce *keys.CreditsError
				switch {
				case err == nil:
					passed.Add(1)
					if v.Credits < 0 {
						t.Errorf("a request left %d credits", v.Credits)
					}
				case errors.As(err, &ce) && !errors.Is(err, keys.ErrRateLimited):
					refused.Add(1)
					if ce.Credits.Remaining != 0 || ce.Cost != 1 || ce.Credits.RefillsAt != nil {
						t.Errorf("refusal %+v, want 0 remaining, cost 1, no refill", ce)
					}
				default:
					t.Errorf("Verify: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if passed.Load() != budget || refused.Load() != 7*budget {
		t.Fatalf("%d passed and %d refused, want %d and %d", passed.Load(), refused.Load(), budget, 7*budget)
	}
	got, err := m.Get(context.Background(), k.ID)
	if err != nil || got.Credits == nil || got.Credits.Remaining != 0 {
		t.Fatalf("Get after the budget was spent: %+v, %v", got, err)
	}
}

// TestCreditCost: a request spends its cost, a request costing more than
// remains is refused and spends nothing, CreditCost(0) passes even on a
// spent budget, a cost out of range is the host's error, and the key
// endpoints (OutsidePlan) spend nothing.
func TestCreditCost(t *testing.T) {
	m, _ := creditFixture(t)
	k := createWithCredits(t, m, credits.Budget{Remaining: 12}, 0)
	ctx := context.Background()
	for _, want := range []int64{7, 2} {
		v, err := m.Verify(ctx, string(k.Key), keys.CreditCost(5))
		if err != nil || v.Credits != want {
			t.Fatalf("a request costing 5: %d remaining, %v; want %d", v.Credits, err, want)
		}
	}
	_, err := m.Verify(ctx, string(k.Key), keys.CreditCost(5))
	var ce *keys.CreditsError
	if !errors.As(err, &ce) || ce.Credits.Remaining != 2 || ce.Cost != 5 {
		t.Fatalf("a request costing 5 with 2 left: %v", err)
	}
	if _, err := m.Verify(ctx, string(k.Key), keys.OutsidePlan()); err != nil {
		t.Fatalf("a key endpoint's request: %v", err)
	}
	if v, err := m.Verify(ctx, string(k.Key), keys.CreditCost(2)); err != nil || v.Credits != 0 {
		t.Fatalf("a request costing what remains: %+v, %v (the refused one, or the OutsidePlan one, spent)", v.Credits, err)
	}
	if _, err := m.Verify(ctx, string(k.Key), keys.CreditCost(0)); err != nil {
		t.Fatalf("a free request on a spent budget: %v", err)
	}
	if _, err := m.Verify(ctx, string(k.Key), keys.CreditCost(credits.MaxCost)); !errors.Is(err, keys.ErrCreditsExhausted) {
		t.Fatalf("CreditCost(MaxCost) on a spent budget: %v, want a refusal for credits", err)
	}
	for _, bad := range []int64{-1, credits.MaxCost + 1} {
		if _, err := m.Verify(ctx, string(k.Key), keys.CreditCost(bad)); err == nil || errors.Is(err, keys.ErrCreditsExhausted) {
			t.Fatalf("CreditCost(%d): %v, want the host's error", bad, err)
		}
	}
}

// TestCreditsRefill: no refill unless asked for; a daily refill sets the
// budget (not adds) at UTC midnight, and the refusal before it says when.
func TestCreditsRefill(t *testing.T) {
	m, clk := creditFixture(t)
	ctx := context.Background()
	once := createWithCredits(t, m, credits.Budget{Remaining: 1}, 0)
	if once.Credits == nil || once.Credits.Refill != nil || once.Credits.RefillsAt != nil {
		t.Fatalf("a budget created without a refill shows %+v", once.Credits)
	}
	daily := createWithCredits(t, m, credits.Budget{Remaining: 2, Refill: &credits.Refill{Interval: credits.Daily, Amount: 3}}, 0)
	midnight := time.Date(2030, 1, 3, 0, 0, 0, 0, time.UTC) // the clock starts at 2030-01-02 03:04:05
	if c := daily.Credits; c == nil || c.Remaining != 2 || c.RefillsAt == nil || !c.RefillsAt.Equal(midnight) {
		t.Fatalf("created: %+v, want 2 remaining, refilled at %s", c, midnight)
	}
	for range 2 {
		if _, err := m.Verify(ctx, string(daily.Key)); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(midnight.Sub(clk.Now()) - time.Second)
	_, err := m.Verify(ctx, string(daily.Key))
	var ce *keys.CreditsError
	if !errors.As(err, &ce) || ce.RetryAfter != time.Second || !strings.HasSuffix(err.Error(), "(0 left, 1 needed) until 2030-01-03T00:00:00Z") {
		t.Fatalf("a second before midnight: %v, want a refusal retrying after 1s", err)
	}
	clk.Advance(time.Second)
	for want := int64(2); want >= 0; want-- {
		v, err := m.Verify(ctx, string(daily.Key))
		if err != nil || v.Credits != want {
			t.Fatalf("after midnight: %d remaining, %v; want %d", v.Credits, err, want)
		}
	}
	if _, err := m.Verify(ctx, string(once.Key)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(400 * 24 * time.Hour)
	if _, err := m.Verify(ctx, string(once.Key)); !errors.Is(err, keys.ErrCreditsExhausted) || !strings.HasSuffix(err.Error(), "(0 left, 1 needed)") {
		t.Fatalf("a budget without a refill, a year on: %v", err)
	}
}

// TestCreditsAreValidated: every bad credits object is a *ValidationError
// naming its field, and nothing is stored; a store without credits refuses
// them by name.
func TestCreditsAreValidated(t *testing.T) {
	m, _ := creditFixture(t)
	ctx := context.Background()
	for _, c := range []struct {
		spec  credits.Budget
		param string
	}{
		{credits.Budget{Remaining: -1}, "credits.remaining"},
		{credits.Budget{Remaining: credits.Max + 1}, "credits.remaining"},
		{credits.Budget{Remaining: 1, Refill: &credits.Refill{Interval: "weekly", Amount: 5}}, "credits.refill.interval"},
		{credits.Budget{Remaining: 1, Refill: &credits.Refill{Amount: 5}}, "credits.refill.interval"},
		{credits.Budget{Remaining: 1, Refill: &credits.Refill{Interval: credits.Monthly}}, "credits.refill.amount"},
		{credits.Budget{Remaining: 1, Refill: &credits.Refill{Interval: credits.Monthly, Amount: credits.Max + 1}}, "credits.refill.amount"},
	} {
		_, err := m.Create(ctx, keys.APIKeyCreate{Name: "x", Environment: keys.Live, AccountID: "acct_v", Credits: &c.spec})
		var ve *keys.ValidationError
		if !errors.As(err, &ve) || ve.Param != c.param {
			t.Errorf("credits %+v: %v, want a validation error on %s", c.spec, err, c.param)
		}
	}
	if l, err := m.List(ctx, keys.ListFilter{AccountID: "acct_v"}); err != nil || len(l.Data) != 0 {
		t.Fatalf("refused creates stored %d keys (%v)", len(l.Data), err)
	}
	for _, edge := range []int64{0, credits.Max} {
		if _, err := m.Create(ctx, keys.APIKeyCreate{Name: "x", Environment: keys.Live, AccountID: "acct_v", Credits: &credits.Budget{Remaining: edge}}); err != nil {
			t.Errorf("remaining %d: %v", edge, err)
		}
		if edge == 0 {
			continue // a refill of at least 1
		}
		for _, every := range []credits.Interval{credits.Daily, credits.Monthly} {
			for _, amount := range []int64{1, credits.Max} {
				spec := credits.Budget{Remaining: edge, Refill: &credits.Refill{Interval: every, Amount: amount}}
				if _, err := m.Create(ctx, keys.APIKeyCreate{Name: "x", Environment: keys.Live, AccountID: "acct_v", Credits: &spec}); err != nil {
					t.Errorf("a %s refill of %d: %v", every, amount, err)
				}
			}
		}
	}

	plain := newFixture(t) // its spy store hides memstore's credits
	_, err := plain.m.Create(ctx, keys.APIKeyCreate{Name: "x", Environment: keys.Live, AccountID: "acct_v", Credits: &credits.Budget{Remaining: 5}})
	var ve *keys.ValidationError
	if !errors.As(err, &ve) || ve.Param != "credits" {
		t.Fatalf("credits on a store without them: %v", err)
	}
}

// TestCreditsThroughTheLifecycle: a rolled key's successor shares the
// budget; an update sets it (remaining and refill) or clears it; a rate
// limit refuses before any credit is spent; list and get show it.
func TestCreditsThroughTheLifecycle(t *testing.T) {
	m, _ := creditFixture(t)
	ctx := context.Background()
	k := createWithCredits(t, m, credits.Budget{Remaining: 10}, 0)
	for range 4 {
		if _, err := m.Verify(ctx, string(k.Key)); err != nil {
			t.Fatal(err)
		}
	}
	succ, err := m.Roll(ctx, k.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if succ.Credits == nil || succ.Credits.Remaining != 6 {
		t.Fatalf("the successor shows %+v, want the shared 6", succ.Credits)
	}
	passed := 0
	for range 5 {
		for _, key := range []keys.Secret{k.Key, succ.Key} {
			if _, err := m.Verify(ctx, string(key)); err == nil {
				passed++
			}
		}
	}
	if passed != 6 {
		t.Fatalf("the old and new secrets passed %d times on a shared budget of 6", passed)
	}

	// Set again by an update, with a refill; the old secret's record
	// names the same budget.
	up, err := m.Update(ctx, succ.ID, keys.APIKeyUpdate{Credits: keys.Change(credits.Budget{Remaining: 2, Refill: &credits.Refill{Interval: credits.Monthly, Amount: 100}})})
	if err != nil || up.Credits == nil || up.Credits.Remaining != 2 || up.Credits.Refill == nil || up.Credits.RefillsAt == nil ||
		!up.Credits.RefillsAt.Equal(time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("update: %+v, %v", up, err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatalf("the old secret after the budget was set: %v", err)
	}
	list, err := m.List(ctx, keys.ListFilter{AccountID: "acct_credits"})
	if err != nil || len(list.Data) != 2 || list.Data[0].Credits == nil || list.Data[1].Credits == nil || list.Data[0].Credits.Remaining != 1 {
		t.Fatalf("list: %+v, %v; want both keys showing 1 remaining", list, err)
	}

	// Cleared: the key spends nothing, however often it is used.
	if up, err := m.Update(ctx, succ.ID, keys.APIKeyUpdate{Credits: keys.Clear[credits.Budget]()}); err != nil || up.Credits != nil {
		t.Fatalf("clearing credits: %+v, %v", up, err)
	}
	for range 5 {
		if v, err := m.Verify(ctx, string(succ.Key)); err != nil || (v.Credits != 0 || v.Spent != 0) {
			t.Fatalf("a key without credits: %+v, %v", v.Credits, err)
		}
	}

	// A rate limit refuses first: the refused request costs no credit.
	limited := createWithCredits(t, m, credits.Budget{Remaining: 10}, 2)
	for range 3 {
		_, _ = m.Verify(ctx, string(limited.Key))
	}
	if got, err := m.Get(ctx, limited.ID); err != nil || got.Credits.Remaining != 8 {
		t.Fatalf("after two requests and a 429: %+v, %v; want 8 remaining", got.Credits, err)
	}
}

// TestCreditsInTheIdempotencyFingerprint: the same idempotency key with
// other credits is a conflict, not a replay of the first key.
func TestCreditsInTheIdempotencyFingerprint(t *testing.T) {
	m, _ := creditFixture(t)
	ctx := context.Background()
	req := keys.APIKeyCreate{Name: "x", Environment: keys.Live, AccountID: "acct_i", Credits: &credits.Budget{Remaining: 5}}
	if _, err := m.Create(ctx, req, keys.IdempotencyKey("idem-credits-0001")); err != nil {
		t.Fatal(err)
	}
	again, err := m.Create(ctx, req, keys.IdempotencyKey("idem-credits-0001"))
	if err != nil || !again.Replayed || again.Credits == nil || again.Credits.Remaining != 5 {
		t.Fatalf("the same request again: %+v, %v", again, err)
	}
	req.Credits = &credits.Budget{Remaining: 5000}
	if _, err := m.Create(ctx, req, keys.IdempotencyKey("idem-credits-0001")); !errors.Is(err, keys.ErrIdempotencyConflict) {
		t.Fatalf("other credits under the same idempotency key: %v", err)
	}
}

// Credits the provider set (the Manager's own Create or Update) only the
// provider can change or remove: a principal's PATCH of them is a 403 on
// credits and changes nothing. Credits the account set, it may change.
func TestCreditsSetByTheProvider(t *testing.T) {
	m, _ := creditFixture(t)
	ctx := context.Background()
	host := createWithCredits(t, m, credits.Budget{Remaining: 10}, 0)
	as := m.As(keys.Principal{AccountID: "acct_credits", Subject: "key_admin", Permissions: keys.DefaultVocabulary()})
	for name, u := range map[string]keys.APIKeyUpdate{
		"raise":  {Credits: keys.Change(credits.Budget{Remaining: credits.Max})},
		"remove": {Credits: keys.Clear[credits.Budget]()},
		"refill": {Credits: keys.Change(credits.Budget{Remaining: 10, Refill: &credits.Refill{Interval: credits.Daily, Amount: 1000}})},
	} {
		var pe *keys.PermissionError
		if _, err := as.Update(ctx, host.ID, u); !errors.As(err, &pe) || pe.Param != "credits" {
			t.Errorf("%s the provider's credits as the account: %v, want a 403 on credits", name, err)
		}
	}
	if _, err := as.Update(ctx, host.ID, keys.APIKeyUpdate{Name: keys.Change("renamed")}); err != nil {
		t.Fatalf("another field of the same key: %v", err)
	}
	if got, err := m.Get(ctx, host.ID); err != nil || got.Credits == nil || got.Credits.Remaining != 10 || got.Credits.Refill != nil {
		t.Fatalf("after the refused changes: %+v, %v", got.Credits, err)
	}
	if _, err := m.Update(ctx, host.ID, keys.APIKeyUpdate{Credits: keys.Change(credits.Budget{Remaining: 20})}); err != nil {
		t.Fatalf("the provider changing its credits: %v", err)
	}

	own, err := as.Create(ctx, keys.APIKeyCreate{Name: "own", Environment: keys.Live, Credits: &credits.Budget{Remaining: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if up, err := as.Update(ctx, own.ID, keys.APIKeyUpdate{Credits: keys.Change(credits.Budget{Remaining: 30})}); err != nil || up.Credits.Remaining != 30 {
		t.Fatalf("the account changing its own credits: %+v, %v", up, err)
	}
	if up, err := as.Update(ctx, own.ID, keys.APIKeyUpdate{Credits: keys.Clear[credits.Budget]()}); err != nil || up.Credits != nil {
		t.Fatalf("the account removing its own credits: %+v, %v", up, err)
	}
}

// A record naming a budget on a store that keeps none (written by another
// program, or a store swapped under the keys) fails closed: Verify and Get
// answer ErrUnavailable, never a key that spends nothing.
func TestCreditsWithoutACreditStoreFailClosed(t *testing.T) {
	f := newFixture(t) // its spy store hides memstore's credits
	f.store.onCreate = func(r *store.Record) { r.CreditsID = r.ID }
	k := f.create(t, keys.APIKeyCreate{Name: "foreign budget", Environment: keys.Live})
	ctx := context.Background()
	if _, err := f.m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("Verify: %v, want ErrUnavailable", err)
	}
	if _, err := f.m.Verify(ctx, string(k.Key), keys.OutsidePlan()); err != nil {
		t.Fatalf("a key endpoint's Verify spends nothing, so it needs no budget: %v", err)
	}
	if _, err := f.m.Get(ctx, k.ID); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("Get: %v, want ErrUnavailable", err)
	}
}

// WithCreditCosts refuses a cost outside 0 to credits.MaxCost, naming the
// API, and takes both ends.
func TestWithCreditCostsRange(t *testing.T) {
	for _, n := range []int64{-1, credits.MaxCost + 1} {
		if _, err := keys.New(memstore.New(), keys.WithCreditCosts(map[string]int64{"GET /x": n})); err == nil || !strings.Contains(err.Error(), `"GET /x"`) {
			t.Errorf("WithCreditCosts(%d): %v", n, err)
		}
	}
	if _, err := keys.New(memstore.New(), keys.WithCreditCosts(map[string]int64{"GET /x": 0, "GET /y": credits.MaxCost})); err != nil {
		t.Fatal(err)
	}
}
