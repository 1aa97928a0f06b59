package keys_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/limit"
)

// planTable is a plans function over a map the test may change.
type planTable struct {
	mu    sync.Mutex
	plans map[string]keys.Plan
	asked atomic.Int64
	err   error
}

func (p *planTable) fetch(_ context.Context, account string) (keys.Plan, error) {
	p.asked.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return keys.Plan{}, p.err
	}
	return p.plans[account], nil
}

func (p *planTable) set(account string, plan keys.Plan) {
	p.mu.Lock()
	p.plans[account] = plan
	p.mu.Unlock()
}

func newPlanFixture(t *testing.T, plans map[string]keys.Plan, opts ...keys.Option) (*fixture, *planTable) {
	t.Helper()
	pt := &planTable{plans: plans}
	return newFixture(t, append([]keys.Option{keys.WithPlans(pt.fetch, time.Minute)}, opts...)...), pt
}

// refusedBy returns the limit that refused err, or fails the test.
func refusedBy(t *testing.T, err error) limit.Status {
	t.Helper()
	var rle *keys.RateLimitError
	if !errors.As(err, &rle) {
		t.Fatalf("want a *RateLimitError, got %v", err)
	}
	return rle.RateLimit
}

// An account limit of N admits exactly N requests across all of the
// account's keys, however many goroutines send them, then refuses them all,
// naming the account's limit; another account is untouched.
func TestPlanAccountLimitIsExactAcrossKeys(t *testing.T) {
	const perMinute = 50
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {Name: "free", PerMinute: perMinute}})
	ctx := context.Background()
	var ks []string
	for i := range 3 {
		ks = append(ks, string(f.create(t, keys.APIKeyCreate{Name: fmt.Sprint("k", i), Environment: keys.Test}).Key))
	}
	other := string(f.create(t, keys.APIKeyCreate{Name: "other", Environment: keys.Test, AccountID: "acct_other"}).Key)
	var passed, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			for i := range 20 {
				_, err := f.m.Verify(ctx, ks[(g+i)%3])
				switch {
				case err == nil:
					passed.Add(1)
				case errors.Is(err, keys.ErrRateLimited):
					if rl := refusedBy(t, err); rl.Name != limit.AccountMinute || rl.Limit != perMinute || rl.RetryAfter <= 0 {
						t.Errorf("refused by %v (limit %d, retry %v), want the account's per-minute limit", rl.Name, rl.Limit, rl.RetryAfter)
					}
					refused.Add(1)
				default:
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != perMinute || refused.Load() != 12*20-perMinute {
		t.Fatalf("%d passed, %d refused; want exactly %d passed", passed.Load(), refused.Load(), perMinute)
	}
	for range 100 {
		if _, err := f.m.Verify(ctx, other); err != nil {
			t.Fatalf("an account without a plan was limited: %v", err)
		}
	}
}

// A request refused by one limit is counted by none: a key over its own
// limit does not spend its account's.
func TestPlanChecksAreAllOrNothing(t *testing.T) {
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerMinute: 5, PerDay: 1000}})
	ctx := context.Background()
	a := string(f.create(t, keys.APIKeyCreate{Name: "a", Environment: keys.Test, RateLimit: intp(2)}).Key)
	b := string(f.create(t, keys.APIKeyCreate{Name: "b", Environment: keys.Test}).Key)
	for i := range 10 {
		_, err := f.m.Verify(ctx, a)
		if i < 2 && err != nil || i >= 2 && refusedBy(t, err).Name != limit.Key {
			t.Fatalf("key a, request %d: %v", i, err)
		}
	}
	for i := range 4 {
		_, err := f.m.Verify(ctx, b)
		if i < 3 && err != nil || i == 3 && refusedBy(t, err).Name != limit.AccountMinute {
			t.Fatalf("key b, request %d: %v (a's 8 refusals must not have spent the account's 5)", i, err)
		}
	}
	v, err := f.m.Verify(ctx, b)
	if err == nil {
		t.Fatal("passed over the account's limit")
	}
	// The day counted only the 5 that passed.
	f.clock.Advance(time.Minute)
	v, err = f.m.Verify(ctx, b)
	if err != nil || v.RateLimit.Name != limit.AccountMinute || v.RateLimit.Remaining != 4 {
		t.Fatalf("a minute on: %v %+v", err, v.RateLimit)
	}
}

// The day quota counts a UTC calendar day exactly: N pass (concurrently),
// the next is refused until 00:00:00 UTC, naming the day's quota, with
// Reset and RetryAfter at midnight; 1 ns before midnight it is still
// refused, at midnight it passes.
func TestPlanDayQuotaIsAUTCDay(t *testing.T) {
	const perDay = 100
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerDay: perDay}})
	ctx := context.Background()
	key := string(f.create(t, keys.APIKeyCreate{Name: "day", Environment: keys.Test}).Key)
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := f.m.Verify(ctx, key); err == nil {
					passed.Add(1)
				} else if !errors.Is(err, keys.ErrRateLimited) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != perDay {
		t.Fatalf("%d passed, want %d", passed.Load(), perDay)
	}
	now := f.clock.Now()
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	_, err := f.m.Verify(ctx, key)
	rl := refusedBy(t, err)
	if rl.Name != limit.AccountDay || !rl.Reset.Equal(midnight) || rl.RetryAfter != midnight.Sub(now) || rl.Name.Window() != (24*time.Hour) {
		t.Fatalf("refusal %+v, want the day's quota until %v", rl, midnight)
	}
	f.clock.Advance(midnight.Sub(now) - 1)
	if _, err := f.m.Verify(ctx, key); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("1 ns before midnight: %v", err)
	}
	f.clock.Advance(1)
	v, err := f.m.Verify(ctx, key)
	if err != nil || v.RateLimit.Remaining != perDay-1 || !v.RateLimit.Reset.Equal(midnight.Add((24 * time.Hour))) {
		t.Fatalf("at midnight: %v %+v", err, v.RateLimit)
	}
}

// The headers' limit is the tightest that applied: the one with the fewest
// requests remaining.
func TestPlanReportsTheTightestLimit(t *testing.T) {
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerMinute: 60, PerDay: 3}})
	ctx := context.Background()
	limited := string(f.create(t, keys.APIKeyCreate{Name: "own", Environment: keys.Test, RateLimit: intp(10)}).Key)
	v, err := f.m.Verify(ctx, limited)
	// key 9 left, account 59, day 2: the day is tightest.
	if err != nil || v.RateLimit.Name != limit.AccountDay || v.RateLimit.Remaining != 2 || v.RateLimit.Limit != 3 {
		t.Fatalf("%v %+v", err, v.RateLimit)
	}
	f2, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerMinute: 60, PerDay: 1000}})
	limited = string(f2.create(t, keys.APIKeyCreate{Name: "own", Environment: keys.Test, RateLimit: intp(10)}).Key)
	open := string(f2.create(t, keys.APIKeyCreate{Name: "open", Environment: keys.Test}).Key)
	if v, err = f2.m.Verify(ctx, limited); err != nil || v.RateLimit.Name != limit.Key || v.RateLimit.Remaining != 9 {
		t.Fatalf("key 9, account 59, day 999: %v %+v", err, v.RateLimit)
	}
	if v, err = f2.m.Verify(ctx, open); err != nil || v.RateLimit.Name != limit.AccountMinute || v.RateLimit.Remaining != 58 {
		t.Fatalf("account 58, day 998: %v %+v", err, v.RateLimit)
	}
}

// A key's own rate_limit may only lower its plan's: above it is a 400 on
// rate_limit for a create and an update, by the host or a principal, and
// nothing changes; the Manager's default is brought down to the plan.
func TestKeyRateLimitCannotExceedPlan(t *testing.T) {
	f, pt := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerMinute: 60}}, keys.WithDefaultRateLimit(1000))
	ctx := context.Background()
	var ve *keys.ValidationError
	if _, err := f.m.Create(ctx, keys.APIKeyCreate{AccountID: "acct_test", Name: "over", Environment: keys.Test, RateLimit: intp(61)}); !errors.As(err, &ve) || ve.Param != "rate_limit" {
		t.Fatalf("rate_limit 61 under a plan of 60: %v", err)
	}
	p := keys.Principal{AccountID: "acct_test", Subject: "key_x", Environment: keys.Test, Permissions: keys.DefaultVocabulary()}
	if _, err := f.m.As(p).Create(ctx, keys.APIKeyCreate{Name: "over", Environment: keys.Test, RateLimit: intp(61)}); !errors.As(err, &ve) || ve.Param != "rate_limit" {
		t.Fatalf("a principal's rate_limit 61: %v", err)
	}
	if page, _ := f.m.List(ctx, keys.ListFilter{AccountID: "acct_test"}); len(page.Data) != 0 {
		t.Fatalf("a refused create stored %d keys", len(page.Data))
	}
	at := f.create(t, keys.APIKeyCreate{Name: "at", Environment: keys.Test, RateLimit: intp(60)})
	def := f.create(t, keys.APIKeyCreate{Name: "default", Environment: keys.Test})
	if *at.RateLimit != 60 || def.RateLimit == nil || *def.RateLimit != 60 {
		t.Fatalf("rate limits %v and %v, want 60 and the default brought down to 60", *at.RateLimit, def.RateLimit)
	}
	if _, err := f.m.As(p).Update(ctx, at.ID, keys.APIKeyUpdate{RateLimit: keys.Change(61)}); !errors.As(err, &ve) || ve.Param != "rate_limit" {
		t.Fatalf("an update to 61: %v", err)
	}
	if k, _ := f.m.Get(ctx, at.ID); *k.RateLimit != 60 {
		t.Fatalf("a refused update changed rate_limit to %d", *k.RateLimit)
	}
	if k, err := f.m.As(p).Update(ctx, at.ID, keys.APIKeyUpdate{RateLimit: keys.Clear[int]()}); err != nil || k.RateLimit != nil {
		t.Fatalf("clearing the key's own limit (the plan's still holds): %v", err)
	}
	if _, err := f.m.As(p).Update(ctx, at.ID, keys.APIKeyUpdate{RateLimit: keys.Change(30)}); err != nil {
		t.Fatalf("lowering: %v", err)
	}
	// A plan raised: the new ceiling applies once the answer is renewed.
	pt.set("acct_test", keys.Plan{PerMinute: 100})
	f.m.InvalidatePlan("acct_test")
	if _, err := f.m.As(p).Update(ctx, at.ID, keys.APIKeyUpdate{RateLimit: keys.Change(100)}); err != nil {
		t.Fatalf("up to a raised plan: %v", err)
	}
}

// The plan's MaxKeys replaces the Manager's cap for its account.
func TestPlanMaxKeys(t *testing.T) {
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {MaxKeys: 2}})
	ctx := context.Background()
	for i := range 3 {
		_, err := f.m.Create(ctx, keys.APIKeyCreate{AccountID: "acct_test", Name: fmt.Sprint("k", i), Environment: keys.Test})
		if i < 2 && err != nil || i == 2 && !errors.Is(err, keys.ErrKeyLimit) {
			t.Fatalf("key %d: %v", i, err)
		}
	}
	if _, err := f.m.Create(ctx, keys.APIKeyCreate{AccountID: "acct_free", Name: "k", Environment: keys.Test}); err != nil {
		t.Fatal(err)
	}
}

// Plans are asked once per ttl per account, at once after InvalidatePlan;
// a failing plans function fails closed with no answer at hand, and an earlier
// answer stands when it has one.
func TestPlanCache(t *testing.T) {
	f, pt := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerMinute: 1000}})
	ctx := context.Background()
	key := string(f.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test}).Key)
	pt.asked.Store(0)
	for range 100 {
		if _, err := f.m.Verify(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if n := pt.asked.Load(); n != 0 {
		t.Fatalf("asked %d times within the ttl (the create cached the answer)", n)
	}
	pt.set("acct_test", keys.Plan{PerMinute: 1000, PerDay: 100})
	if v, _ := f.m.Verify(ctx, key); v.RateLimit.Name == limit.AccountDay {
		t.Fatal("the new plan applied before its ttl or an invalidation")
	}
	f.m.InvalidatePlan("acct_test")
	if v, err := f.m.Verify(ctx, key); err != nil || v.RateLimit.Name != limit.AccountDay || v.RateLimit.Limit != 100 {
		t.Fatalf("after InvalidatePlan: %v %+v", err, v.RateLimit)
	}
	pt.mu.Lock()
	pt.err = errors.New("billing down")
	pt.mu.Unlock()
	f.clock.Advance(2 * time.Minute)
	if v, err := f.m.Verify(ctx, key); err != nil || v.RateLimit.Limit != 100 {
		t.Fatalf("with the plans function failing, the earlier answer stands: %v %+v", err, v.RateLimit)
	}
	// Working again, and changed: the change applies once the ttl has
	// passed, without an invalidation (the failed ask retries in a second).
	pt.mu.Lock()
	pt.err = nil
	pt.plans["acct_test"] = keys.Plan{PerDay: 50}
	pt.mu.Unlock()
	if v, _ := f.m.Verify(ctx, key); v.RateLimit.Limit != 100 {
		t.Fatalf("asked again within a second of a failure: %+v", v.RateLimit)
	}
	f.clock.Advance(time.Second)
	if v, err := f.m.Verify(ctx, key); err != nil || v.RateLimit.Limit != 50 {
		t.Fatalf("a second after the failed ask: %v %+v", err, v.RateLimit)
	}
}

// Without an answer at hand, a failing or invalid plan fails closed.
func TestPlanFailsClosed(t *testing.T) {
	for name, pt := range map[string]*planTable{
		"error":   {err: errors.New("billing down")},
		"invalid": {plans: map[string]keys.Plan{"acct_test": {PerMinute: -1}}},
		"pattern": {plans: map[string]keys.Plan{"acct_test": {Endpoints: []keys.EndpointLimit{{Pattern: "/no-method", PerMinute: 1}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			store := newFixture(t) // a Manager without plans makes the key
			key := string(store.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test}).Key)
			m, err := keys.New(store.store, keys.WithPlans(pt.fetch, time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			if _, err := m.Verify(context.Background(), key); !errors.Is(err, keys.ErrUnavailable) {
				t.Fatalf("want ErrUnavailable, got %v", err)
			}
			if _, err := m.Create(context.Background(), keys.APIKeyCreate{AccountID: "acct_test", Name: "k", Environment: keys.Test}); !errors.Is(err, keys.ErrUnavailable) {
				t.Fatalf("create: want ErrUnavailable, got %v", err)
			}
		})
	}
}

// An endpoint's limit is per key and per endpoint, and only requests to
// that endpoint count against it.
func TestPlanEndpointLimit(t *testing.T) {
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerMinute: 1000, Endpoints: []keys.EndpointLimit{
		{Pattern: "POST /identity/verify", PerMinute: 3},
		{Pattern: "GET /*/analytics/*", PerMinute: 2},
	}}})
	ctx := context.Background()
	a := string(f.create(t, keys.APIKeyCreate{Name: "a", Environment: keys.Test}).Key)
	b := string(f.create(t, keys.APIKeyCreate{Name: "b", Environment: keys.Test}).Key)
	verify := keys.OnEndpoint("POST", "/identity/verify")
	for i := range 4 {
		_, err := f.m.Verify(ctx, a, verify)
		if i < 3 && err != nil || i == 3 && refusedBy(t, err).Name != limit.Endpoint {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if _, err := f.m.Verify(ctx, b, verify); err != nil {
		t.Fatalf("another key's endpoint counter: %v", err)
	}
	for _, ok := range []keys.VerifyOption{keys.OnEndpoint("GET", "/identity/verify"), keys.OnEndpoint("POST", "/identity/verify/x"), keys.OnEndpoint("POST", "/transactions/score")} {
		if _, err := f.m.Verify(ctx, a, ok); err != nil {
			t.Fatalf("%+v: %v", ok, err)
		}
	}
	analytics := keys.OnEndpoint("GET", "/fraud/analytics/daily/2026")
	for i := range 3 {
		_, err := f.m.Verify(ctx, a, analytics)
		if i < 2 && err != nil || i == 2 && refusedBy(t, err).Name != limit.Endpoint {
			t.Fatalf("analytics %d: %v", i, err)
		}
	}
}

func TestEndpointPatterns(t *testing.T) {
	for _, c := range []struct {
		pattern, method, path string
		match                 bool
	}{
		{"POST /identity/verify", "POST", "/identity/verify", true},
		{"POST /identity/verify", "POST", "/identity/verify/", true},
		{"POST /identity/verify", "GET", "/identity/verify", false},
		{"POST /identity/verify", "POST", "/identity/verified", false},
		{"POST /identity/verify", "POST", "/identity", false},
		{"POST /identity/verify", "POST", "/identity/verify/more", false},
		{"* /identity/verify", "DELETE", "/identity/verify", true},
		{"GET /*/analytics/*", "GET", "/fraud/analytics/daily", true},
		{"GET /*/analytics/*", "GET", "/fraud/analytics/daily/2026", true},
		{"GET /*/analytics/*", "GET", "/fraud/analytics", false},
		{"GET /*/analytics/*", "GET", "/fraud/analytics/", false},
		{"GET /*/analytics/*", "GET", "//analytics/daily", false},
		{"GET /*/analytics", "GET", "/a/analytics", true},
		{"GET /*/analytics", "GET", "/a/b/analytics", false},
		{"GET /a", "GET", "a", false},
		{"GET /a", "GET", "", false},
	} {
		got := keys.EndpointMatches(c.pattern, c.method, c.path)
		if got != c.match {
			t.Errorf("%q against %s %q: %v, want %v", c.pattern, c.method, c.path, got, c.match)
		}
	}
}

// Concurrency never exceeds the plan's burst, refusals name it, and
// capacity comes back when slots are released.
func TestPlanConcurrency(t *testing.T) {
	const burst = 5
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {Concurrent: burst}})
	ctx := context.Background()
	key := string(f.create(t, keys.APIKeyCreate{Name: "c", Environment: keys.Test}).Key)
	var inFlight, peak, admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				v, err := f.m.Verify(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				release, err := f.m.Acquire(ctx, &v)
				if err != nil {
					if rl := refusedBy(t, err); rl.Name != limit.Concurrency || rl.Limit != burst {
						t.Errorf("refused by %+v", rl)
					}
					refused.Add(1)
					continue
				}
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				admitted.Add(1)
				time.Sleep(50 * time.Microsecond)
				inFlight.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if peak.Load() > burst || peak.Load() < 2 || refused.Load() == 0 {
		t.Fatalf("peak %d in flight (burst %d), %d admitted, %d refused", peak.Load(), burst, admitted.Load(), refused.Load())
	}
	// All released: the whole burst is available again.
	v, _ := f.m.Verify(ctx, key)
	var releases []func()
	for i := range burst {
		release, err := f.m.Acquire(ctx, &v)
		if err != nil {
			t.Fatalf("slot %d after every release: %v", i, err)
		}
		releases = append(releases, release)
	}
	if _, err := f.m.Acquire(ctx, &v); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("slot %d: %v", burst+1, err)
	}
	for _, release := range releases {
		release()
	}
	if _, err := f.m.Acquire(ctx, &v); err != nil {
		t.Fatal(err)
	}
}

// Requests that find no answer for their account at once ask the plans function
// once between them.
func TestPlanFirstAskIsShared(t *testing.T) {
	f := newFixture(t) // a Manager without plans makes the key
	key := string(f.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test}).Key)
	var asked atomic.Int64
	release := make(chan struct{})
	slow := func(context.Context, string) (keys.Plan, error) {
		asked.Add(1)
		<-release
		return keys.Plan{PerMinute: 1000}, nil
	}
	m, err := keys.New(f.store, keys.WithPlans(slow, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if v, err := m.Verify(context.Background(), key); err != nil || v.RateLimit.Limit != 1000 {
				t.Errorf("%v %+v", err, v.RateLimit)
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); asked.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nobody asked")
		}
	}
	time.Sleep(20 * time.Millisecond) // the others arrive and wait
	close(release)
	wg.Wait()
	if n := asked.Load(); n != 1 {
		t.Fatalf("50 concurrent first requests asked the plans function %d times", n)
	}
}

// OutsidePlan leaves a request out of the account's plan (the key
// endpoints use it): with the account's minute spent, such requests still
// pass, and spend nothing of the plan; the key's own limit still applies.
func TestOutsidePlanSkipsThePlan(t *testing.T) {
	f, _ := newPlanFixture(t, map[string]keys.Plan{"acct_test": {PerMinute: 2, PerDay: 1000}})
	ctx := context.Background()
	k := string(f.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test, RateLimit: intp(2)}).Key)
	other := string(f.create(t, keys.APIKeyCreate{Name: "other", Environment: keys.Test}).Key)
	for range 2 {
		if _, err := f.m.Verify(ctx, other); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.m.Verify(ctx, other); refusedBy(t, err).Name != limit.AccountMinute {
		t.Fatalf("the account's minute: %v", err)
	}
	for i := range 2 {
		if v, err := f.m.Verify(ctx, k, keys.OutsidePlan()); err != nil || v.RateLimit.Name != limit.Key {
			t.Fatalf("outside the plan, request %d: %+v, %v", i, v.RateLimit, err)
		}
	}
	if _, err := f.m.Verify(ctx, k, keys.OutsidePlan()); refusedBy(t, err).Name != limit.Key {
		t.Fatalf("the key's own limit outside the plan: %v", err)
	}
}
