package httpadapter_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
)

// ledger is a limiter that keeps, beside the in-memory one it wraps, the
// net count of every counter: +1 for each request Allow lets through, -1
// for each refund.
type ledger struct {
	limit.ConcurrencyLimiter
	mu  sync.Mutex
	net map[string]int
}

func (l *ledger) add(checks limit.Checks, d int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range checks {
		if c.Max > 0 {
			l.net[fmt.Sprintf("%s %s %s", c.Name, c.ID, c.Route)] += d
		}
	}
}

func (l *ledger) Allow(ctx context.Context, checks limit.Checks, now time.Time) (limit.Status, bool, error) {
	rl, ok, err := l.ConcurrencyLimiter.Allow(ctx, checks, now)
	if ok {
		l.add(checks, 1)
	}
	return rl, ok, err
}

func (l *ledger) Refund(ctx context.Context, checks limit.Checks, now time.Time) error {
	l.add(checks, -1)
	return l.ConcurrencyLimiter.(limit.Refunder).Refund(ctx, checks, now)
}

func (l *ledger) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.net {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// A request refused for any reason spends no credit and no count of any
// limit: each refusal below comes after requests that did spend, and the
// ledger of every counter and the key's credits are the same after it as
// before it. (A request refused for concurrency used to spend both: the
// slot was taken after Verify had counted the limits and spent the
// credits; and one refused for its credits kept its limits' counts.)
func TestARefusedRequestSpendsNothing(t *testing.T) {
	plan := keys.Plan{Name: "p", PerMinute: 1000, PerDay: 10_000, Concurrent: 100,
		Endpoints: []keys.EndpointLimit{{Pattern: "GET /v1/limited", PerMinute: 1_000}}}
	cases := []struct {
		name   string
		plan   func(*keys.Plan)
		key    func(*keys.APIKeyCreate)
		opts   []httpadapter.Option
		perms  []string
		path   string
		status int
		// before brings the key to the edge of the refusal (held: the
		// requests to hold in flight during it).
		before int
		held   int
	}{
		{name: "concurrency", plan: func(p *keys.Plan) { p.Concurrent = 2 }, held: 2, status: 429},
		{name: "key rate limit", key: func(k *keys.APIKeyCreate) { k.RateLimit = intp(3) }, before: 3, status: 429},
		{name: "account minute", plan: func(p *keys.Plan) { p.PerMinute = 3 }, before: 3, status: 429},
		{name: "account day", plan: func(p *keys.Plan) { p.PerDay = 3 }, before: 3, status: 429},
		{name: "endpoint", plan: func(p *keys.Plan) { p.Endpoints[0].PerMinute = 3 }, path: "/v1/limited", before: 3, status: 429},
		{name: "credits", key: func(k *keys.APIKeyCreate) { k.Credits = &credits.Budget{Remaining: 3} }, before: 3, status: 402},
		{name: "permission", perms: []string{"identity:write"}, key: func(k *keys.APIKeyCreate) { k.Permissions = []string{"identity:read"} }, status: 403},
		{name: "ip", key: func(k *keys.APIKeyCreate) { k.AllowedIPs = []string{"203.0.113.0/24"} }, status: 401},
		{name: "environment", opts: []httpadapter.Option{httpadapter.WithEnvironment(keys.Live)}, status: 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			p := plan
			p.Endpoints = append([]keys.EndpointLimit(nil), plan.Endpoints...)
			if c.plan != nil {
				c.plan(&p)
			}
			lim := &ledger{ConcurrencyLimiter: limit.NewMemory(), net: map[string]int{}}
			m, err := keys.New(memstore.New(), keys.WithLimiter(lim),
				keys.WithPlans(func(context.Context, string) (keys.Plan, error) { return p, nil }, time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(ctx)
			create := keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: "acct_a", Permissions: keys.DefaultVocabulary(),
				Credits: &credits.Budget{Remaining: 100}}
			if c.key != nil {
				c.key(&create)
			}
			k, err := m.Create(ctx, create)
			if err != nil {
				t.Fatal(err)
			}
			a := httpadapter.New(m, c.opts...)
			release := make(chan struct{})
			entered := make(chan struct{}, c.held)
			h := a.Middleware(c.perms...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("hold") != "" {
					entered <- struct{}{}
					<-release
				}
			}))
			path := c.path
			if path == "" {
				path = "/v1/thing"
			}
			call := func(query string) int {
				r := httptest.NewRequest("GET", path+query, nil)
				r.Header.Set("Authorization", "Bearer "+string(k.Key))
				r.RemoteAddr = "198.51.100.7:1234"
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				return rec.Code
			}
			for range c.before {
				if code := call(""); code != 200 {
					t.Fatalf("a request before the refusal: %d", code)
				}
			}
			var wg sync.WaitGroup
			for range c.held {
				wg.Add(1)
				go func() { defer wg.Done(); call("?hold=1") }()
				<-entered
			}
			credits := func() int64 {
				got, err := m.Get(ctx, k.ID)
				if err != nil || got.Credits == nil {
					return -1
				}
				return got.Credits.Remaining
			}
			counters, left := lim.snapshot(), credits()
			if code := call(""); code != c.status {
				t.Fatalf("the refused request: %d, want %d", code, c.status)
			}
			if got := lim.snapshot(); !maps.Equal(got, counters) || credits() != left {
				t.Errorf("the refusal spent: counters %v → %v, credits %d → %d", counters, got, left, credits())
			}
			close(release)
			wg.Wait()
		})
	}
}
