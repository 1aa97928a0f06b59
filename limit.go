package keys

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// RateLimitWindow is the window rate limits are counted over: rate_limit is
// requests per minute.
const RateLimitWindow = time.Minute

// RateLimit is a key's rate-limit state, as the X-RateLimit-* headers show
// it.
type RateLimit struct {
	Limit     int       // requests per RateLimitWindow; 0: the key has no limit
	Remaining int       // requests that would pass right now
	Reset     time.Time // when the full Limit is available again
	// RetryAfter is, on a refused request, how long until one more passes.
	RetryAfter time.Duration
}

// Limiter counts requests against per-key limits. Implementations must be
// safe for concurrent use and should not allocate on Allow.
type Limiter interface {
	// Allow counts one request by the key with the given id against a limit
	// of perMinute requests per RateLimitWindow, and reports whether it may
	// pass. now is the Manager's clock; a shared limiter may use its own
	// (a Redis server's) to stay consistent across instances. An error
	// means the limiter could not decide.
	Allow(ctx context.Context, id string, perMinute int, now time.Time) (RateLimit, bool, error)
}

// memoryLimiter is the in-process Limiter: see NewMemoryLimiter.
type memoryLimiter struct {
	seed   maphash.Seed
	shards [limiterShards]limiterShard
}

const limiterShards = 64

type limiterShard struct {
	mu        sync.Mutex
	tat       map[string]int64 // theoretical arrival time, Unix ns
	lastSweep int64
	_         [32]byte // keep shards on separate cache lines
}

var _ Limiter = (*memoryLimiter)(nil)

// NewMemoryLimiter returns an empty in-process Limiter, the Manager's
// default: GCRA (the generic cell rate algorithm), sharded so that
// different keys rarely share a mutex. Its Allow never returns an error.
//
// A key with rate_limit N may send a burst of N requests at once; after
// that, one request every minute/N. So at most N pass in any instant, and a
// key idle for a minute has its full N again. Its state is one int64 per
// key (the theoretical arrival time), dropped once the key's bucket is full
// again, so idle keys cost nothing.
func NewMemoryLimiter() Limiter {
	l := &memoryLimiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].tat = make(map[string]int64)
	}
	return l
}

// Allow implements Limiter.
func (l *memoryLimiter) Allow(_ context.Context, id string, perMinute int, now time.Time) (RateLimit, bool, error) {
	interval := int64(RateLimitWindow) / int64(perMinute)
	capacity := interval * int64(perMinute)
	t := now.UnixNano()

	s := &l.shards[maphash.String(l.seed, id)%limiterShards]
	s.mu.Lock()
	if t-s.lastSweep > int64(RateLimitWindow) {
		s.sweep(t)
	}
	tat := s.tat[id]
	if tat < t {
		tat = t
	}
	next := tat + interval
	allowed := next-t <= capacity
	if allowed {
		s.tat[id] = next
		tat = next
	}
	s.mu.Unlock()

	rl := RateLimit{Limit: perMinute, Reset: time.Unix(0, tat)}
	if allowed {
		rl.Remaining = int((capacity - (tat - t)) / interval)
	} else {
		rl.RetryAfter = time.Duration(next - t - capacity)
	}
	return rl, allowed, nil
}

// sweep drops keys whose bucket is full again: their state equals no state.
func (s *limiterShard) sweep(now int64) {
	for id, tat := range s.tat {
		if tat <= now {
			delete(s.tat, id)
		}
	}
	s.lastSweep = now
}
