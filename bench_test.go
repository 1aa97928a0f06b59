package keys_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

// The floors are what the issues measure against, in the same run:
// Verify ≤ 1.5× BenchmarkVerifyFloor, Create ≤ 4× BenchmarkCreateFloor.
// Report ratios, not absolute times.

const benchStoreSize = 100_000

// benchKeys fills a memstore with n keys (and rateLimit on each, if > 0) and
// returns the manager and the plaintext keys.
func benchKeys(b *testing.B, n, rateLimit int, opts ...keys.Option) (*keys.Manager, []string) {
	req := keys.APIKeyCreate{Name: "bench", Environment: keys.Live, Permissions: []string{"identity:read"}, AccountID: "acct_bench"}
	if rateLimit > 0 {
		req.RateLimit = &rateLimit
	}
	return benchKeysLike(b, n, req, opts...)
}

// benchKeysLike fills a memstore with n keys made by req.
func benchKeysLike(b *testing.B, n int, req keys.APIKeyCreate, opts ...keys.Option) (*keys.Manager, []string) {
	b.Helper()
	m, err := keys.New(memstore.New(), append([]keys.Option{keys.WithMaxKeysPerAccount(10_000_000)}, opts...)...) // 100,000 keys in one account
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	out := make([]string, n)
	for i := range out {
		c, err := m.Create(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = string(c.Key)
	}
	runtime.GC() // so setup garbage is not collected on the clock
	return m, out
}

// floorTable is 100,000 digests in a map, as memstore holds them.
func floorTable(keyList []string) map[[32]byte]*int {
	t := make(map[[32]byte]*int, len(keyList))
	for i := range keyList {
		t[sha256.Sum256([]byte(keyList[i]))] = new(int)
	}
	return t
}

var sinkBool atomic.Bool

// BenchmarkVerifyFloor: SHA-256 of the key, one map lookup, time.Now().
func BenchmarkVerifyFloor(b *testing.B) {
	_, ks := benchKeys(b, benchStoreSize, 0)
	t := floorTable(ks)
	key := []byte(ks[benchStoreSize/2])
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p := t[sha256.Sum256(key)]
		now := time.Now()
		if p == nil || now.IsZero() {
			b.Fatal("floor lookup missed")
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 0)
	key := ks[benchStoreSize/2]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Verify(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyWithMetadata: keys carrying an owner and 1 KiB of
// metadata, which Verify returns as stored (target: BenchmarkVerify's
// ratio to the floor, 0 allocations).
func BenchmarkVerifyWithMetadata(b *testing.B) {
	meta := json.RawMessage(`{"customer":{"plan":"enterprise","tags":["` + strings.Repeat("t", 1000) + `"]}}`)
	m, ks := benchKeysLike(b, benchStoreSize, keys.APIKeyCreate{Name: "bench", Environment: keys.Live, Permissions: []string{"identity:read"},
		AccountID: "acct_bench", OwnerID: "cust_42", Metadata: meta})
	key := ks[benchStoreSize/2]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := m.Verify(ctx, key)
		if err != nil || len(v.Metadata) < 1000 {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRateLimited: the same key with a rate limit of
// the largest rate limit (10M/minute), so the benchmark measures the limiter's cost,
// not its refusals: the burst lasts for several seconds of verifying.
func BenchmarkVerifyRateLimited(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 10_000_000)
	key := ks[benchStoreSize/2]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, err := m.Verify(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		if v.RateLimit.Limit != 10_000_000 {
			b.Fatal("no rate limit applied")
		}
	}
}

func BenchmarkVerifyMalformed(b *testing.B) {
	m, ks := benchKeys(b, 1, 0)
	bad := []byte(ks[0])
	bad[len(bad)-1] ^= 1 // break the checksum
	key := string(bad)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Verify(ctx, key); err != keys.ErrInvalidKey {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallelFloor(b *testing.B) {
	_, ks := benchKeys(b, benchStoreSize, 0)
	t := floorTable(ks)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := []byte(ks[next.Add(7919)%benchStoreSize])
		for pb.Next() {
			if t[sha256.Sum256(key)] == nil || time.Now().IsZero() {
				sinkBool.Store(true)
			}
		}
	})
}

func BenchmarkVerifyParallel(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 0)
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine verifies its own key: distinct keys must not
		// contend on one lock.
		key := ks[next.Add(7919)%benchStoreSize]
		for pb.Next() {
			if _, err := m.Verify(ctx, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreateFloor: 32 bytes from crypto/rand, base62, SHA-256.
func BenchmarkCreateFloor(b *testing.B) {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b.ReportAllocs()
	var raw [32]byte
	var enc [32]byte
	for b.Loop() {
		if _, err := rand.Read(raw[:]); err != nil {
			b.Fatal(err)
		}
		for i, c := range raw {
			enc[i] = alphabet[c%62]
		}
		if sha256.Sum256(enc[:])[0] == 0 && enc[0] == 0 {
			sinkBool.Store(true)
		}
	}
}

// BenchmarkCreate creates keys on a memstore that is replaced (off the
// clock) every 10,000 keys, so that the figure is the cost of a create and
// not of collecting an ever-growing heap.
func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	req := keys.APIKeyCreate{Name: "bench", Environment: keys.Live, Permissions: []string{"identity:read", "fraud:write"}, AllowedIPs: []string{"10.0.0.0/8"}, AccountID: "acct_bench"}
	var m *keys.Manager
	fresh := func() {
		if m != nil {
			_ = m.Close(ctx)
		}
		var err error
		if m, err = keys.New(memstore.New()); err != nil {
			b.Fatal(err)
		}
	}
	fresh()
	defer func() { _ = m.Close(ctx) }()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n++; n%10_000 == 0 {
			b.StopTimer()
			fresh()
			b.StartTimer()
		}
		if _, err := m.Create(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
