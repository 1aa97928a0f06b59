package keys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys/limit"
)

// Plan is what an account may do. The provider (the host) sets it, through
// the function given to WithPlans; no request of the account's can change
// it. Every key of the account counts against its limits together. 0, in
// any field, is no limit.
//
// PerDay counts a UTC calendar day, 00:00:00 UTC to the next, exactly:
// "1,000 requests a day" then means what a customer reads it as, the
// count starts again at one instant every client can know in advance
// (X-RateLimit-Reset), and the count is one integer per account per day.
// A rolling 24 hours would refill a request at a time, at a different
// moment for every account, and a customer who used the day's requests in
// the morning could not tell when the next one comes.
type Plan struct {
	Name string
	// PerMinute is requests per minute, all the account's keys together.
	// A key's own rate_limit may only be lower: a create or update asking
	// for more is a *ValidationError on rate_limit.
	PerMinute int
	// PerDay is requests per UTC day, all the account's keys together.
	PerDay int
	// Concurrent is requests in flight at once (Verify with InFlight,
	// which the HTTP middleware and the gRPC interceptors pass, or
	// Manager.Acquire).
	Concurrent int
	// MaxKeys is how many active keys the account may hold; 0: the
	// Manager's WithMaxKeysPerAccount.
	MaxKeys int
	// Endpoints are limits of their own on some endpoints, per key. A
	// request counts against the first whose pattern it matches.
	Endpoints []EndpointLimit
}

// EndpointLimit limits one endpoint, per key, per minute.
type EndpointLimit struct {
	// Pattern is "METHOD /path": the method ("*": any), a space, and the
	// path's segments, each literal or "*". A "*" matches one segment,
	// except a final one, which matches one or more: "GET
	// /*/analytics/*" matches GET /identity/analytics/daily/2026.
	Pattern   string
	PerMinute int
}

// maxEndpointLimits bounds Plan.Endpoints: each is matched on every
// request of the account.
const maxEndpointLimits = 16

// errInvalidPlan is a plan that cannot be applied (a negative limit, a
// malformed pattern). Requests that need it fail with ErrUnavailable: a
// host's mistake must not lift a customer's limits.
var errInvalidPlan = errors.New("keys: invalid plan")

// plans caches the answers of WithPlans' function per account.
type plans struct {
	fetch func(ctx context.Context, accountID string) (Plan, error)
	// budget reports whether the account has a budget of its own
	// (SetAccountCredits), asked with the plan and cached with it.
	budget  func(ctx context.Context, accountID string, now time.Time) (bool, error)
	ttl     int64
	entries sync.Map // account → *planEntry
	asking  sync.Map // account → *planCall: the first answer, asked once
}

// planCall is an account's first ask, which concurrent requests wait for
// instead of each asking the host (a burst at start-up must not become
// a burst on the billing database).
type planCall struct {
	done  chan struct{}
	entry *planEntry
	err   error
}

type planEntry struct {
	plan      Plan
	budget    bool // the account has a budget of its own
	endpoints []endpointPattern
	fetched   atomic.Int64 // Unix ns, on the Manager's clock
	asking    atomic.Bool
}

type endpointPattern struct {
	pattern  string // as the plan gives it: the endpoint's counter
	method   string // "" for any
	segments []string
	limit    int
}

// of returns the account's plan, asking the host when it has no answer or
// its answer is older than the TTL.
func (p *plans) of(ctx context.Context, account string, now time.Time) (*planEntry, error) {
	t := now.UnixNano()
	v, ok := p.entries.Load(account)
	if ok {
		e := v.(*planEntry)
		if t-e.fetched.Load() < p.ttl || !e.asking.CompareAndSwap(false, true) {
			return e, nil
		}
		// This request asks again; on failure the old answer stands.
		fresh, err := p.ask(ctx, account, t)
		if err != nil {
			e.fetched.Store(t - p.ttl + int64(time.Second)) // ask again in a second
			e.asking.Store(false)
			return e, nil
		}
		p.entries.Store(account, fresh)
		return fresh, nil
	}
	c := &planCall{done: make(chan struct{})}
	if v, loaded := p.asking.LoadOrStore(account, c); loaded {
		c = v.(*planCall)
		select {
		case <-c.done:
			return c.entry, c.err
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for the plan of account %s: %w", ErrUnavailable, account, ctx.Err())
		}
	}
	if v, ok := p.entries.Load(account); ok { // answered just before
		c.entry = v.(*planEntry)
	} else {
		c.entry, c.err = p.ask(ctx, account, t)
	}
	if c.err == nil {
		p.entries.Store(account, c.entry)
	}
	p.asking.Delete(account)
	close(c.done)
	return c.entry, c.err
}

func (p *plans) ask(ctx context.Context, account string, t int64) (*planEntry, error) {
	plan, err := p.fetch(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("%w: the plan of account %s: %w", ErrUnavailable, account, err)
	}
	e, err := compilePlan(plan)
	if err != nil {
		return nil, fmt.Errorf("%w: the plan of account %s: %w", ErrUnavailable, account, err)
	}
	if p.budget != nil {
		if e.budget, err = p.budget(ctx, account, time.Unix(0, t)); err != nil {
			return nil, fmt.Errorf("%w: the credits of account %s: %w", ErrUnavailable, account, err)
		}
	}
	e.fetched.Store(t)
	return e, nil
}

func compilePlan(plan Plan) (*planEntry, error) {
	for _, n := range []int{plan.PerMinute, plan.PerDay, plan.Concurrent, plan.MaxKeys} {
		if n < 0 || n > maxRateLimit {
			return nil, fmt.Errorf("%w: a limit of %d (from 0 to %d)", errInvalidPlan, n, maxRateLimit)
		}
	}
	if len(plan.Endpoints) > maxEndpointLimits {
		return nil, fmt.Errorf("%w: %d endpoint limits (at most %d)", errInvalidPlan, len(plan.Endpoints), maxEndpointLimits)
	}
	e := &planEntry{plan: plan}
	e.plan.Endpoints = append([]EndpointLimit(nil), plan.Endpoints...)
	for _, el := range plan.Endpoints {
		ep, err := parseEndpointPattern(el.Pattern)
		if err != nil {
			return nil, err
		}
		if el.PerMinute < 1 || el.PerMinute > maxRateLimit {
			return nil, fmt.Errorf("%w: endpoint %q: a limit of %d (from 1 to %d)", errInvalidPlan, el.Pattern, el.PerMinute, maxRateLimit)
		}
		ep.limit = el.PerMinute
		e.endpoints = append(e.endpoints, ep)
	}
	return e, nil
}

func parseEndpointPattern(s string) (endpointPattern, error) {
	method, path, ok := strings.Cut(s, " ")
	if !ok || method == "" || !strings.HasPrefix(path, "/") || len(path) < 2 || len(s) > 256 {
		return endpointPattern{}, fmt.Errorf("%w: endpoint pattern %q is not \"METHOD /path\"", errInvalidPlan, s)
	}
	ep := endpointPattern{pattern: s, segments: strings.Split(path[1:], "/")}
	if method != "*" {
		ep.method = method
	}
	for _, seg := range ep.segments {
		if seg == "" || strings.ContainsAny(seg, " ?#") || seg != "*" && strings.Contains(seg, "*") {
			return endpointPattern{}, fmt.Errorf("%w: endpoint pattern %q has an empty or malformed segment (\"*\" stands alone)", errInvalidPlan, s)
		}
	}
	return ep, nil
}

// match reports whether a request's method and path match the pattern,
// walking the path in place (no allocation).
func (ep *endpointPattern) match(method, path string) bool {
	if ep.method != "" && ep.method != method {
		return false
	}
	if !strings.HasPrefix(path, "/") {
		return false
	}
	rest := path[1:]
	for i, seg := range ep.segments {
		if rest == "" {
			return false
		}
		if seg == "*" && i == len(ep.segments)-1 {
			return true // a final "*": one segment or more
		}
		next, after, more := strings.Cut(rest, "/")
		if next == "" || seg != "*" && seg != next {
			return false
		}
		if i == len(ep.segments)-1 {
			return !more || after == ""
		}
		if !more {
			return false
		}
		rest = after
	}
	return false
}

// endpoint is the first endpoint limit matching the request, or nil.
func (e *planEntry) endpoint(method, path string) *endpointPattern {
	if method == "" {
		return nil
	}
	for i := range e.endpoints {
		if e.endpoints[i].match(method, path) {
			return &e.endpoints[i]
		}
	}
	return nil
}

// InvalidatePlan drops this instance's answer for the account's plan: the
// next request asks WithPlans' function. Call it when a plan changes, on every
// instance (or let WithPlans' ttl bring the change).
func (m *Manager) InvalidatePlan(accountID string) {
	if m.plans != nil {
		m.plans.entries.Delete(accountID)
	}
}

// PlanOf returns the account's plan, as this instance applies it. Without
// WithPlans every account has the zero Plan.
func (m *Manager) PlanOf(ctx context.Context, accountID string) (Plan, error) {
	if m.plans == nil {
		return Plan{}, nil
	}
	e, err := m.plans.of(ctx, accountID, m.now())
	if err != nil {
		return Plan{}, err
	}
	p := e.plan
	p.Endpoints = append([]EndpointLimit(nil), e.plan.Endpoints...)
	return p, nil
}

// planLimits holds a key's rate_limit to its account's plan: one asked
// for above the plan's PerMinute is refused, and the Manager's default
// (asked false) is brought down to it. It returns the rate limit and the
// active-key cap that apply.
func (m *Manager) planLimits(ctx context.Context, account string, rateLimit int, asked bool) (int, int, error) {
	if m.plans == nil {
		return rateLimit, m.maxKeys, nil
	}
	e, err := m.plans.of(ctx, account, m.now())
	if err != nil {
		return 0, 0, err
	}
	if pm := e.plan.PerMinute; pm > 0 && rateLimit > pm {
		if asked {
			return 0, 0, invalid("rate_limit", "rate_limit may not exceed the account's plan, %d requests per minute", pm)
		}
		rateLimit = pm
	}
	if e.plan.MaxKeys > 0 {
		return rateLimit, e.plan.MaxKeys, nil
	}
	return rateLimit, m.maxKeys, nil
}

func noRelease() {}

// Acquire counts a verified request against its account's plan's
// Concurrent limit, and returns the function that gives its place back:
// call it once, when the request ends (defer it, so that a panic gives it
// back too). Over the limit it is a *RateLimitError naming
// limit.Concurrency (retry after a second). Without plans, or with no
// Concurrent limit, it counts nothing, and release does nothing.
//
// It is for a caller verified elsewhere (a host's authenticator). A key
// is counted in flight by Verify itself, with InFlight, before its limits
// and credits: a request Acquire refuses after Verify has already spent
// them.
func (m *Manager) Acquire(ctx context.Context, v *Verified) (release func(), err error) {
	if m.plans == nil || v == nil || v.AccountID == "" {
		return noRelease, nil
	}
	return m.acquire(ctx, v.AccountID, m.now())
}

// acquire counts a request of account in flight, if its plan limits that.
func (m *Manager) acquire(ctx context.Context, account string, now time.Time) (release func(), err error) {
	e, err := m.plans.of(ctx, account, now)
	if err != nil {
		return noRelease, err
	}
	return m.acquireIn(ctx, e, account, now)
}

// acquireIn counts a request of account in flight under its plan e.
func (m *Manager) acquireIn(ctx context.Context, e *planEntry, account string, now time.Time) (release func(), err error) {
	max := e.plan.Concurrent
	if max == 0 {
		return noRelease, nil
	}
	cl, ok := m.limiter.(limit.ConcurrencyLimiter)
	if !ok {
		return noRelease, fmt.Errorf("%w: the limiter cannot count requests in flight (it is no limit.ConcurrencyLimiter)", ErrUnavailable)
	}
	lease, ok, err := cl.Acquire(ctx, account, max, now)
	if err != nil {
		return noRelease, fmt.Errorf("%w: rate limiter: %w", ErrUnavailable, err)
	}
	if !ok {
		return noRelease, &RateLimitError{RateLimit: limit.Status{Name: limit.Concurrency, Limit: max, Reset: now.Add(time.Second), RetryAfter: time.Second}}
	}
	return func() {
		// Not the request's context, which may be cancelled already: a
		// shared limiter bounds the call by its client's own timeouts,
		// and a lost release ends when its lease does.
		_ = cl.Release(context.Background(), lease)
	}, nil
}
