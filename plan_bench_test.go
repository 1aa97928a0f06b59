package keys_test

import (
	"context"
	"crypto/sha256"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/memstore"
)

// bigPlan limits every account far above what a benchmark sends, so that
// the limits are checked and never refuse.
func bigPlan(context.Context, string) (keys.Plan, error) {
	return keys.Plan{PerMinute: 10_000_000, PerDay: 10_000_000}, nil
}

// BenchmarkVerifyPlan: a key with its own rate limit, under an account
// plan per minute and per day, in memory: three checks (target: 2.5× the
// Verify floor, 0 allocations).
func BenchmarkVerifyPlan(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 10_000_000, keys.WithPlans(bigPlan, time.Hour))
	key := ks[benchStoreSize/2]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := m.Verify(ctx, key)
		if err != nil || v.RateLimit.Name == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCounted is BenchmarkVerify with the request's usage
// counted: the difference is what counting costs (target: 50 ns, 0
// allocations).
func BenchmarkVerifyCounted(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 0)
	key := ks[benchStoreSize/2]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := m.Verify(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		m.CountUsage(&v, "GET /v1/ping", 200)
	}
}

// BenchmarkCountUsageParallel counts on both cores, each goroutine its own
// key; its ns/op beside BenchmarkCountUsage's gives the parallel speed-up
// (target: 1.8× the serial throughput on 2 cores).
func BenchmarkCountUsageParallel(b *testing.B) {
	m, ks := benchKeys(b, 64, 0)
	var next atomic.Int64
	vs := make([]*keys.Verified, len(ks))
	for i, k := range ks {
		v, err := m.Verify(context.Background(), k)
		if err != nil {
			b.Fatal(err)
		}
		vs[i] = &v
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		v := vs[next.Add(1)%int64(len(vs))]
		for pb.Next() {
			m.CountUsage(v, "GET /v1/ping", 200)
		}
	})
}

// BenchmarkCountUsage is one count, serial.
func BenchmarkCountUsage(b *testing.B) {
	m, ks := benchKeys(b, 1, 0)
	v, err := m.Verify(context.Background(), ks[0])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.CountUsage(&v, "GET /v1/ping", 200)
	}
}

// distinctKeys is how many keys the distinct-key benchmarks walk:
// 1,000,000, or KEYS_BENCH_DISTINCT.
func distinctKeys() int {
	if n, err := strconv.Atoi(os.Getenv("KEYS_BENCH_DISTINCT")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// distinct is a Manager holding distinctKeys() keys, imported (fast),
// and the keys in a shuffled order, made once per process.
var distinct struct {
	m  *keys.Manager
	ks []string
	t  map[[32]byte]*int
}

func distinctSetup(b *testing.B) (*keys.Manager, []string, map[[32]byte]*int) {
	if distinct.m != nil {
		return distinct.m, distinct.ks, distinct.t
	}
	n := distinctKeys()
	m, err := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(10_000_000))
	if err != nil {
		b.Fatal(err)
	}
	ks := make([]string, 0, n)
	batch := make([]keys.ImportKey, 0, 10000)
	for len(ks) < n {
		batch = batch[:0]
		for range min(10000, n-len(ks)) {
			c, err := keys.GenerateForBench(m)
			if err != nil {
				b.Fatal(err)
			}
			ks = append(ks, c)
			batch = append(batch, keys.ImportKey{Key: keys.Secret(c), Name: "bench", Environment: keys.Live, AccountID: "acct_" + strconv.Itoa(len(ks)%1000)})
		}
		if _, err := m.Import(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	t := make(map[[32]byte]*int, n)
	for _, k := range ks {
		t[sha256.Sum256([]byte(k))] = new(int)
	}
	runtime.GC()
	distinct.m, distinct.ks, distinct.t = m, ks, t
	return m, ks, t
}

// BenchmarkVerifyDistinctFloor walks the same keys as BenchmarkVerifyDistinct:
// SHA-256, a Go map of every digest, the clock.
func BenchmarkVerifyDistinctFloor(b *testing.B) {
	_, ks, t := distinctSetup(b)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if t[sha256.Sum256([]byte(ks[i]))] == nil || time.Now().IsZero() {
			b.Fatal("floor lookup missed")
		}
		if i++; i == len(ks) {
			i = 0
		}
	}
}

// BenchmarkVerifyDistinct verifies a different key each time, from a
// million stored, with its usage counted (target: 1.3× the floor).
func BenchmarkVerifyDistinct(b *testing.B) {
	m, ks, _ := distinctSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		v, err := m.Verify(ctx, ks[i])
		if err != nil {
			b.Fatal(err)
		}
		m.CountUsage(&v, "GET /v1/ping", 200)
		if i++; i == len(ks) {
			i = 0
		}
	}
}

// BenchmarkVerifyDistinctParallelFloor and BenchmarkVerifyDistinctParallel:
// the same on both cores, each goroutine walking its own stretch.
func BenchmarkVerifyDistinctParallelFloor(b *testing.B) {
	_, ks, t := distinctSetup(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(int64(len(ks)/7))) % len(ks)
		for pb.Next() {
			if t[sha256.Sum256([]byte(ks[i]))] == nil || time.Now().IsZero() {
				sinkBool.Store(true)
			}
			if i++; i == len(ks) {
				i = 0
			}
		}
	})
}

func BenchmarkVerifyDistinctParallel(b *testing.B) {
	m, ks, _ := distinctSetup(b)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(int64(len(ks)/7))) % len(ks)
		for pb.Next() {
			v, err := m.Verify(ctx, ks[i])
			if err != nil {
				b.Error(err)
				return
			}
			m.CountUsage(&v, "GET /v1/ping", 200)
			if i++; i == len(ks) {
				i = 0
			}
		}
	})
}

// BenchmarkVerifyCredits: a key with credits (memstore: a read-locked map
// lookup and the budget's own mutex) spends one credit per Verify; beside
// BenchmarkVerify it is what a credit costs in memory, 0 allocations.
func BenchmarkVerifyCredits(b *testing.B) {
	budget := int64(credits.Max)
	m, ks := benchKeysLike(b, benchStoreSize, keys.APIKeyCreate{Name: "bench", Environment: keys.Live, AccountID: "acct_bench",
		Credits: &credits.Budget{Remaining: budget}})
	key := ks[benchStoreSize/2]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := m.Verify(ctx, key)
		if err != nil || v.Spent != 1 {
			b.Fatal(err)
		}
	}
}
