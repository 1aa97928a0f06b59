package keys_test

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

// The request log's cost, beside BenchmarkVerifyFloor in the same run:
// BenchmarkVerifyLogged less BenchmarkVerifyCountedTimed is what recording one
// entry adds to Verify and usage counting (the bound: 0.4× the
// floor, 0 allocs); BenchmarkLogRequestParallel's throughput over
// BenchmarkLogRequest's is how recording scales on both cores (≥ 1.8×).
// docs/performance.md has the figures.

// benchEntry is what the middleware records for a verified request.
func benchEntry(v *keys.Verified, start time.Time) reqlog.Entry {
	return reqlog.Entry{RequestID: "req_ABCDEFGHIJKLMNOPQRSTUVWXYZ", Timestamp: start, AccountID: v.AccountID, KeyID: v.KeyID,
		Environment: string(v.Environment), Method: "GET", Path: "GET /v1/ping", API: "GET /v1/ping", Status: 200,
		Latency: time.Since(start), IP: netip.AddrFrom4([4]byte{198, 51, 100, 7}), UserAgent: "Go-http-client/1.1", ResponseBytes: 42}
}

// BenchmarkVerifyCountedTimed: Verify and CountUsage timed as the middleware times a request, one key, the log off.
func BenchmarkVerifyCountedTimed(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 0, keys.WithRequestLogs(reqlog.Config{Disabled: true}))
	benchVerifyCounted(b, m, ks[benchStoreSize/2], false)
}

// BenchmarkVerifyLogged: the same, and LogRequest.
func BenchmarkVerifyLogged(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 0)
	benchVerifyCounted(b, m, ks[benchStoreSize/2], true)
}

func benchVerifyCounted(b *testing.B, m *keys.Manager, key string, logged bool) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := serveOne(ctx, m, key, logged); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportLogDrops(b, m)
}

// serveOne is what the middleware does for a request of key, timed as
// it times one: Verify, CountUsage, and LogRequest if logged (else only
// the clock read the entry's latency would take).
func serveOne(ctx context.Context, m *keys.Manager, key string, logged bool) error {
	start := time.Now()
	v, err := m.Verify(ctx, key)
	if err != nil {
		return err
	}
	m.CountUsage(&v, "GET /v1/ping", 200)
	if logged {
		e := benchEntry(&v, start)
		m.LogRequest(&e)
	} else {
		sinkBool.Store(time.Since(start) < 0)
	}
	return nil
}

func reportLogDrops(b *testing.B, m *keys.Manager) {
	var n int64
	for reason, d := range m.LogsDropped() {
		if reason != "account_daily_cap" { // the store's, not the recorder's
			n += d
		}
	}
	b.ReportMetric(float64(n)/float64(b.N), "drops/op")
	if n > 0 && testing.Verbose() {
		b.Logf("dropped: %v", m.LogsDropped())
	}
}

// BenchmarkVerifyLoggedWalkParallel: both cores verifying, counting and
// logging requests that walk 100,000 stored keys.
func BenchmarkVerifyLoggedWalkParallel(b *testing.B) { benchWalkLogged(b, true) }

// BenchmarkVerifyCountedWalkParallel: the same without the log.
func BenchmarkVerifyCountedWalkParallel(b *testing.B) { benchWalkLogged(b, false) }

func benchWalkLogged(b *testing.B, logged bool) {
	cfg := reqlog.Config{Disabled: !logged}
	m, ks := benchKeys(b, benchStoreSize, 0, keys.WithRequestLogs(cfg))
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(7919)
		for pb.Next() {
			i += 7919
			if err := serveOne(ctx, m, ks[i%benchStoreSize], logged); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportLogDrops(b, m)
}

// BenchmarkLogRequest: recording alone, one goroutine, which drains its
// ring itself every 256 entries (the flusher's in-memory work, without a
// store), so that no entry takes the drop path.
func BenchmarkLogRequest(b *testing.B) {
	m, v := recorderOnly(b)
	e := benchEntry(&v, time.Now())
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	var buf []reqlog.Entry
	for b.Loop() {
		m.LogRequest(&e)
		if i++; i%256 == 0 {
			buf = keys.DiscardLogs(m, buf)
		}
	}
	b.StopTimer()
	reportLogDrops(b, m)
}

// BenchmarkLogRequestParallel: the same on both cores.
func BenchmarkLogRequestParallel(b *testing.B) {
	m, v := recorderOnly(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		e := benchEntry(&v, time.Now())
		i := 0
		var buf []reqlog.Entry
		for pb.Next() {
			m.LogRequest(&e)
			if i++; i%256 == 0 {
				buf = keys.DiscardLogs(m, buf)
			}
		}
	})
	b.StopTimer()
	reportLogDrops(b, m)
}

// recorderOnly is a Manager whose log goes to an exporter that drops it
// (on a store that keeps none), and a verified key of it.
func recorderOnly(b *testing.B) (*keys.Manager, keys.Verified) {
	m, err := keys.New(struct{ store.Store }{memstore.New()}, keys.WithRequestLogs(reqlog.Config{Exporter: discard{}, Buffer: 1024}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(context.Background()) })
	c, err := m.Create(context.Background(), keys.APIKeyCreate{Name: "b", Environment: keys.Live, AccountID: "acct_b"})
	if err != nil {
		b.Fatal(err)
	}
	v, err := m.Verify(context.Background(), string(c.Key))
	if err != nil {
		b.Fatal(err)
	}
	return m, v
}

type discard struct{}

func (discard) Export(context.Context, []reqlog.Entry) error { return nil }
