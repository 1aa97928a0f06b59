package keys

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"
)

// Verified is a key that passed Verify.
type Verified struct {
	// Key is the stored record. It is read-only and may be shared with the
	// store (Clone it to get a copy of your own).
	Key *Record
	// RateLimit is the key's rate-limit state after this request; its
	// Limit is 0 when the key has no limit.
	RateLimit RateLimit
	// Credits is the key's credit budget after this request's spend
	// (Record.CreditsID); zero when the key has none or the request cost
	// nothing (CreditCost(0), OutsidePlan).
	Credits Credits
	// Spent is what this request took from the key's credits (0: none).
	Spent int64
	// at is when Verify ran (the Manager's clock), so that CountUsage
	// need not read the clock again (a read costs about 50 ns here).
	at time.Time
}

// Principal is who the verified key acts as, for Manager.As: its account,
// its ID as the Subject, its environment and (a copy of) its permissions.
func (v *Verified) Principal() Principal {
	r := v.Key
	return Principal{AccountID: r.AccountID, Subject: r.ID, Environment: r.Environment, Permissions: slices.Clone(r.Permissions)}
}

// Verify checks a presented key and the request's circumstances, cheapest
// check first:
//
//  1. format and checksum: a malformed or made-up key is ErrInvalidKey
//     before any hashing or store access;
//  2. digest, then one lookup by digest: unknown is ErrInvalidKey;
//  3. revoked (ErrKeyRevoked), expired (ErrKeyExpired), disabled
//     (ErrKeyDisabled), environment
//     (ErrWrongEnvironment), IP allowlist (ErrIPNotAllowed), permissions
//     (ErrPermissionDenied);
//  4. the limits, all at once (a *RateLimitError matching ErrRateLimited,
//     naming the limit): the key's rate limit and, with WithPlans, its
//     account's per minute and per day, and its endpoint's (OnEndpoint);
//  5. credits, if the key has a budget: the request's cost (CreditCost, default
//  1. is spent, or a *CreditsError (ErrCreditsExhausted) refuses it;
//  6. last-used time, noted in memory and flushed in batches.
//
// Any other error is the store or limiter failing; it matches none of the
// sentinels. On failures after the lookup, the returned Verified still
// carries the record so the caller can log which key failed.
//
// The store is searched by digest, never by a prefix of the key, so the
// time Verify takes depends on the digest of what was presented, which an
// attacker cannot steer toward a stored key. The final digest comparison is
// constant-time.
func (m *Manager) Verify(ctx context.Context, key string, opts ...VerifyOption) (Verified, error) {
	if m.obs != nil {
		return m.verifyObserved(ctx, key, opts)
	}
	return m.verify(ctx, key, opts)
}

// verifyObserved is Verify reported to the Observer. Every outcome is
// reported; one call in verifyTimedEvery is timed, on the monotonic clock
// alone (time.Since of an instant taken in New): a clock read costs about
// 50 ns on this machine's virtual CPUs, and two on every call would double
// what the hook costs.
func (m *Manager) verifyObserved(ctx context.Context, key string, opts []VerifyOption) (Verified, error) {
	if rand.Uint32()%verifyTimedEvery != 0 {
		v, err := m.verify(ctx, key, opts)
		m.obs.Verify(ctx, OutcomeOf(err), 0)
		return v, err
	}
	start := time.Since(m.epoch)
	v, err := m.verify(ctx, key, opts)
	m.obs.Verify(ctx, OutcomeOf(err), max(time.Since(m.epoch)-start, 1))
	return v, err
}

// verifyTimedEvery: one Verify in this many is timed for the Observer.
const verifyTimedEvery = 16

func (m *Manager) verify(ctx context.Context, key string, opts []VerifyOption) (Verified, error) {
	if m.closed.Load() {
		return Verified{}, ErrClosed
	}
	var buf [maxKeyLen]byte
	var digest Digest
	if _, ok := m.format.parse(key, &buf); ok {
		digest = m.digest.sum(buf[:len(key)])
	} else if len(m.foreign) == 0 {
		return Verified{}, ErrInvalidKey // the common case: no foreign keys, no call
	} else if digest, ok = m.foreignDigest(key); !ok {
		return Verified{}, ErrInvalidKey
	}
	rec, err := m.store.LookupDigest(ctx, digest)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Verified{}, ErrInvalidKey
		}
		return Verified{}, fmt.Errorf("%w: looking up key: %w", ErrUnavailable, err)
	}
	if !rec.Digest.equal(&digest) {
		return Verified{}, ErrInvalidKey
	}
	now := m.now()
	v := Verified{Key: rec, at: now}
	if !rec.RevokedAt.IsZero() && !now.Before(rec.RevokedAt) {
		return v, ErrKeyRevoked
	}
	if !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt) {
		return v, ErrKeyExpired
	}
	if rec.Disabled != NotDisabled {
		return v, ErrKeyDisabled
	}
	if err := checkOptions(rec, opts); err != nil {
		return v, err
	}
	outside := (m.plans != nil || rec.CreditsID != "") && outsidePlan(opts) // read only where it matters
	var checks Checks
	if rec.RateLimit > 0 {
		checks[0] = Check{Name: LimitKey, ID: rec.ID, Max: rec.RateLimit}
	}
	if m.plans != nil && !outside {
		e, err := m.plans.of(ctx, rec.AccountID, now)
		if err != nil {
			return v, err
		}
		checks[1] = Check{Name: LimitAccount, ID: rec.AccountID, Max: e.plan.PerMinute}
		checks[2] = Check{Name: LimitAccountDay, ID: rec.AccountID, Max: e.plan.PerDay}
		if len(e.endpoints) > 0 {
			method, path := endpointOf(opts)
			if ep := e.endpoint(method, path); ep != nil {
				checks[3] = Check{Name: LimitEndpoint, ID: rec.ID, Route: ep.pattern, Max: ep.limit}
			}
		}
	}
	if checks[0].Max|checks[1].Max|checks[2].Max|checks[3].Max != 0 {
		rl, allowed, err := m.limiter.Allow(ctx, checks, now)
		if err != nil {
			return v, fmt.Errorf("%w: rate limiter: %w", ErrUnavailable, err)
		}
		v.RateLimit = rl
		if !allowed {
			return v, &RateLimitError{RateLimit: rl}
		}
	}
	if rec.CreditsID != "" && !outside {
		cost, err := costOf(opts)
		if err != nil {
			return v, err
		}
		if cost > 0 {
			if v.Credits, err = m.spend(ctx, rec, cost, now); err != nil {
				return v, err
			}
			v.Spent = cost
		}
	}
	m.usage.note(rec, digest[0], now)
	return v, nil
}

func outsidePlan(opts []VerifyOption) bool {
	for i := range opts {
		if opts[i].outsidePlan {
			return true
		}
	}
	return false
}

// costOf is the request's cost in credits (CreditCost; default 1).
func costOf(opts []VerifyOption) (int64, error) {
	cost := int64(1)
	for i := range opts {
		if opts[i].hasCost {
			cost = opts[i].cost
		}
	}
	if cost < 0 || cost > MaxCost {
		return 0, fmt.Errorf("keys: CreditCost(%d) is outside 0 to %d", cost, MaxCost)
	}
	return cost, nil
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

func checkOptions(rec *Record, opts []VerifyOption) error {
	for i := range opts {
		if env := opts[i].env; env != "" && env != rec.Environment {
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
				return &PermissionError{Message: fmt.Sprintf("the key lacks %q", p)}
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

// verifiedContext carries a Verified by value: one allocation, where
// context.WithValue and a pointer would take two on every request.
type verifiedContext struct {
	context.Context
	v Verified
}

type verifiedKey struct{}

func (c *verifiedContext) Value(key any) any {
	if key == (verifiedKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// NewContext returns ctx carrying v, as the HTTP middleware does for the
// handlers behind it.
func NewContext(ctx context.Context, v Verified) context.Context {
	return &verifiedContext{Context: ctx, v: v}
}

// FromContext returns the verified key that NewContext stored in ctx.
func FromContext(ctx context.Context) (*Verified, bool) {
	c, ok := ctx.Value(verifiedKey{}).(*verifiedContext)
	if !ok {
		return nil, false
	}
	return &c.v, true
}
