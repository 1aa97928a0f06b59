package redislimit_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/redislimit"
)

// planChecks are a request's checks under a plan: the key's own limit,
// the account's per minute and per day.
func planChecks(key, account string, keyLimit, perMinute, perDay int) limit.Checks {
	return limit.Checks{
		{Name: limit.Key, ID: key, Max: keyLimit},
		{Name: limit.AccountMinute, ID: account, Max: perMinute},
		{Name: limit.AccountDay, ID: account, Max: perDay},
	}
}

// Two instances sharing one Redis hold an account's per-minute limit
// exactly between them, across its keys and many goroutines, and a refusal
// names the account's limit.
func TestAccountLimitAcrossInstances(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	prefix := redislimit.WithPrefix("keys-test:" + rand.Text() + ":")
	ls := []*redislimit.Limiter{newLimiter(t, c, prefix), newLimiter(t, c, prefix)}
	const perMinute = 40
	var passed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 15 {
				rl, ok, err := ls[g%2].Allow(ctx, planChecks(fmt.Sprint("key_", i%3), "acct_a", 0, perMinute, 0), time.Now())
				switch {
				case err != nil:
					t.Error(err)
				case ok:
					passed.Add(1)
				case rl.Name != limit.AccountMinute || rl.RetryAfter <= 0:
					t.Errorf("refused by %+v", rl)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != perMinute {
		t.Fatalf("%d passed across two instances, want exactly %d", passed.Load(), perMinute)
	}
}

// The day quota is exact across instances, counts a UTC day (Reset at the
// next midnight of Redis's clock), and a request refused by one check is
// counted by none.
func TestDayQuotaAcrossInstancesAndAllOrNothing(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	name := "keys-test:" + rand.Text() + ":"
	prefix := redislimit.WithPrefix(name)
	ls := []*redislimit.Limiter{newLimiter(t, c, prefix), newLimiter(t, c, prefix)}
	// Key a: its own limit of 2 refuses first; its refusals must not
	// spend the account's day.
	for i := range 6 {
		rl, ok, err := ls[i%2].Allow(ctx, planChecks("key_a", "acct_d", 2, 0, 10), time.Now())
		if err != nil || ok != (i < 2) || !ok && rl.Name != limit.Key {
			t.Fatalf("key a, request %d: %v %v %+v", i, ok, err, rl)
		}
	}
	var passed atomic.Int64
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for range 5 {
				rl, ok, err := ls[g%2].Allow(ctx, planChecks("key_b", "acct_d", 0, 0, 10), time.Now())
				if err != nil {
					t.Error(err)
				} else if ok {
					passed.Add(1)
				} else if rl.Name != limit.AccountDay {
					t.Errorf("refused by %+v", rl)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != 8 {
		t.Fatalf("key b passed %d times, want the day's 10 less key a's 2", passed.Load())
	}
	srv, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	midnight := srv.UTC().Truncate((24 * time.Hour)).Add((24 * time.Hour))
	rl, ok, err := ls[0].Allow(ctx, planChecks("key_c", "acct_d", 0, 0, 10), time.Now())
	if err != nil || ok || rl.Name != limit.AccountDay || !rl.Reset.Equal(midnight) || rl.RetryAfter > midnight.Sub(srv) || rl.RetryAfter < midnight.Sub(srv)-5*time.Second {
		t.Fatalf("over the day: %v %v %+v, want a refusal until %v", ok, err, rl, midnight)
	}
	// The day's count expires by itself at midnight.
	ttl, err := c.PTTL(ctx, name+"d:acct_d").Result()
	if err != nil || ttl > midnight.Sub(srv)+time.Millisecond || ttl < midnight.Sub(srv)-5*time.Second {
		t.Fatalf("the day's count expires in %v, want at %v (in %v): %v", ttl, midnight, midnight.Sub(srv), err)
	}
}

// All of a request's checks cost one round trip.
func TestAllChecksInOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	hook := &countingHook{}
	c.AddHook(hook)
	l := newLimiter(t, c)
	checks := planChecks("key_r", "acct_r", 100, 1000, 10_000)
	checks[3] = limit.Check{Name: limit.Endpoint, ID: "key_r", Route: "POST /identity/verify", Max: 100}
	for i := range 10 {
		if _, ok, err := l.Allow(ctx, checks, time.Now()); !ok || err != nil {
			t.Fatalf("request %d: %v %v", i, ok, err)
		}
	}
	if n := hook.n.Load(); n != 10 {
		t.Fatalf("%d script calls for 10 requests of 4 checks", n)
	}
}

// A remembered refusal of the account's counter refuses the account's
// other keys locally too, until its retry time.
func TestAccountRefusalIsRememberedForEveryKey(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	hook := &countingHook{}
	c.AddHook(hook)
	l := newLimiter(t, c)
	for i := range 3 {
		_, ok, err := l.Allow(ctx, planChecks(fmt.Sprint("key_", i), "acct_m", 0, 2, 0), time.Now())
		if err != nil || ok != (i < 2) {
			t.Fatalf("request %d: %v %v", i, ok, err)
		}
	}
	calls := hook.n.Load()
	for i := range 100 {
		rl, ok, err := l.Allow(ctx, planChecks(fmt.Sprint("key_other_", i), "acct_m", 0, 2, 0), time.Now())
		if err != nil || ok || rl.Name != limit.AccountMinute {
			t.Fatalf("another key of the account: %v %v %+v", ok, err, rl)
		}
	}
	if n := hook.n.Load() - calls; n != 0 {
		t.Fatalf("%d Redis calls for 100 requests the account's remembered refusal answers", n)
	}
}

// Requests in flight never exceed the limit across two instances, and
// capacity comes back as leases are released.
func TestConcurrencyAcrossInstances(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	prefix := redislimit.WithPrefix("keys-test:" + rand.Text() + ":")
	ls := []*redislimit.Limiter{newLimiter(t, c, prefix), newLimiter(t, c, prefix)}
	const burst = 4
	var inFlight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			l := ls[g%2]
			for range 25 {
				lease, ok, err := l.Acquire(ctx, "acct_c", burst, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					continue
				}
				n := inFlight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				admitted.Add(1)
				time.Sleep(time.Millisecond)
				inFlight.Add(-1)
				if err := l.Release(ctx, lease); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if peak.Load() > burst || admitted.Load() < burst {
		t.Fatalf("peak %d in flight (limit %d), %d admitted", peak.Load(), burst, admitted.Load())
	}
	for i := range burst {
		if _, ok, err := ls[i%2].Acquire(ctx, "acct_c", burst, time.Now()); !ok || err != nil {
			t.Fatalf("lease %d after every release: %v %v", i, ok, err)
		}
	}
	if _, ok, _ := ls[0].Acquire(ctx, "acct_c", burst, time.Now()); ok {
		t.Fatal("a lease over the limit")
	}
}

// An instance that dies holding leases (it never releases them, nor
// renews them) gives them back within the lease time, while the live
// instance keeps taking and releasing its own (so the set itself never
// expires).
func TestLeasesOfADeadInstanceExpire(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	prefix := "keys-test:" + rand.Text() + ":"
	lease := redislimit.WithLeaseTime(300 * time.Millisecond)
	dead := newLimiter(t, c, redislimit.WithPrefix(prefix), lease)
	alive := newLimiter(t, c, redislimit.WithPrefix(prefix), lease)
	for range 2 {
		if _, ok, err := dead.Acquire(ctx, "acct_dead", 3, time.Now()); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if err := dead.Close(ctx); err != nil { // it dies: no more renewals
		t.Fatal(err)
	}
	start := time.Now()
	for {
		a, ok, err := alive.Acquire(ctx, "acct_dead", 3, time.Now())
		if err != nil || !ok {
			t.Fatalf("the third slot: %v %v", ok, err)
		}
		b, ok, err := alive.Acquire(ctx, "acct_dead", 3, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_ = alive.Release(ctx, a)
		if ok {
			_ = alive.Release(ctx, b)
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("the dead instance's leases never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e := time.Since(start); e < 250*time.Millisecond {
		t.Fatalf("a lease came back after %v, before the lease time", e)
	}
}

// A request that runs longer than the lease time keeps its slot: the
// instance holding the lease renews it every third of the lease time
// while it is held. Once the instance stops (Close, as a crash does), the
// slot comes back within the lease time.
func TestLeasesAreRenewedWhileHeld(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	prefix := "keys-test:" + rand.Text() + ":"
	lease := redislimit.WithLeaseTime(300 * time.Millisecond)
	holder := newLimiter(t, c, redislimit.WithPrefix(prefix), lease)
	other := newLimiter(t, c, redislimit.WithPrefix(prefix), lease)
	defer other.Close(ctx)
	if _, ok, err := holder.Acquire(ctx, "acct_long", 1, time.Now()); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if l, ok, err := other.Acquire(ctx, "acct_long", 1, time.Now()); err != nil || ok {
			_ = other.Release(ctx, l)
			t.Fatalf("a second slot while a request of over 3 lease times runs: %v %v", ok, err)
		}
	}
	if err := holder.Close(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		if l, ok, err := other.Acquire(ctx, "acct_long", 1, time.Now()); err != nil {
			t.Fatal(err)
		} else if ok {
			_ = other.Release(ctx, l)
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("the stopped holder's lease never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Of a request that passed, the tightest check is reported.
func TestTightestCheckIsReported(t *testing.T) {
	ctx := context.Background()
	l := newLimiter(t, liveClient(t))
	for _, c := range []struct {
		key, minute, day int
		want             limit.Name
		remaining        int
	}{
		{10, 5, 100, limit.AccountMinute, 4},
		{3, 5, 100, limit.Key, 2},
		{30, 50, 20, limit.AccountDay, 19},
	} {
		rl, ok, err := l.Allow(ctx, planChecks("key_"+rand.Text(), "acct_"+rand.Text(), c.key, c.minute, c.day), time.Now())
		if err != nil || !ok || rl.Name != c.want || rl.Remaining != c.remaining {
			t.Fatalf("%+v: %v %v %+v", c, ok, err, rl)
		}
	}
}

// The Manager, two instances on one Redis and one store: a plan's account
// limit and concurrency hold across both.
func TestPlansThroughTwoManagers(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	prefix := redislimit.WithPrefix("keys-test:" + rand.Text() + ":")
	store := memstore.New()
	plan := func(context.Context, string) (keys.Plan, error) {
		return keys.Plan{PerMinute: 30, PerDay: 1000, Concurrent: 2}, nil
	}
	var ms []*keys.Manager
	for range 2 {
		m, err := keys.New(store, keys.WithLimiter(newLimiter(t, c, prefix)), keys.WithPlans(plan, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(ctx)
		ms = append(ms, m)
	}
	created, err := ms[0].Create(ctx, keys.APIKeyCreate{AccountID: "acct_two", Name: "k", Environment: keys.Test})
	if err != nil {
		t.Fatal(err)
	}
	key := string(created.Key)
	passed := 0
	for i := range 40 {
		if _, err := ms[i%2].Verify(ctx, key); err == nil {
			passed++
		} else if !errors.Is(err, keys.ErrRateLimited) {
			t.Fatal(err)
		}
	}
	if passed != 30 {
		t.Fatalf("%d passed across two Managers, want 30", passed)
	}
	v := keys.Verified{KeyID: created.ID, AccountID: "acct_two"}
	s1, err1 := ms[0].Acquire(ctx, &v)
	s2, err2 := ms[1].Acquire(ctx, &v)
	_, err3 := ms[0].Acquire(ctx, &v)
	if err1 != nil || err2 != nil || !errors.Is(err3, keys.ErrRateLimited) {
		t.Fatalf("acquire: %v %v %v", err1, err2, err3)
	}
	s1()
	if s3, err := ms[1].Acquire(ctx, &v); err != nil {
		t.Fatalf("after a release on the other instance: %v", err)
	} else {
		s3()
	}
	s2()
}

// BenchmarkRedisPlan is a request under a plan (its key's limit, its
// account's per minute and per day: three checks, one round trip), beside
// one raw INCR round trip to the same Redis.
func BenchmarkRedisPlan(b *testing.B) {
	ctx := context.Background()
	c := newClient(b, addr(b))
	l := newLimiter(b, c)
	checks := planChecks("bench", "acct_bench", 10_000_000, 10_000_000, 10_000_000)
	b.Run("plan", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := l.Allow(ctx, checks, time.Now()); err != nil {
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

// A lease is renewed for MaxRenewal at most: a request held longer (or
// whose release was lost) stops counting within the lease time after it.
func TestLeasesAreRenewedForABoundedTime(t *testing.T) {
	ctx := context.Background()
	c := liveClient(t)
	prefix := "keys-test:" + rand.Text() + ":"
	lease := redislimit.WithLeaseTime(300 * time.Millisecond)
	holder := newLimiter(t, c, redislimit.WithPrefix(prefix), lease)
	redislimit.SetMaxRenewal(holder, 600*time.Millisecond)
	other := newLimiter(t, c, redislimit.WithPrefix(prefix), lease)
	start := time.Now()
	if _, ok, err := holder.Acquire(ctx, "acct_lost", 1, time.Now()); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for {
		l, ok, err := other.Acquire(ctx, "acct_lost", 1, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			_ = other.Release(ctx, l)
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("a lease never released was renewed past its bound")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e := time.Since(start); e < 600*time.Millisecond {
		t.Fatalf("the slot came back after %v, before the renewals' bound (600 ms)", e)
	}
}
