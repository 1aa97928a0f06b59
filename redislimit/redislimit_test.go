package redislimit_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/redislimit"
)

// addr is the Redis the tests use: KEYS_TEST_REDIS. Unset, they skip; set,
// Redis must answer.
func addr(t testing.TB) string {
	a := os.Getenv("KEYS_TEST_REDIS")
	if a == "" {
		t.Skip("set KEYS_TEST_REDIS (e.g. 127.0.0.1:6379) to run the Redis tests")
	}
	return a
}

func newClient(t testing.TB, address string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: address, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// liveClient is a client of KEYS_TEST_REDIS, which must answer.
func liveClient(t testing.TB) *redis.Client {
	t.Helper()
	c := newClient(t, addr(t))
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("KEYS_TEST_REDIS is set but Redis does not answer: %v", err)
	}
	return c
}

// flood runs workers goroutines on each limiter, each asking for key
// "flooder" at limit a minute until d has passed (or, if max > 0, after max
// requests each), and checks every refusal's answer. It returns how many
// requests were made and allowed, and how long it took.
func flood(t *testing.T, ls []*redislimit.Limiter, workers, limit int, d time.Duration, max int) (requests, allowed int64, elapsed time.Duration) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var made, passed atomic.Int64
	var wg sync.WaitGroup
	for _, l := range ls {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; (max == 0 || i < max) && time.Since(start) < d; i++ {
					rl, ok, err := allowKey(ctx, l, "flooder", limit, time.Now())
					if err != nil {
						t.Error(err)
						return
					}
					made.Add(1)
					if ok {
						passed.Add(1)
					} else if rl.RetryAfter <= 0 || rl.RetryAfter > 2*time.Second || rl.Remaining != 0 || rl.Limit != limit {
						// (at most the interval, 1 s, but this worker's now
						// may predate a scheduling delay)
						t.Errorf("a refusal answered %+v", rl)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	return made.Load(), passed.Load(), time.Since(start)
}

func newLimiter(t testing.TB, c redis.UniversalClient, opts ...redislimit.Option) *redislimit.Limiter {
	t.Helper()
	l, err := redislimit.New(c, append([]redislimit.Option{redislimit.WithPrefix("keys-test:" + rand.Text() + ":")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func TestBoundary(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	prefix := "keys-test:" + rand.Text() + ":"
	l, _ := redislimit.New(c, redislimit.WithPrefix(prefix))
	for i := range 5 {
		rl, ok, err := allowKey(ctx, l, "k1", 5, time.Now())
		if err != nil || !ok || rl.Remaining != 4-i || rl.Limit != 5 {
			t.Fatalf("request %d: %+v %v %v", i+1, rl, ok, err)
		}
	}
	rl, ok, err := allowKey(ctx, l, "k1", 5, time.Now())
	if err != nil || ok || rl.RetryAfter <= 11*time.Second || rl.RetryAfter > 12*time.Second || rl.Remaining != 0 {
		t.Fatalf("6th request: %+v %v %v", rl, ok, err)
	}
	if _, ok, _ := allowKey(ctx, l, "k2", 5, time.Now()); !ok {
		t.Fatal("another key was limited")
	}
	ttl, err := c.PTTL(ctx, prefix+"k:k1").Result()
	if err != nil || ttl <= 0 || ttl > 61*time.Second {
		t.Fatalf("the key's state does not expire by itself: %v %v", ttl, err)
	}
}

// Two instances (two Managers, two Redis clients) share one limit: N
// successes in total, then 429s on both.
func TestLimitHeldAcrossInstances(t *testing.T) {
	ctx := context.Background()
	a := addr(t)
	store := memstore.New() // both instances see the same keys
	prefix := redislimit.WithPrefix("keys-test:" + rand.Text() + ":")
	la, _ := redislimit.New(newClient(t, a), prefix)
	lb, _ := redislimit.New(newClient(t, a), prefix)
	ma, _ := keys.New(store, keys.WithLimiter(la))
	mb, _ := keys.New(store, keys.WithLimiter(lb))
	defer ma.Close(ctx)
	defer mb.Close(ctx)
	const n = 10
	c, err := ma.Create(ctx, keys.APIKeyCreate{Name: "shared", Environment: keys.Live, RateLimit: func() *int { v := n; return &v }(), AccountID: "acct_rl"})
	if err != nil {
		t.Fatal(err)
	}
	var passed, limited atomic.Int64
	var wg sync.WaitGroup
	for _, m := range []*keys.Manager{ma, mb, ma, mb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				_, err := m.Verify(ctx, string(c.Key))
				switch {
				case err == nil:
					passed.Add(1)
				case errors.Is(err, keys.ErrRateLimited):
					limited.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if passed.Load() != n || limited.Load() != 40-n {
		t.Fatalf("%d passed and %d were limited across two instances; want %d and %d", passed.Load(), limited.Load(), n, 40-n)
	}
}

func TestFailClosed(t *testing.T) {
	addr(t)
	ctx := context.Background()
	l := newLimiter(t, newClient(t, "127.0.0.1:1")) // nothing listens there
	m, _ := keys.New(memstore.New(), keys.WithLimiter(l))
	defer m.Close(ctx)
	c, _ := m.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Live, RateLimit: func() *int { v := 5; return &v }(), AccountID: "acct_rl"})
	_, err := m.Verify(ctx, string(c.Key))
	if !errors.Is(err, keys.ErrUnavailable) || errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("Redis down, failing closed: %v (want ErrUnavailable: a 503, not a 401)", err)
	}
}

func TestFailOpen(t *testing.T) {
	addr(t)
	ctx := context.Background()
	var logs atomic.Int64
	l := newLimiter(t, newClient(t, "127.0.0.1:1"), redislimit.FailOpen(nil, func(string, error) { logs.Add(1) }, time.Hour))
	for i := range 5 {
		if _, ok, err := allowKey(ctx, l, "k", 3, time.Now()); err != nil || ok != (i < 3) {
			t.Fatalf("request %d: %v %v (the in-memory fallback still limits)", i+1, ok, err)
		}
	}
	if logs.Load() != 1 {
		t.Fatalf("logged %d times in one interval, want once", logs.Load())
	}
}

// proxy forwards TCP to the real Redis until cut; restore brings it back
// on the same address: a real outage of the path to Redis, without
// stopping the machine's Redis under other tests.
type proxy struct {
	target string
	ln     net.Listener
	addr   string
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *proxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *proxy) restore(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.serve(ln)
}

// Redis goes away and comes back: failing closed answers errors (503s)
// meanwhile, and limiting resumes without restarting anything.
func TestOutageAndRecovery(t *testing.T) {
	ctx := context.Background()
	p := startProxy(t, addr(t))
	l := newLimiter(t, newClient(t, p.addr))
	if _, ok, err := allowKey(ctx, l, "k", 100, time.Now()); err != nil || !ok {
		t.Fatalf("before the outage: %v %v", ok, err)
	}
	p.cut()
	if _, _, err := allowKey(ctx, l, "k", 100, time.Now()); err == nil {
		t.Fatal("no error while Redis is unreachable")
	}
	p.restore(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rl, ok, err := allowKey(ctx, l, "k", 100, time.Now())
		if err == nil {
			if !ok || rl.Remaining != 98 {
				t.Fatalf("after recovery the limit's state is wrong: %+v %v", rl, ok)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("did not recover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkRedisLimit is one limiter check, beside the floor of one raw
// INCR round trip to the same Redis.
func BenchmarkRedisLimit(b *testing.B) {
	ctx := context.Background()
	c := newClient(b, addr(b))
	l := newLimiter(b, c)
	b.Run("limit", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := allowKey(ctx, l, "bench", 10_000_000, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("floor-incr", func(b *testing.B) {
		key := "keys-test:" + rand.Text()
		defer c.Del(ctx, key)
		for b.Loop() {
			if err := c.Incr(ctx, key).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// countingHook counts the limiter's script calls a client sends (EVALSHA,
// or EVAL when the script was not loaded), not connection set-up.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A key flooding past its limit costs Redis one call per retry interval
// (per worker at the instant a retry comes due), not one per request.
func TestRefusalsAreAnsweredLocally(t *testing.T) {
	if testing.Short() {
		t.Skip("a 2.5-second flood")
	}
	ctx := context.Background()
	c := liveClient(t)
	hook := &countingHook{}
	c.AddHook(hook)
	l := newLimiter(t, c)
	const limit, workers = 60, 4 // one request a second after the burst
	requests, allowed, elapsed := flood(t, []*redislimit.Limiter{l}, workers, limit, 2500*time.Millisecond, 2_000_000)
	calls := hook.n.Load()
	// The burst and a first refusal per worker (they ask together before
	// any refusal is remembered), then two or three calls each time a
	// retry comes due (once a second here): one worker asks for the slot
	// on behalf of all four (and is allowed), and the next request is
	// refused and remembered. The third: the remembered retry time is
	// reckoned from the request's clock before its round trip, so the
	// asker can arrive a round trip early and be told to retry in
	// microseconds. Without local refusals it is one call per request;
	// without one asker for all, one call per worker each second.
	bound := int64(limit) + workers + 3*(int64(elapsed/time.Second)+2)
	t.Logf("%d requests in %v, %d allowed, %d Redis calls (bound %d)", requests, elapsed.Round(time.Millisecond), allowed, calls, bound)
	if calls > bound {
		t.Fatalf("%d Redis calls for %d requests: refusals are not answered locally", calls, requests)
	}
	if got := allowed; got < limit || got > limit+int64(elapsed/time.Second)+1 {
		t.Fatalf("%d requests allowed in %v with a limit of %d a minute", got, elapsed, limit)
	}
	if requests < 10*calls {
		t.Fatalf("only %d requests: the flood did not flood", requests)
	}
	// Another limit for the key (it was updated) is asked of Redis at once.
	before := hook.n.Load()
	if _, _, err := allowKey(ctx, l, "flooder", 120, time.Now()); err != nil || hook.n.Load() == before {
		t.Fatalf("a changed limit was answered from the remembered refusal (%v)", err)
	}
}

// A remembered refusal answers locally up to the last nanosecond before
// its retry time, and from that instant Redis is asked again.
func TestRememberedRefusalEndsAtItsRetryTime(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	hook := &countingHook{}
	c.AddHook(hook)
	l := newLimiter(t, c)
	t0 := time.Now()
	if _, ok, err := allowKey(ctx, l, "edge", 1, t0); !ok || err != nil {
		t.Fatalf("first request: %v %v", ok, err)
	}
	rl, ok, err := allowKey(ctx, l, "edge", 1, t0)
	if ok || err != nil || rl.RetryAfter <= 0 {
		t.Fatalf("second request: %+v %v %v", rl, ok, err)
	}
	calls := hook.n.Load()
	if _, ok, _ := allowKey(ctx, l, "edge", 1, t0.Add(rl.RetryAfter-1)); ok || hook.n.Load() != calls {
		t.Fatalf("a nanosecond before the retry time: allowed %v, %d Redis calls (want a local refusal)", ok, hook.n.Load()-calls)
	}
	if _, _, _ = allowKey(ctx, l, "edge", 1, t0.Add(rl.RetryAfter)); hook.n.Load() != calls+1 {
		t.Fatal("at the retry time, Redis was not asked again")
	}
}

// Finding 7 of issue 11 across instances: three limiters sharing one
// Redis (three instances of a service), each with four workers flooding
// one key limited to 60 a minute for 5 seconds, make at most the limit, a
// first refusal per worker, and three calls per retry interval per
// instance; together they allow the limit, never more.
func TestRefusalsAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("a 5-second flood")
	}
	prefix := redislimit.WithPrefix("keys-test:" + rand.Text() + ":")
	const instances, workers, limit = 3, 4, 60
	var hooks [instances]*countingHook
	var ls [instances]*redislimit.Limiter
	for i := range instances {
		c := liveClient(t)
		hooks[i] = &countingHook{}
		c.AddHook(hooks[i])
		ls[i] = newLimiter(t, c, prefix)
	}
	requests, allowed, elapsed := flood(t, ls[:], workers, limit, 5*time.Second, 0)
	seconds := int64(elapsed/time.Second) + 2
	var calls int64
	for i, h := range hooks {
		n := h.n.Load()
		calls += n
		t.Logf("instance %d: %d Redis calls", i, n)
	}
	bound := int64(limit) + instances*workers + 3*instances*seconds // see TestRefusalsAreAnsweredLocally
	t.Logf("%d requests in %v, %d allowed, %d Redis calls (bound %d)", requests, elapsed.Round(time.Millisecond), allowed, calls, bound)
	if calls > bound {
		t.Fatalf("%d Redis calls from %d instances: more than the limit, a refusal per worker and three per retry interval per instance (%d)", calls, instances, bound)
	}
	if got := allowed; got < limit || got > limit+seconds {
		t.Fatalf("%d requests allowed in %v across %d instances with a limit of %d a minute", got, elapsed, instances, limit)
	}
}

// blockingHook holds the next script call until release is closed.
type blockingHook struct {
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *blockingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *blockingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); (name == "evalsha" || name == "eval") && h.armed.CompareAndSwap(true, false) {
			close(h.entered)
			<-h.release
		}
		return next(ctx, cmd)
	}
}
func (h *blockingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// When a remembered refusal comes due, one request asks Redis and the
// others are refused locally while it does, for askTimeout at most: a
// stuck asker holds nobody back longer. An asker that gets an error, or
// is allowed, leaves the next request to ask.
func TestOneAskerAtATime(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	count := &countingHook{}
	block := &blockingHook{entered: make(chan struct{}), release: make(chan struct{})}
	c.AddHook(count)
	c.AddHook(block)
	l := newLimiter(t, c)
	t0 := time.Now()
	if _, ok, err := allowKey(ctx, l, "one", 1, t0); !ok || err != nil {
		t.Fatalf("first request: %v %v", ok, err)
	}
	rl, ok, err := allowKey(ctx, l, "one", 1, t0)
	if ok || err != nil {
		t.Fatalf("second request: %v %v", ok, err)
	}
	due := t0.Add(rl.RetryAfter)
	block.armed.Store(true)
	asked := make(chan bool)
	go func() {
		_, ok, err := allowKey(ctx, l, "one", 1, due)
		if err != nil {
			t.Error(err)
		}
		asked <- ok
	}()
	<-block.entered
	calls := count.n.Load()
	rl, ok, err = allowKey(ctx, l, "one", 1, due.Add(time.Millisecond))
	if ok || err != nil || count.n.Load() != calls || rl.RetryAfter <= 0 {
		t.Fatalf("while another asks: allowed %v (%v), %d calls, retry after %v; want a local refusal", ok, err, count.n.Load()-calls, rl.RetryAfter)
	}
	// The asker is stuck: past askTimeout the next request asks itself.
	if _, _, err := allowKey(ctx, l, "one", 1, due.Add(300*time.Millisecond)); err != nil || count.n.Load() != calls+1 {
		t.Fatalf("past the ask timeout: %v, %d calls (want 1)", err, count.n.Load()-calls)
	}
	close(block.release)
	<-asked

	// An error while asking: the next request asks again (here it gets
	// the error too) instead of being refused locally.
	t1 := due.Add(time.Minute)
	_, _, _ = allowKey(ctx, l, "one", 1, t1)
	if _, ok, err := allowKey(ctx, l, "one", 1, t1); ok || err != nil {
		t.Fatalf("a request over the limit: %v %v", ok, err)
	}
	later := t1.Add(2 * time.Minute)
	_ = c.Close()
	if _, _, err := allowKey(ctx, l, "one", 1, later); err == nil {
		t.Fatal("a closed client answered")
	}
	if _, _, err := allowKey(ctx, l, "one", 1, later.Add(time.Millisecond)); err == nil {
		t.Fatal("after an asker's error the next request was refused locally, not asked")
	}
}

// allowKey counts one request against a key's own limit of perMinute.
func allowKey(ctx context.Context, l limit.Limiter, id string, perMinute int, at time.Time) (limit.Status, bool, error) {
	return l.Allow(ctx, limit.Checks{{Name: limit.Key, ID: id, Max: perMinute}}, at)
}
