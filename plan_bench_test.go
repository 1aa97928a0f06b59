package keys_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
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
