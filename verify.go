package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/internal/verifiedctx"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/store"
)

// Verified is a key that passed Verify: who it is and what it may do, and
// the state of its limits and credits after this request. Its slices are
// shared with the store's record: read them, never change them.
type Verified struct {
	KeyID       string
	AccountID   string
	Environment Environment
	Permissions []string
	OwnerID     string          // the host's identifier of whoever the key is for; "": none
	Metadata    json.RawMessage // the key's metadata, as stored; nil: none
	// RateLimit is the state of the key's limits after this request: the
	// tightest that applied, or the one that refused it. Its Limit is 0
	// when no limit applied.
	RateLimit limit.Status
	// Spent is what this request took from the key's credits (0: none),
	// and Credits what they hold after it (when Spent > 0).
	Spent, Credits int64

	// at is when Verify ran (the Manager's clock, Unix ns), so that
	// CountUsage need not read the clock again (a read costs about 50 ns
	// here).
	at int64
	// state is the Manager's state of the key: where CountUsage counts.
	state *keyState
}

// Principal is who the verified key acts as, for Manager.As: its account,
// its ID as the Subject, its environment and (a copy of) its permissions.
func (v *Verified) Principal() Principal {
	return Principal{AccountID: v.AccountID, Subject: v.KeyID, Environment: v.Environment, Permissions: slices.Clone(v.Permissions)}
}

// Verify checks a presented key and the request's circumstances, cheapest
// check first:
//
//  1. format and checksum: a malformed or made-up key is ErrInvalidKey
//     before any hashing or store access;
//  2. digest, then one lookup by digest: unknown is ErrInvalidKey;
//  3. revoked (ErrKeyRevoked), expired (ErrKeyExpired), disabled
//     (ErrKeyDisabled), environment (ErrWrongEnvironment), IP allowlist
//     (ErrIPNotAllowed), permissions (ErrPermissionDenied);
//  4. the limits, all at once (a *RateLimitError matching ErrRateLimited,
//     naming the limit): the key's rate limit and, with WithPlans, its
//     account's per minute and per day, and its endpoint's (OnEndpoint);
//  5. credits, if the key has a budget: the request's cost is spent (1,
//     or what WithCreditCosts or CreditCost say), or a *CreditsError
//     (ErrCreditsExhausted) refuses it;
//  6. last-used time, noted in memory and flushed in batches.
//
// Any other error is the store or limiter failing (ErrUnavailable). A
// request refused at one step spends nothing at a later one. On failures
// after the lookup, the returned Verified still says which key failed, so
// the caller can log it.
//
// The store is searched by digest, never by a prefix of the key, so the
// time Verify takes depends on the digest of what was presented, which an
// attacker cannot steer toward a stored key. The final digest comparison is
// constant-time.
func (m *Manager) Verify(ctx context.Context, key string, opts ...VerifyOption) (v Verified, err error) {
	// verify fills in the result where it lies: Verified is a few hundred
	// bytes, and a copy of it on the way out is a few percent of Verify.
	if m.obs != nil {
		err = m.verifyObserved(ctx, key, opts, &v)
	} else {
		err = m.verify(ctx, key, opts, &v)
	}
	return v, err
}

// verifyObserved is Verify reported to the Observer. Every outcome is
// reported; one call in verifyTimedEvery is timed, on the monotonic clock
// alone (time.Since of an instant taken in New): a clock read costs about
// 50 ns on this machine's virtual CPUs, and two on every call would double
// what the hook costs.
func (m *Manager) verifyObserved(ctx context.Context, key string, opts []VerifyOption, v *Verified) error {
	if rand.Uint32()%verifyTimedEvery != 0 {
		err := m.verify(ctx, key, opts, v)
		m.obs.Verify(ctx, outcomeOf(err), 0)
		return err
	}
	start := time.Since(m.epoch)
	err := m.verify(ctx, key, opts, v)
	m.obs.Verify(ctx, outcomeOf(err), max(time.Since(m.epoch)-start, 1))
	return err
}

// verifyTimedEvery: one Verify in this many is timed for the Observer.
const verifyTimedEvery = 16

// verify fills in v (zero until the key is found) and returns the error.
func (m *Manager) verify(ctx context.Context, key string, opts []VerifyOption, v *Verified) error {
	if m.closed.Load() {
		return ErrClosed
	}
	var buf [maxKeyLen]byte
	var digest store.Digest
	if _, ok := m.format.parse(key, &buf); ok {
		digest = m.digest.sum(buf[:len(key)])
	} else if len(m.foreign) == 0 {
		return ErrInvalidKey // the common case: no foreign keys, no call
	} else if digest, ok = m.foreignDigest(key); !ok {
		return ErrInvalidKey
	}
	rec, err := m.store.LookupDigest(ctx, digest)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrInvalidKey
		}
		return fmt.Errorf("%w: looking up key: %w", ErrUnavailable, err)
	}
	if !digestEqual(&rec.Digest, &digest) {
		return ErrInvalidKey
	}
	now := m.now()
	v.KeyID, v.AccountID, v.Environment = rec.ID, rec.AccountID, Environment(rec.Environment)
	v.Permissions, v.OwnerID, v.Metadata, v.at = rec.Permissions, rec.OwnerID, rec.Metadata, now.UnixNano()
	if !rec.RevokedAt.IsZero() && !now.Before(rec.RevokedAt) {
		return ErrKeyRevoked
	}
	if !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt) {
		return ErrKeyExpired
	}
	if rec.Disabled != store.NotDisabled {
		return ErrKeyDisabled
	}
	if err := checkOptions(rec, opts); err != nil {
		return err
	}
	api := apiOf(opts)
	if v.state = m.states.get(&digest); v.state == nil {
		// A copy of the API name: the options must not escape (InFlight's
		// pointer would go to the heap with them), and this is once per key.
		v.state = m.states.insert(&digest, rec.ID, rec.AccountID, strings.Clone(api))
	}
	outside := (m.plans != nil || rec.CreditsID != "") && outsidePlan(opts) // read only where it matters
	// The account's plan, asked once for the slot, the limits and the
	// credits.
	var plan *planEntry
	if m.plans != nil && !outside {
		var err error
		if plan, err = m.plans.of(ctx, rec.AccountID, now); err != nil {
			return err
		}
	}
	hold, release := inFlightOf(opts), noRelease
	if hold != nil && plan != nil {
		// In flight first: a request refused for concurrency spends no
		// limit and no credit.
		var err error
		if release, err = m.acquireIn(ctx, plan, rec.AccountID, now); err != nil {
			return err
		}
	}
	if rec.RateLimit > 0 || plan != nil || rec.CreditsID != "" && !outside {
		if err := m.charge(ctx, rec, opts, plan, outside, api, now, v); err != nil {
			release()
			return err
		}
	}
	if hold != nil {
		*hold = release
	}
	m.lastUsed.note(v.state, v.at)
	return nil
}

// inFlightOf is InFlight's release pointer, set to do nothing, or nil.
func inFlightOf(opts []VerifyOption) *func() {
	for i := range opts {
		if p := opts[i].inFlight; p != nil {
			*p = noRelease
			return p
		}
	}
	return nil
}

// charge counts the request against the key's limits (and plan's, if
// one applies), then spends its credits: both, or neither. A refusal by
// the credits (or a failure to spend them) gives the limits back, when
// the limiter can refund.
func (m *Manager) charge(ctx context.Context, rec *store.Record, opts []VerifyOption, plan *planEntry, outside bool, api string, now time.Time, v *Verified) error {
	var counted limit.Checks
	if rec.RateLimit > 0 || plan != nil {
		if err := m.countLimits(ctx, rec, opts, plan, now, v, &counted); err != nil {
			return err
		}
	}
	account := plan != nil && plan.budget
	if rec.CreditsID == "" && !account || outside {
		return nil
	}
	cost, err := m.costOf(api, opts)
	if err == nil && cost > 0 {
		err = m.spendBudgets(ctx, rec, account, cost, now, v)
	}
	if err != nil {
		m.refund(ctx, &counted, now, v)
	}
	return err
}

// spendBudgets takes cost from the account's budget (if account) and the
// key's (if it names one), both or neither: the account's first, given
// back if the key's cannot pay. v.Credits is what the smaller then holds.
func (m *Manager) spendBudgets(ctx context.Context, rec *store.Record, account bool, cost int64, now time.Time, v *Verified) error {
	var spent, keySpent store.Budget
	left := int64(-1)
	if account {
		var err error
		if spent, err = m.spend(ctx, accountBudgetID(rec.AccountID), cost, now); err != nil {
			var ce *CreditsError
			if errors.As(err, &ce) {
				ce.Account = true
			}
			if errors.Is(err, store.ErrNotFound) { // removed since the plan was cached: none to spend
				account = false
			} else {
				return err
			}
		} else {
			left = spent.Remaining
		}
	}
	if rec.CreditsID != "" {
		b, err := m.spend(ctx, rec.CreditsID, cost, now)
		if err != nil {
			if account {
				// Under the caller's context without its cancellation: the
				// account's credit is given back even if the client left.
				_ = m.credits.RefundCredits(context.WithoutCancel(ctx), accountBudgetID(rec.AccountID), cost, spent.Period)
			}
			return err
		}
		if left < 0 || b.Remaining < left {
			left = b.Remaining
		}
		keySpent = b
	}
	if left >= 0 {
		v.Credits, v.Spent = left, cost
		if account {
			m.crossed(rec, "", spent, cost, now)
		}
		if rec.CreditsID != "" {
			m.crossed(rec, rec.ID, keySpent, cost, now)
		}
	}
	return nil
}

// refund gives back what countLimits counted, under the caller's context
// without its cancellation (a client that left is refunded too). A
// limiter that cannot refund, or a refund that fails, keeps the count:
// the request then spent its limits, as before refunds.
func (m *Manager) refund(ctx context.Context, counted *limit.Checks, now time.Time, v *Verified) {
	if counted[0].Max|counted[1].Max|counted[2].Max|counted[3].Max == 0 {
		return
	}
	r, ok := m.limiter.(limit.Refunder)
	if !ok {
		return
	}
	if err := r.Refund(context.WithoutCancel(ctx), *counted, now); err == nil && v.RateLimit.Limit > 0 {
		v.RateLimit.Remaining++ // the headers show the count after the refund
	}
}

// countLimits counts the request against the key's limits and the plan
// e's (nil: none applies), all at once, filling checks with what it
// counted; a refusal is a *RateLimitError. Apart from verify, so that a key without
// limits does not pay for zeroing their checks.
func (m *Manager) countLimits(ctx context.Context, rec *store.Record, opts []VerifyOption, e *planEntry, now time.Time, v *Verified, checks *limit.Checks) error {
	if rec.RateLimit > 0 {
		checks[0] = limit.Check{Name: limit.Key, ID: rec.ID, Max: rec.RateLimit}
	}
	if e != nil {
		checks[1] = limit.Check{Name: limit.AccountMinute, ID: rec.AccountID, Max: e.plan.PerMinute}
		checks[2] = limit.Check{Name: limit.AccountDay, ID: rec.AccountID, Max: e.plan.PerDay}
		if len(e.endpoints) > 0 {
			method, path := endpointOf(opts)
			if ep := e.endpoint(method, path); ep != nil {
				checks[3] = limit.Check{Name: limit.Endpoint, ID: rec.ID, Route: ep.pattern, Max: ep.limit}
			}
		}
	}
	if checks[0].Max|checks[1].Max|checks[2].Max|checks[3].Max != 0 {
		rl, allowed, err := m.limiter.Allow(ctx, *checks, now)
		if err != nil {
			return fmt.Errorf("%w: rate limiter: %w", ErrUnavailable, err)
		}
		v.RateLimit = rl
		if !allowed {
			return &RateLimitError{RateLimit: rl}
		}
	}
	return nil
}

func outsidePlan(opts []VerifyOption) bool {
	for i := range opts {
		if opts[i].outsidePlan {
			return true
		}
	}
	return false
}

// costOf is the request's cost in credits: CreditCost's, or its API's
// (WithCreditCosts), or 1.
func (m *Manager) costOf(api string, opts []VerifyOption) (int64, error) {
	cost := int64(1)
	if c, ok := m.costs[api]; ok {
		cost = c
	}
	for i := range opts {
		if opts[i].hasCost {
			cost = opts[i].cost
		}
	}
	if cost < 0 || cost > credits.MaxCost {
		return 0, fmt.Errorf("keys: CreditCost(%d) is outside 0 to %d", cost, credits.MaxCost)
	}
	return cost, nil
}

// apiOf is the request's API (OnAPI), if given.
func apiOf(opts []VerifyOption) string {
	api := ""
	for i := range opts {
		if opts[i].api != "" {
			api = opts[i].api
		}
	}
	return api
}

// endpointOf is the request's method and path (OnEndpoint), if given.
func endpointOf(opts []VerifyOption) (method, path string) {
	for i := range opts {
		if opts[i].method != "" {
			method, path = opts[i].method, opts[i].path
		}
	}
	return method, path
}

func checkOptions(rec *store.Record, opts []VerifyOption) error {
	for i := range opts {
		if env := opts[i].env; env != "" && string(env) != rec.Environment {
			return ErrWrongEnvironment
		}
	}
	if len(rec.AllowedIPs) > 0 {
		var ip netip.Addr
		for i := range opts {
			if opts[i].ip.IsValid() {
				ip = opts[i].ip
			}
		}
		if !ipAllowed(rec.AllowedIPs, ip) {
			return ErrIPNotAllowed
		}
	}
	for i := range opts {
		for _, p := range opts[i].perms {
			if !slices.Contains(rec.Permissions, p) {
				// strconv, not fmt: an argument to fmt escapes, and with it
				// (escape analysis being blind to fields) every option's
				// pointers, InFlight's included.
				return &PermissionError{Message: "the key lacks " + strconv.Quote(p)}
			}
		}
	}
	return nil
}

// ipAllowed matches ip against an allowlist. An IPv4-mapped IPv6 address is
// matched as the IPv4 address it carries (the allowlist stores those as
// IPv4 too), and a zone is ignored.
func ipAllowed(allowed []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// NewContext returns ctx carrying v, as the HTTP middleware and the gRPC
// interceptors do for the handlers behind them.
func NewContext(ctx context.Context, v Verified) context.Context {
	return &verifiedctx.Holder[Verified]{Context: ctx, V: v}
}

// FromContext returns the verified key that NewContext stored in ctx (the
// HTTP middleware and the gRPC interceptors do, for the handlers behind
// them).
func FromContext(ctx context.Context) (Verified, bool) {
	if v := verifiedctx.Get[Verified](ctx); v != nil {
		return *v, true
	}
	return Verified{}, false
}
