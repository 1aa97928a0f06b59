// Package redislimit is a limit.Limiter shared by every instance of a host
// through Redis, so that a key's rate_limit holds across all of them.
//
// Each check is one round trip: a Lua script runs GCRA atomically on the
// Redis server, with the server's own clock (TIME), so instances with
// skewed clocks still share one limit. A key's state is one integer that
// expires by itself once the key's bucket is full again.
//
// A refusal is remembered in the instance until its retry time: a key over
// its limit is refused again, without a round trip, until a request could
// pass (GCRA state does not change on a refusal, so Redis would answer the
// same). A flood of requests by a limited key therefore costs Redis one
// call per retry interval per instance, not one per request. The memory
// is one small entry per key currently refused, and only keys that
// verified can reach the limiter.
//
// When Redis cannot be reached, the host chooses (FailOpen): by default the
// limiter fails closed (the error makes Verify fail with
// keys.ErrUnavailable, which the HTTP adapter answers with 503); with
// FailOpen it falls back to an in-memory limiter per instance, and says so
// in the log at most once per interval.
package redislimit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/txcloud/keys/limit"
)

// allowAll checks every limit of a request and counts it in all of them
// only if every one passes: one round trip, atomic on the Redis server,
// with the server's own clock (TIME), so instances with skewed clocks
// still share one limit. Times are in microseconds; Lua numbers are
// doubles, and microseconds since 1970 (~2^51) are exact. For each
// KEYS[i], ARGV holds three numbers: the kind (0: per minute, GCRA with a
// burst of the whole limit; 1: per UTC day, a count), then for GCRA the
// emission interval and the capacity (limit × interval), for a day the
// limit and 0. A day's count expires at the day's end (PXAT), so a stored
// count is today's. Returns {all allowed, now, then per key: allowed,
// state}, the state being GCRA's theoretical arrival time or the day's
// count after this request. Stored values are formatted by hand because
// Lua's own number-to-string keeps only 14 digits.
var allowAll = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local dayEnd = (math.floor(now / 86400000000) + 1) * 86400000000
local res = {1, now}
local next = {}
for i = 1, #KEYS do
  local kind, x, y = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local ok = 1
  if kind == 0 then
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if tat < now then tat = now end
    if tat + x - now > y then ok = 0 else tat = tat + x end
    next[i] = tat
  else
    local n = tonumber(redis.call('GET', KEYS[i])) or 0
    if n >= x then ok = 0 else n = n + 1 end
    next[i] = n
  end
  if ok == 0 then res[1] = 0 end
  res[#res+1] = ok
  res[#res+1] = next[i]
end
if res[1] == 1 then
  for i = 1, #KEYS do
    if tonumber(ARGV[3*i-2]) == 0 then
      redis.call('SET', KEYS[i], string.format('%.0f', next[i]), 'PX', math.ceil((next[i] - now) / 1000) + 1)
    else
      redis.call('SET', KEYS[i], string.format('%.0f', next[i]), 'PXAT', string.format('%.0f', dayEnd / 1000))
    end
  end
end
return res
`)

// refundAll gives back one request counted by allowAll, with allowAll's
// KEYS and ARGV (scriptArgs): the kind, and for GCRA the emission
// interval. A GCRA state moves back one interval (deleted once at or
// before now: a full bucket); a day's count goes down by one, keeping its
// expiry at the day's end. A counter that is gone (expired) is left so.
var refundAll = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
for i = 1, #KEYS do
  local kind, x = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1])
  local v = tonumber(redis.call('GET', KEYS[i]))
  if v then
    if kind == 0 then
      v = v - x
      if v <= now then
        redis.call('DEL', KEYS[i])
      else
        redis.call('SET', KEYS[i], string.format('%.0f', v), 'PX', math.ceil((v - now) / 1000) + 1)
      end
    elseif v > 0 then
      redis.call('SET', KEYS[i], string.format('%.0f', v - 1), 'KEEPTTL')
    end
  end
end
return 1
`)

// renew moves the expiry of each lease still held (ZADD XX: a lease a
// Release removed meanwhile is not brought back) to the lease time from
// now: KEYS[i] is the account's set of ARGV[i+1], ARGV[1] the lease time
// in µs.
var renew = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl, ARGV[i+1]) == 1 then
    redis.call('PEXPIRE', KEYS[i], math.ceil(ttl / 1000) + 1)
  end
end
return 1
`)

// acquire counts a request in flight: KEYS[1] is the account's sorted set
// of leases, scored by when each expires. ARGV: the limit, the lease time
// (µs), the lease's member. Expired leases (an instance that died holding
// them) are dropped first.
var acquire = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) / 1000) + 1)
return 1
`)

// Limiter is a Redis limit.Limiter, and a limit.ConcurrencyLimiter. Use New.
type Limiter struct {
	client    redis.UniversalClient
	prefix    string
	fallback  limit.Limiter // nil: fail closed
	logf      func(msg string, err error)
	every     time.Duration
	leaseTime time.Duration

	mu     sync.Mutex
	logged time.Time

	seed    maphash.Seed
	refused [refusedShards]refusedShard

	instance string        // this limiter's lease members start with it
	leases   atomic.Uint64 // the last lease's number

	held       renewals      // the leases this instance holds, renewed while held
	maxRenewal time.Duration // MaxRenewal (tests shorten it)
}

// renewals are the leases a Limiter holds, and the goroutine renewing
// them: started by the first Acquire, it ends when none is held (or at
// Close), so an idle limiter runs nothing.
type renewals struct {
	mu      sync.Mutex
	leases  map[string]heldLease // by member
	running bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

const refusedShards = 16

// refusedShard remembers counters refused until a time (Unix ns, on the
// clock Allow is given).
type refusedShard struct {
	mu        sync.Mutex
	until     map[counter]refusal
	lastSweep int64
	_         [32]byte // keep shards on separate cache lines
}

// counter names one limit's state, as limit.Check does.
type counter struct {
	name      limit.Name
	id, route string
}

type refusal struct {
	until, reset int64 // Unix ns
	limit        int
	// asking is when a request of this instance, finding the refusal
	// passed, went to ask Redis (Unix ns; 0: none has). Until it answers,
	// or askTimeout passes, the others are refused locally: at most one
	// of them could pass anyway, and it is the one asking.
	asking int64
}

// askTimeout bounds how long a request that went to ask Redis holds back
// the instance's others (it may be stuck, or its answer lost).
const askTimeout = int64(250 * time.Millisecond)

var (
	_ limit.ConcurrencyLimiter = (*Limiter)(nil)
	_ limit.Refunder           = (*Limiter)(nil)
)

// Option configures a Limiter.
type Option func(*Limiter)

// WithPrefix sets the prefix of the Redis keys (default "txcloud:keys:rl:").
func WithPrefix(p string) Option { return func(l *Limiter) { l.prefix = p } }

// WithLeaseTime sets how long a lease on a request in flight lives
// without renewal (default 15 s): the limiter renews the leases it holds
// every third of it, for as long as their requests run (MaxRenewal at
// most), so an instance that dies holding leases gives them back within
// it, and a long request keeps counting.
func WithLeaseTime(d time.Duration) Option { return func(l *Limiter) { l.leaseTime = d } }

// DefaultLeaseTime is the lease time without WithLeaseTime.
const DefaultLeaseTime = 15 * time.Second

// FailOpen makes the limiter fall back to fallback (limit.NewMemory()
// if nil) while Redis is unreachable, logging through logf at most once per
// every. Without it the limiter fails closed.
func FailOpen(fallback limit.Limiter, logf func(msg string, err error), every time.Duration) Option {
	return func(l *Limiter) {
		if fallback == nil {
			fallback = limit.NewMemory()
		}
		l.fallback, l.logf, l.every = fallback, logf, every
	}
}

// New returns a limiter on client. The client is the caller's to close.
func New(client redis.UniversalClient, opts ...Option) (*Limiter, error) {
	if client == nil {
		return nil, errors.New("redislimit: nil client")
	}
	l := &Limiter{client: client, prefix: "txcloud:keys:rl:", logf: func(string, error) {}, every: time.Minute, leaseTime: DefaultLeaseTime, maxRenewal: MaxRenewal}
	for _, o := range opts {
		o(l)
	}
	if l.leaseTime < time.Millisecond {
		return nil, fmt.Errorf("redislimit: lease time %v is under a millisecond", l.leaseTime)
	}
	l.seed = maphash.MakeSeed()
	for i := range l.refused {
		l.refused[i].until = make(map[counter]refusal)
	}
	l.instance = rand.Text()
	return l, nil
}

// redisKey is the Redis key of a check's counter: one namespace per kind
// of limit, so that a key ID and an account ID never share a counter.
func (l *Limiter) redisKey(c *limit.Check) string {
	switch c.Name {
	case limit.Key:
		return l.prefix + "k:" + c.ID
	case limit.AccountMinute:
		return l.prefix + "a:" + c.ID
	case limit.AccountDay:
		return l.prefix + "d:" + c.ID
	case limit.Management:
		return l.prefix + "m:" + c.ID + ":" + c.Route
	}
	return l.prefix + "e:" + c.ID + ":" + c.Route
}

func (l *Limiter) shard(c *limit.Check) *refusedShard {
	return &l.refused[maphash.String(l.seed, c.ID)%refusedShards]
}

// interval is a per-minute check's emission interval in microseconds.
func interval(c *limit.Check) int64 {
	return int64(limit.Window/time.Microsecond) / int64(c.Max)
}

// Allow implements limit.Limiter, in one round trip for all of a request's
// checks. now is ignored but for the refusals this instance remembers:
// the Redis server's clock decides, the same for every instance.
func (l *Limiter) Allow(ctx context.Context, checks limit.Checks, now time.Time) (limit.Status, bool, error) {
	t := now.UnixNano()
	if rl, refused := l.remembered(&checks, t); refused {
		return rl, false, nil
	}
	var asking [limit.MaxChecks]bool
	l.markAsking(&checks, &asking, t)
	redisKeys, args := l.scriptArgs(&checks)
	res, err := allowAll.Run(ctx, l.client, redisKeys, args...).Int64Slice()
	if err == nil && len(res) != 2+2*len(redisKeys) {
		err = fmt.Errorf("redislimit: unexpected script result %v", res)
	}
	if err != nil || res[0] == 1 {
		l.forgetAsking(&checks, &asking, t) // allowed, or no answer: the next request asks
	}
	if err != nil {
		if l.fallback == nil {
			return limit.Status{}, false, fmt.Errorf("redislimit: %w", err)
		}
		l.logOnce(err)
		return l.fallback.Allow(ctx, checks, now)
	}
	allowed, srvNow := res[0] == 1, res[1]
	var best limit.Status
	found, j := false, 2
	for i := range checks {
		c := &checks[i]
		if c.Max <= 0 {
			continue
		}
		ok, state := res[j] == 1, res[j+1]
		j += 2
		rl := limit.Status{Name: c.Name, Limit: c.Max}
		if c.Name == limit.AccountDay {
			end := (srvNow/int64((24*time.Hour)/time.Microsecond) + 1) * int64((24*time.Hour)/time.Microsecond)
			rl.Reset = time.UnixMicro(end)
			if ok {
				rl.Remaining = c.Max - int(state)
			} else {
				rl.RetryAfter = time.Duration(end-srvNow) * time.Microsecond
			}
		} else {
			iv := interval(c)
			capacity := iv * int64(c.Max)
			rl.Reset = time.UnixMicro(state)
			if ok {
				rl.Remaining = int((capacity - (state - srvNow)) / iv)
			} else {
				rl.RetryAfter = time.Duration(state+iv-srvNow-capacity) * time.Microsecond
			}
		}
		if !ok {
			l.shard(c).remember(counter{c.Name, c.ID, c.Route}, refusal{until: t + int64(rl.RetryAfter), reset: rl.Reset.UnixNano(), limit: c.Max}, t)
		}
		switch {
		case allowed && (!found || rl.Remaining < best.Remaining):
			best = rl // the tightest
		case !allowed && !ok && rl.RetryAfter > best.RetryAfter:
			best = rl // the refusal with the longest wait
		}
		found = true
	}
	return best, allowed, nil
}

// scriptArgs are allowAll's (and refundAll's) KEYS and ARGV for checks:
// per check with a limit, its counter's key and three numbers, the kind
// (0: per minute, GCRA; 1: per UTC day), then the emission interval and
// the capacity, or the day's limit and 0.
func (l *Limiter) scriptArgs(checks *limit.Checks) (redisKeys []string, args []any) {
	redisKeys = make([]string, 0, limit.MaxChecks)
	args = make([]any, 0, 3*limit.MaxChecks)
	for i := range checks {
		c := &checks[i]
		if c.Max <= 0 {
			continue
		}
		redisKeys = append(redisKeys, l.redisKey(c))
		if c.Name == limit.AccountDay {
			args = append(args, 1, c.Max, 0)
		} else {
			iv := interval(c)
			args = append(args, 0, iv, iv*int64(c.Max))
		}
	}
	return redisKeys, args
}

// Refund implements limit.Refunder, in one round trip. While Redis cannot
// be reached and the limiter fails open, the fallback's count is refunded.
func (l *Limiter) Refund(ctx context.Context, checks limit.Checks, now time.Time) error {
	redisKeys, args := l.scriptArgs(&checks)
	if len(redisKeys) == 0 {
		return nil
	}
	err := refundAll.Run(ctx, l.client, redisKeys, args...).Err()
	for i := range checks { // a refusal remembered before the refund may be wrong now
		if c := &checks[i]; c.Max > 0 {
			sh := l.shard(c)
			sh.mu.Lock()
			delete(sh.until, counter{c.Name, c.ID, c.Route})
			sh.mu.Unlock()
		}
	}
	if err != nil {
		if r, ok := l.fallback.(limit.Refunder); ok {
			return r.Refund(ctx, checks, now)
		}
		return fmt.Errorf("redislimit: %w", err)
	}
	return nil
}

// remembered refuses the request locally if one of its counters is
// refused until later, or another request of this instance is asking
// Redis about it; the refusal with the longest wait answers.
func (l *Limiter) remembered(checks *limit.Checks, t int64) (limit.Status, bool) {
	var best limit.Status
	refused := false
	for i := range checks {
		c := &checks[i]
		if c.Max <= 0 {
			continue
		}
		sh := l.shard(c)
		k := counter{c.Name, c.ID, c.Route}
		sh.mu.Lock()
		r, ok := sh.until[k]
		switch {
		case !ok:
		case r.limit != c.Max:
			delete(sh.until, k) // the limit changed: ask Redis
			ok = false
		case t < r.until:
		case r.asking != 0 && t-r.asking < askTimeout:
			// Another request is asking for the slot that came due:
			// refused for now, told to retry when the slot after it
			// comes (a second, for a day's quota).
			wait := int64(time.Second)
			if c.Name != limit.AccountDay {
				wait = interval(c) * int64(time.Microsecond)
			}
			r.until = t + wait
		default:
			ok = false // passed: a request may ask
		}
		sh.mu.Unlock()
		if ok && (!refused || r.until-t > int64(best.RetryAfter)) {
			best = limit.Status{Name: c.Name, Limit: c.Max, Reset: time.Unix(0, r.reset), RetryAfter: time.Duration(r.until - t)}
			refused = true
		}
	}
	return best, refused
}

// markAsking marks the request as the one asking Redis for each counter
// whose remembered refusal has passed, on behalf of the instance's others.
func (l *Limiter) markAsking(checks *limit.Checks, asking *[limit.MaxChecks]bool, t int64) {
	for i := range checks {
		c := &checks[i]
		if c.Max <= 0 {
			continue
		}
		sh := l.shard(c)
		k := counter{c.Name, c.ID, c.Route}
		sh.mu.Lock()
		if r, ok := sh.until[k]; ok && r.asking == 0 {
			r.asking = t
			sh.until[k] = r
			asking[i] = true
		}
		sh.mu.Unlock()
	}
}

// forgetAsking drops the refusals this request asked about, if each is
// still the one asked about at t.
func (l *Limiter) forgetAsking(checks *limit.Checks, asking *[limit.MaxChecks]bool, t int64) {
	for i := range checks {
		if !asking[i] {
			continue
		}
		c := &checks[i]
		sh := l.shard(c)
		k := counter{c.Name, c.ID, c.Route}
		sh.mu.Lock()
		if r, ok := sh.until[k]; ok && r.asking == t {
			delete(sh.until, k)
		}
		sh.mu.Unlock()
	}
}

// remember records a refusal, first dropping the shard's passed ones at
// most once a window, so the map holds only counters refused right now.
func (sh *refusedShard) remember(k counter, r refusal, now int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now-sh.lastSweep > int64(limit.Window) {
		for k, e := range sh.until {
			if now >= e.until {
				delete(sh.until, k)
			}
		}
		sh.lastSweep = now
	}
	sh.until[k] = r
}

// Acquire implements limit.ConcurrencyLimiter: the account's leases are a
// sorted set in Redis, each expiring after the lease time, so an instance
// that dies holding some gives them back within it.
func (l *Limiter) Acquire(ctx context.Context, account string, max int, now time.Time) (limit.Lease, bool, error) {
	lease := limit.Lease{Account: account, ID: l.leases.Add(1)}
	ok, err := acquire.Run(ctx, l.client, []string{l.prefix + "c:" + account}, max, l.leaseTime.Microseconds(), l.member(lease)).Bool()
	if err != nil {
		if cl, isCL := l.fallback.(limit.ConcurrencyLimiter); isCL {
			l.logOnce(err)
			lease, ok, err := cl.Acquire(ctx, account, max, now)
			lease.ID |= fallbackLease
			return lease, ok, err
		}
		return limit.Lease{}, false, fmt.Errorf("redislimit: %w", err)
	}
	if !ok {
		return limit.Lease{}, false, nil
	}
	l.hold(l.member(lease), l.prefix+"c:"+account)
	return lease, true, nil
}

// heldLease is a lease being renewed: its account's sorted set, and when
// it was taken.
type heldLease struct {
	set   string
	since time.Time
}

// MaxRenewal is how long a lease is renewed at most: a request in flight
// longer than that (or one whose release the host lost) stops counting
// within the lease time after it, as before renewals.
const MaxRenewal = 15 * time.Minute

// hold records a lease to renew, starting the renewing goroutine if it is
// not running.
func (l *Limiter) hold(member, set string) {
	h := &l.held
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leases == nil {
		h.leases = make(map[string]heldLease)
	}
	h.leases[member] = heldLease{set: set, since: time.Now()}
	if !h.running && !h.closed {
		h.running, h.stop, h.done = true, make(chan struct{}), make(chan struct{})
		go l.renewLoop(h.stop, h.done)
	}
}

// renewLoop renews the held leases every third of the lease time, until
// none is held or stop closes.
func (l *Limiter) renewLoop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(l.leaseTime / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		h := &l.held
		h.mu.Lock()
		if len(h.leases) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		sets, members := make([]string, 0, len(h.leases)), make([]any, 1, len(h.leases)+1)
		members[0] = l.leaseTime.Microseconds()
		now := time.Now()
		for m, hl := range h.leases {
			if now.Sub(hl.since) > l.maxRenewal {
				delete(h.leases, m) // let it expire
				continue
			}
			sets, members = append(sets, hl.set), append(members, m)
		}
		h.mu.Unlock()
		// In chunks, each one round trip bounded by a third of the lease
		// time; a failed renewal is retried at the next tick (a lease
		// that expires meanwhile is what an outage costs).
		for i := 0; i < len(sets); i += renewChunk {
			j := min(i+renewChunk, len(sets))
			ctx, cancel := context.WithTimeout(context.Background(), l.leaseTime/3)
			err := renew.Run(ctx, l.client, sets[i:j], append([]any{members[0]}, members[1+i:1+j]...)...).Err()
			cancel()
			if err != nil {
				l.logOnce(err)
				break
			}
		}
	}
}

// renewChunk is how many leases one renewal round trip carries at most.
const renewChunk = 1000

// Close stops renewing the leases this limiter holds (they expire within
// the lease time, as a dead instance's do) and ends its goroutine. The
// client stays open: it is the caller's.
func (l *Limiter) Close(ctx context.Context) error {
	h := &l.held
	h.mu.Lock()
	h.closed = true
	running, stop, done := h.running, h.stop, h.done
	h.running = false
	h.mu.Unlock()
	if !running {
		return nil
	}
	close(stop)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release implements limit.ConcurrencyLimiter. A lease of the fallback
// (taken while Redis was down) goes back to the fallback.
func (l *Limiter) Release(ctx context.Context, lease limit.Lease) error {
	if lease.ID == 0 {
		return nil
	}
	if lease.ID&fallbackLease == 0 {
		member := l.member(lease)
		l.held.mu.Lock()
		delete(l.held.leases, member)
		l.held.mu.Unlock()
		if err := l.client.ZRem(ctx, l.prefix+"c:"+lease.Account, member).Err(); err != nil {
			return fmt.Errorf("redislimit: %w", err)
		}
		return nil
	}
	if cl, ok := l.fallback.(limit.ConcurrencyLimiter); ok {
		lease.ID &^= fallbackLease
		return cl.Release(ctx, lease)
	}
	return nil
}

// fallbackLease marks the leases the fallback gave.
const fallbackLease = 1 << 63

func (l *Limiter) member(lease limit.Lease) string {
	return l.instance + ":" + strconv.FormatUint(lease.ID, 10)
}

func (l *Limiter) logOnce(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.logged) >= l.every {
		l.logged = time.Now()
		l.logf("redislimit: Redis unreachable; limiting in memory per instance until it is back", err)
	}
}
