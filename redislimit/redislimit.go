// Package redislimit is a keys.Limiter shared by every instance of a host
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
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/txcloud/keys"
)

// gcra is GCRA with a burst of the whole limit, times in microseconds.
// KEYS[1]: the key's state; ARGV[1]: emission interval; ARGV[2]: capacity
// (limit × interval). Returns {allowed, tat, now} as integers. Lua numbers
// are doubles: microseconds since 1970 (~2^51) are exact. The stored value
// is formatted by hand because Lua's own number-to-string keeps only 14
// digits.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat + interval - now > tonumber(ARGV[2]) then
  return {0, tat, now}
end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {1, tat, now}
`)

// Limiter is a Redis keys.Limiter. Use New.
type Limiter struct {
	client   redis.UniversalClient
	prefix   string
	fallback keys.Limiter // nil: fail closed
	logf     func(msg string, err error)
	every    time.Duration

	mu     sync.Mutex
	logged time.Time

	seed    maphash.Seed
	refused [refusedShards]refusedShard
}

const refusedShards = 16

// refusedShard remembers keys refused until a time (Unix ns, on the clock
// Allow is given).
type refusedShard struct {
	mu        sync.Mutex
	until     map[string]refusal
	lastSweep int64
	_         [32]byte // keep shards on separate cache lines
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

var _ keys.Limiter = (*Limiter)(nil)

// Option configures a Limiter.
type Option func(*Limiter)

// WithPrefix sets the prefix of the Redis keys (default "txcloud:keys:rl:").
func WithPrefix(p string) Option { return func(l *Limiter) { l.prefix = p } }

// FailOpen makes the limiter fall back to fallback (keys.NewMemoryLimiter()
// if nil) while Redis is unreachable, logging through logf at most once per
// every. Without it the limiter fails closed.
func FailOpen(fallback keys.Limiter, logf func(msg string, err error), every time.Duration) Option {
	return func(l *Limiter) {
		if fallback == nil {
			fallback = keys.NewMemoryLimiter()
		}
		l.fallback, l.logf, l.every = fallback, logf, every
	}
}

// New returns a limiter on client. The client is the caller's to close.
func New(client redis.UniversalClient, opts ...Option) (*Limiter, error) {
	if client == nil {
		return nil, errors.New("redislimit: nil client")
	}
	l := &Limiter{client: client, prefix: "txcloud:keys:rl:", logf: func(string, error) {}, every: time.Minute}
	for _, o := range opts {
		o(l)
	}
	l.seed = maphash.MakeSeed()
	for i := range l.refused {
		l.refused[i].until = make(map[string]refusal)
	}
	return l, nil
}

// Allow implements keys.Limiter. now is ignored: the Redis server's clock
// decides, the same for every instance.
func (l *Limiter) Allow(ctx context.Context, id string, perMinute int, now time.Time) (keys.RateLimit, bool, error) {
	sh := &l.refused[maphash.String(l.seed, id)%refusedShards]
	t := now.UnixNano()
	interval := int64(keys.RateLimitWindow/time.Microsecond) / int64(perMinute)
	sh.mu.Lock()
	r, ok := sh.until[id]
	asking := false
	switch {
	case !ok:
	case r.limit != perMinute:
		delete(sh.until, id) // the key's limit changed: ask Redis
		ok = false
	case t < r.until:
	case r.asking != 0 && t-r.asking < askTimeout:
		// Another request is asking for the slot that came due: refused
		// for now, told to retry when the slot after it comes.
		r.until = t + interval*int64(time.Microsecond)
	default:
		r.asking = t // passed: this request asks, on behalf of the others
		sh.until[id] = r
		ok, asking = false, true
	}
	sh.mu.Unlock()
	if ok {
		return keys.RateLimit{Limit: perMinute, Reset: time.Unix(0, r.reset), RetryAfter: time.Duration(r.until - t)}, false, nil
	}
	capacity := interval * int64(perMinute)
	res, err := gcra.Run(ctx, l.client, []string{l.prefix + id}, interval, capacity).Slice()
	if asking && (err != nil || len(res) != 3 || res[0] == int64(1)) {
		sh.forget(id, t) // allowed, or no answer: the next request asks
	}
	if err != nil {
		if l.fallback == nil {
			return keys.RateLimit{}, false, fmt.Errorf("redislimit: %w", err)
		}
		l.logOnce(err)
		return l.fallback.Allow(ctx, id, perMinute, now)
	}
	allowed, tat, srvNow, err := parse(res)
	if err != nil {
		return keys.RateLimit{}, false, err
	}
	rl := keys.RateLimit{Limit: perMinute, Reset: time.UnixMicro(tat)}
	if allowed {
		rl.Remaining = int((capacity - (tat - srvNow)) / interval)
	} else {
		rl.RetryAfter = time.Duration(tat+interval-srvNow-capacity) * time.Microsecond
		sh.remember(id, refusal{until: t + int64(rl.RetryAfter), reset: rl.Reset.UnixNano(), limit: perMinute}, t)
	}
	return rl, allowed, nil
}

// forget drops id's refusal if it is still the one asked about at t.
func (sh *refusedShard) forget(id string, t int64) {
	sh.mu.Lock()
	if r, ok := sh.until[id]; ok && r.asking == t {
		delete(sh.until, id)
	}
	sh.mu.Unlock()
}

// remember records a refusal, first dropping the shard's passed ones at
// most once a window, so the map holds only keys refused right now.
func (sh *refusedShard) remember(id string, r refusal, now int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now-sh.lastSweep > int64(keys.RateLimitWindow) {
		for k, e := range sh.until {
			if now >= e.until {
				delete(sh.until, k)
			}
		}
		sh.lastSweep = now
	}
	sh.until[id] = r
}

func parse(res []any) (allowed bool, tat, now int64, err error) {
	if len(res) == 3 {
		a, ok := res[0].(int64)
		tat, ok2 := res[1].(int64)
		now, ok3 := res[2].(int64)
		if ok && ok2 && ok3 {
			return a == 1, tat, now, nil
		}
	}
	return false, 0, 0, fmt.Errorf("redislimit: unexpected script result %v", res)
}

func (l *Limiter) logOnce(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.logged) >= l.every {
		l.logged = time.Now()
		l.logf("redislimit: Redis unreachable; limiting in memory per instance until it is back", err)
	}
}
