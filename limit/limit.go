// Package limit counts requests against limits: a key's own rate limit,
// an account plan's requests per minute, per UTC day and per endpoint, and
// its requests in flight. It holds the Limiter contract, which a limiter
// shared by several instances implements (the redislimit module, on
// Redis), and NewMemory, the in-process limiter a keys.Manager uses unless
// keys.WithLimiter gives another.
//
// The Manager builds the Checks of a request in keys.Manager.Verify and
// asks the Limiter once, all or nothing: a request refused by one limit
// spends none of the others. A Status is what the X-RateLimit-* headers
// show.
package limit

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Window is the window of every per-minute limit: a key's rate_limit, and
// a plan's per-minute and per-endpoint limits.
const Window = time.Minute

// dayLength is the window of a plan's per-day quota: a UTC calendar day.
const dayLength = 24 * time.Hour

// Name says which limit a Check counts against, and so which one a
// refusal names.
type Name uint8

// The limits a request can count against.
const (
	// Key is the key's own rate_limit, per minute.
	Key Name = iota + 1
	// AccountMinute is the plan's requests per minute, all of the
	// account's keys together.
	AccountMinute
	// AccountDay is the plan's requests per UTC day, all of the account's
	// keys together.
	AccountDay
	// Endpoint is the plan's limit on one endpoint, per key, per minute.
	Endpoint
	// Concurrency is the plan's requests in flight at once, all of the
	// account's keys together (ConcurrencyLimiter).
	Concurrency
	// Management is an account's requests per minute to the key
	// endpoints, all its keys together, outside its plan (the HTTP
	// adapter's WithManagementLimit): ID is the account, Route which
	// group of endpoints ("" for the key endpoints, "usage" for usage
	// reads, which have a lower limit of their own).
	Management
)

var names = [...]string{"", "key", "account_minute", "account_day", "endpoint", "concurrency", "management"}

// String is the name the API uses for the limit: "key",
// "account_minute", "account_day", "endpoint" or "concurrency".
func (n Name) String() string {
	if int(n) < len(names) {
		return names[n]
	}
	return "unknown"
}

// Window is the period the limit counts over: a UTC day for AccountDay,
// Window for the others (0 for Concurrency, which counts requests in
// flight).
func (n Name) Window() time.Duration {
	switch n {
	case AccountDay:
		return dayLength
	case Concurrency:
		return 0
	}
	return Window
}

// Status is the state of one limit, as the X-RateLimit-* headers show it.
type Status struct {
	// Name is the limit this describes: of a request that passed, the
	// tightest that applied (fewest remaining); of a refused one, the one
	// that refused it. 0 when no limit applied.
	Name      Name
	Limit     int       // requests per Name.Window(); 0: no limit applied
	Remaining int       // requests that would pass right now
	Reset     time.Time // when the full Limit is available again
	// RetryAfter is, on a refused request, how long until one more passes.
	RetryAfter time.Duration
}

// MaxChecks is how many limits one request counts against at most: its
// key's own, its account's per minute and per day, and one endpoint's.
const MaxChecks = 4

// Check is one limit a request counts against.
type Check struct {
	Name Name
	// ID is whose counter it is: the key's ID for Key and Endpoint, the
	// account's for AccountMinute, AccountDay and Management.
	ID string
	// Route tells one endpoint's counter from another's (Endpoint: the
	// plan's pattern; Management: the group of endpoints); "" otherwise.
	Route string
	// Max is the limit: requests per Name.Window(). A Check with Max 0 is
	// not there.
	Max int
}

// Checks are the limits of one request; those with Max 0 are unused. It
// is an array, passed by value, so that building it allocates nothing.
type Checks [MaxChecks]Check

// Limiter counts requests against limits. Implementations must be safe for
// concurrent use and should not allocate on Allow.
type Limiter interface {
	// Allow counts one request against every check, all or nothing: if
	// any check refuses, none is counted. It reports whether the request
	// may pass, and the Status of the tightest check (fewest remaining)
	// or, on a refusal, of the refusing check whose RetryAfter is longest,
	// so that one retry after it can pass. Checks named AccountDay count
	// per UTC calendar day; the others per Window, with a burst of the
	// whole limit (GCRA). now is the Manager's clock; a shared limiter
	// may use its own (a Redis server's) to stay consistent across
	// instances. An error means the limiter could not decide.
	Allow(ctx context.Context, checks Checks, now time.Time) (Status, bool, error)
}

// Refunder is a Limiter that can give back a request it counted: the
// optional capability that lets keys.Manager.Verify refuse a request for
// a reason found after the limits (its credits) without spending them. A
// limiter without it keeps the count.
type Refunder interface {
	Limiter
	// Refund gives back one request that Allow counted against every
	// check (with the same checks): a per-minute counter has one more
	// request's room, the day's count is one less (if it is still the
	// day it was counted in). A refund never makes room beyond the
	// limit.
	Refund(ctx context.Context, checks Checks, now time.Time) error
}

// Lease is a request in flight, counted by a ConcurrencyLimiter until it
// is released.
type Lease struct {
	Account string
	ID      uint64 // the limiter's own: which of the account's leases
}

// ConcurrencyLimiter is a Limiter that also counts requests in flight,
// the optional capability behind a plan's Concurrent limit
// (keys.Manager.Acquire). NewMemory's limiter has it, and so does
// redislimit's, across instances.
type ConcurrencyLimiter interface {
	Limiter
	// Acquire counts one more request of account in flight if fewer than
	// max are, and returns its lease.
	Acquire(ctx context.Context, account string, max int, now time.Time) (Lease, bool, error)
	// Release ends a lease Acquire returned; release each lease once.
	// The zero Lease is no lease, and releasing it changes nothing.
	Release(ctx context.Context, l Lease) error
}

// memoryLimiter is the in-process Limiter: see NewMemory.
type memoryLimiter struct {
	seed     maphash.Seed
	shards   [limiterShards]limiterShard
	inFlight sync.Map // account → *atomic.Int64
}

const limiterShards = 64

type limiterShard struct {
	mu sync.Mutex
	// keys and accounts hold the state of each key's and each account's
	// counters, by ID: two maps keyed by a plain string hash faster than
	// one keyed by (limit, ID, route).
	keys, accounts map[string]*idState
	lastSweep      int64
	_              [32]byte // keep shards on separate cache lines
}

// idState is one key's or one account's counters: for a per-minute
// counter, its theoretical arrival time (Unix ns); for the day, the day's
// number and its count (packDay). 0 is no state.
type idState struct {
	minute    int64            // Key, or AccountMinute
	day       int64            // AccountDay
	endpoints map[string]int64 // Endpoint (of a key), or Management (of an account), by route; nil: none
}

// counter returns the check's state in s, creating it.
func (s *limiterShard) counter(c *Check, st **idState) *int64 {
	if *st == nil {
		m := s.keys
		if c.Name == AccountMinute || c.Name == AccountDay || c.Name == Management {
			m = s.accounts
		}
		if *st = m[c.ID]; *st == nil {
			*st = new(idState) // once per key or account, until swept
			m[c.ID] = *st
		}
	}
	switch c.Name {
	case AccountDay:
		return &(*st).day
	case Endpoint, Management:
		return nil
	}
	return &(*st).minute
}

var (
	_ ConcurrencyLimiter = (*memoryLimiter)(nil)
	_ Refunder           = (*memoryLimiter)(nil)
)

// NewMemory returns an empty in-process limiter, the Manager's default.
// Per-minute limits are GCRA (the generic cell rate algorithm): a limit
// of N allows a burst of N requests at once, then one every minute/N, so
// at most N pass in any instant and a counter idle for a minute has its
// full N again. Per-day limits count a UTC calendar day exactly. The
// state is sharded so that different counters rarely share a mutex; a
// counter's state is one int64, dropped once it equals no state (a full
// bucket, a past day), so idle keys cost nothing. Its methods never
// return an error.
func NewMemory() ConcurrencyLimiter {
	l := &memoryLimiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].keys = make(map[string]*idState)
		l.shards[i].accounts = make(map[string]*idState)
	}
	return l
}

// dayBits is how much of a per-day state holds the count; the rest is the
// day's number since 1970.
const dayBits = 40

func packDay(day, n int64) int64       { return day<<dayBits | n }
func unpackDay(v int64) (int64, int64) { return v >> dayBits, v & (1<<dayBits - 1) }

// lock locks each shard the checks touch once, in ascending order, so
// that two requests sharing shards cannot deadlock, sweeping any due. It
// returns each check's shard, and the shards locked, for unlock.
func (l *memoryLimiter) lock(checks *Checks, t int64) (shard, order [MaxChecks]uint8, n int) {
	for i := range checks {
		if checks[i].Max <= 0 {
			continue
		}
		var sh uint8
		if i > 0 && checks[i].ID == checks[i-1].ID && checks[i-1].Max > 0 {
			sh = shard[i-1] // the account's minute and day: hashed once
		} else {
			sh = uint8(maphash.String(l.seed, checks[i].ID) % limiterShards)
		}
		shard[i] = sh
		j := n
		for j > 0 && order[j-1] > sh {
			j--
		}
		if j > 0 && order[j-1] == sh {
			continue
		}
		copy(order[j+1:n+1], order[j:n])
		order[j] = sh
		n++
	}
	for _, sh := range order[:n] {
		s := &l.shards[sh]
		s.mu.Lock()
		if t-s.lastSweep > int64(Window) {
			s.sweep(t)
		}
	}
	return shard, order, n
}

func (l *memoryLimiter) unlock(order []uint8) {
	for _, sh := range order {
		l.shards[sh].mu.Unlock()
	}
}

// Allow implements Limiter.
func (l *memoryLimiter) Allow(_ context.Context, checks Checks, now time.Time) (Status, bool, error) {
	t := now.UnixNano()
	shard, order, n := l.lock(&checks, t)
	// Checks of one ID (the key's own and its endpoint's; the account's
	// minute and day) share one lookup.
	var ids [MaxChecks]*idState
	var next [MaxChecks]int64
	var best Status
	allowed, found := true, false
	for i := range checks {
		c := &checks[i]
		if c.Max <= 0 {
			continue
		}
		for j := range i {
			if ids[j] != nil && checks[j].ID == c.ID && isAccount(checks[j].Name) == isAccount(c.Name) {
				ids[i] = ids[j]
				break
			}
		}
		p := l.shards[shard[i]].counter(c, &ids[i])
		var cur int64
		if p != nil {
			cur = *p
		} else {
			cur = ids[i].endpoints[c.Route]
		}
		var rl Status
		var ok bool
		if c.Name == AccountDay {
			rl, next[i], ok = allowDay(cur, c.Max, t)
		} else {
			rl, next[i], ok = allowGCRA(cur, c.Max, t)
		}
		rl.Name = c.Name
		switch {
		case !found, !ok && (allowed || rl.RetryAfter > best.RetryAfter), ok && allowed && rl.Remaining < best.Remaining:
			best = rl
		}
		found = true
		allowed = allowed && ok
	}
	if allowed {
		for i := range checks {
			c := &checks[i]
			switch {
			case c.Max <= 0:
			case c.Name == Endpoint || c.Name == Management:
				if ids[i].endpoints == nil {
					ids[i].endpoints = make(map[string]int64)
				}
				ids[i].endpoints[c.Route] = next[i]
			case c.Name == AccountDay:
				ids[i].day = next[i]
			default:
				ids[i].minute = next[i]
			}
		}
	}
	l.unlock(order[:n])
	return best, allowed, nil
}

// Refund implements Refunder.
func (l *memoryLimiter) Refund(_ context.Context, checks Checks, now time.Time) error {
	t := now.UnixNano()
	shard, order, n := l.lock(&checks, t)
	for i := range checks {
		c := &checks[i]
		if c.Max <= 0 {
			continue
		}
		var st *idState
		p := l.shards[shard[i]].counter(c, &st)
		switch {
		case c.Name == Endpoint || c.Name == Management:
			if tat, ok := st.endpoints[c.Route]; ok {
				st.endpoints[c.Route] = refundGCRA(tat, c.Max, t)
			}
		case c.Name == AccountDay:
			*p = refundDay(*p, t)
		default:
			*p = refundGCRA(*p, c.Max, t)
		}
	}
	l.unlock(order[:n])
	return nil
}

// refundGCRA gives back one request's interval; a state at or before now
// is a full bucket (0, no state).
func refundGCRA(tat int64, limit int, t int64) int64 {
	if tat -= int64(Window) / int64(limit); tat <= t {
		return 0
	}
	return tat
}

// refundDay takes one request off today's count.
func refundDay(state int64, t int64) int64 {
	day, n := unpackDay(state)
	if day != t/int64(dayLength) || n == 0 {
		return state
	}
	return packDay(day, n-1)
}

// isAccount reports whether n counts an account's requests (its state is
// in the accounts map), not a key's.
func isAccount(n Name) bool { return n == AccountMinute || n == AccountDay || n == Management }

// allowGCRA decides one per-minute check: its state after the request,
// and whether it may pass.
func allowGCRA(tat int64, limit int, t int64) (Status, int64, bool) {
	interval := int64(Window) / int64(limit)
	capacity := interval * int64(limit)
	tat = max(tat, t)
	next := tat + interval
	rl := Status{Limit: limit}
	if next-t > capacity {
		rl.Reset = time.Unix(0, tat)
		rl.RetryAfter = time.Duration(next - t - capacity)
		return rl, tat, false
	}
	rl.Reset = time.Unix(0, next)
	rl.Remaining = int((capacity - (next - t)) / interval)
	return rl, next, true
}

// allowDay decides one per-day check.
func allowDay(state int64, limit int, t int64) (Status, int64, bool) {
	today := t / int64(dayLength)
	day, n := unpackDay(state)
	if day != today {
		n = 0
	}
	end := (today + 1) * int64(dayLength)
	rl := Status{Limit: limit, Reset: time.Unix(0, end)}
	if n >= int64(limit) {
		rl.RetryAfter = time.Duration(end - t)
		return rl, state, false
	}
	rl.Remaining = limit - int(n) - 1
	return rl, packDay(today, n+1), true
}

// sweep drops state that equals no state: a full bucket, a past day.
func (s *limiterShard) sweep(now int64) {
	today := now / int64(dayLength)
	for _, m := range []map[string]*idState{s.keys, s.accounts} {
		for id, st := range m {
			if day, _ := unpackDay(st.day); day < today {
				st.day = 0
			}
			if st.minute <= now {
				st.minute = 0
			}
			for r, tat := range st.endpoints {
				if tat <= now {
					delete(st.endpoints, r)
				}
			}
			if st.minute == 0 && st.day == 0 && len(st.endpoints) == 0 {
				delete(m, id)
			}
		}
	}
	s.lastSweep = now
}

// Acquire implements ConcurrencyLimiter: an atomic count per account.
func (l *memoryLimiter) Acquire(_ context.Context, account string, limit int, _ time.Time) (Lease, bool, error) {
	v, ok := l.inFlight.Load(account)
	if !ok {
		v, _ = l.inFlight.LoadOrStore(account, new(atomic.Int64))
	}
	n := v.(*atomic.Int64)
	if n.Add(1) > int64(limit) {
		n.Add(-1)
		return Lease{}, false, nil
	}
	return Lease{Account: account, ID: 1}, true, nil
}

// Release implements ConcurrencyLimiter.
func (l *memoryLimiter) Release(_ context.Context, lease Lease) error {
	if lease.ID == 0 {
		return nil
	}
	if v, ok := l.inFlight.Load(lease.Account); ok {
		v.(*atomic.Int64).Add(-1)
	}
	return nil
}
