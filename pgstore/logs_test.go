package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/pgstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

func logEntry(acct string, i int) *reqlog.Entry {
	return &reqlog.Entry{RequestID: fmt.Sprintf("req_%s_%06d", acct, i), Timestamp: time.Now().UTC(), AccountID: acct, KeyID: "key_l",
		Environment: "live", Method: "GET", Path: "GET /v1/ping", API: "GET /v1/ping", Status: 200 + i%2*229}
}

func countLogs(t *testing.T, m *keys.Manager, acct string) int {
	t.Helper()
	n := 0
	f := reqlog.Filter{Limit: 100}
	for {
		p, err := m.Logs(context.Background(), acct, f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(p.Data)
		if !p.HasMore {
			return n
		}
		f.Cursor = p.NextCursor
	}
}

// TestLogsAcrossInstances: two instances on one database each record
// requests; either reads both's, each by its request ID.
func TestLogsAcrossInstances(t *testing.T) {
	admin := newPool(t)
	schema := freshSchema(t, admin)
	var ms [2]*keys.Manager
	for i := range ms {
		m, err := keys.New(newStore(t, newPool(t), schema))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		ms[i] = m
	}
	for i := range 300 {
		ms[i%2].LogRequest(logEntry("acct_x", i))
	}
	for _, m := range ms {
		if err := m.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range ms {
		if n := countLogs(t, m, "acct_x"); n != 300 {
			t.Fatalf("instance %d reads %d entries, want 300", i, n)
		}
		e, err := m.Log(context.Background(), "acct_x", fmt.Sprintf("req_acct_x_%06d", 1-i)) // the other's
		if err != nil || e.Status != 200+(1-i)*229 {
			t.Fatalf("instance %d reading the other's entry: %+v %v", i, e, err)
		}
	}
	if _, err := ms[0].Log(context.Background(), "acct_y", "req_acct_x_000001"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("another account read acct_x's entry: %v", err)
	}
}

// refusingPool is a pool that can be taken down: its connections are
// killed and new ones refused until it is brought back.
func refusingPool(t *testing.T) (pool *pgxpool.Pool, down func(), up func()) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	app := "keys_logs_" + strings.ToLower(rand.Text()[:8])
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	var refusing atomic.Bool
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if refusing.Load() {
			return errors.New("connection refused (the test's outage)")
		}
		return nil
	}
	if pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	admin := newPool(t)
	down = func() {
		refusing.Store(true)
		if _, err := admin.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, app); err != nil {
			t.Fatal(err)
		}
	}
	return pool, down, func() { refusing.Store(false) }
}

// TestLogsThroughAnOutage: while PostgreSQL is unreachable, entries wait
// in memory up to twice the buffer and the rest are dropped and counted;
// recording never waits; when it is back the waiting entries are written.
func TestLogsThroughAnOutage(t *testing.T) {
	pool, down, up := refusingPool(t)
	s := newStore(t, pool, "", pgstore.WithQueryTimeout(time.Second))
	const buffer = 1024
	m, err := keys.New(s, keys.WithRequestLogs(reqlog.Config{Buffer: buffer}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	ctx := context.Background()
	n := 0
	for range 200 {
		m.LogRequest(logEntry("acct_o", n))
		n++
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	down()
	for round := range 10 {
		start := time.Now()
		for range 500 {
			m.LogRequest(logEntry("acct_o", n))
			n++
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("round %d: recording 500 entries took %v during the outage", round, d)
		}
		if err := m.Flush(ctx); err == nil {
			t.Fatal("a flush during the outage succeeded")
		}
	}
	dropped := m.LogsDropped()
	lost := int(dropped["store_failing"] + dropped["buffer_full"])
	waiting := n - 200 - lost
	t.Logf("outage: %d recorded, %d waiting (bound %d), dropped %v", n-200, waiting, 2*buffer, dropped)
	if lost == 0 || waiting > 2*buffer {
		t.Fatalf("%d waiting, %d dropped: want at most %d waiting and the rest counted", waiting, lost, 2*buffer)
	}
	up()
	eventually(t, 10*time.Second, "the store is written again", func() bool { return m.Flush(ctx) == nil })
	if got := countLogs(t, m, "acct_o"); got != 200+waiting {
		t.Fatalf("after the outage: %d entries, want the 200 before and the %d that waited", got, waiting)
	}
}

// TestLogRetentionDropsPartitions: entries of ten days, pruned before
// the eighth: the older days' partitions are gone, the others hold
// their entries.
func TestLogRetentionDropsPartitions(t *testing.T) {
	pool := newPool(t)
	schema := freshSchema(t, pool)
	s := newStore(t, pool, schema)
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for d := range 10 {
		e := logEntry("acct_r", d)
		e.Timestamp = today.Add(time.Duration(d-9)*24*time.Hour + time.Hour)
		m.LogRequest(e)
	}
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	partitions := func() int {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1)`,
			pgx.Identifier{schema, "request_logs"}.Sanitize()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if p := partitions(); p != 10 {
		t.Fatalf("%d partitions for ten days", p)
	}
	if err := s.PruneLogs(context.Background(), today.Add(-2*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p := partitions(); p != 3 {
		t.Fatalf("%d partitions after pruning before the eighth day, want 3", p)
	}
	if n := countLogs(t, m, "acct_r"); n != 3 {
		t.Fatalf("%d entries kept, want 3", n)
	}
	// A late entry of a pruned day makes its partition again.
	e := logEntry("acct_r", 42)
	e.Timestamp = today.Add(-5 * 24 * time.Hour)
	m.LogRequest(e)
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := countLogs(t, m, "acct_r"); n != 4 {
		t.Fatalf("%d entries after a late one, want 4", n)
	}
}

// logBatch is n entries of 20 accounts and 200 keys, as one flush holds.
func logBatch(n int) []reqlog.Entry {
	es := make([]reqlog.Entry, n)
	now := time.Now().UTC()
	for i := range es {
		es[i] = reqlog.Entry{RequestID: "req_" + rand.Text(), Timestamp: now, AccountID: fmt.Sprintf("acct_%02d", i%20),
			KeyID: fmt.Sprintf("key_%03d", i%200), Environment: "live", Method: "GET", Path: "GET /v1/ping", API: "GET /v1/ping",
			Status: 200, Latency: 1234 * time.Microsecond, UserAgent: "Go-http-client/1.1", ResponseBytes: 42}
	}
	return es
}

// BenchmarkAddLogs: one batch of 10,000 entries a op through AddLogs
// (batch ID, daily counts, COPY), beside BenchmarkLogsRawCopy, the floor:
// the same rows COPYed into the same table alone (the bound:
// AddLogs at least 0.8× its throughput, ns/op at most 1.25× the floor's).
func BenchmarkAddLogs(b *testing.B) {
	s := newStore(b, newPool(b), "")
	es := logBatch(10_000)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.AddLogs(ctx, store.LogBatch{ID: rand.Text(), Entries: es, MaxPerDay: 1 << 30}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/entry")
}

func BenchmarkLogsRawCopy(b *testing.B) {
	pool := newPool(b)
	schema := freshSchema(b, pool)
	s := newStore(b, pool, schema)
	es := logBatch(10_000)
	ctx := context.Background()
	if _, err := s.AddLogs(ctx, store.LogBatch{ID: rand.Text(), Entries: es[:1], MaxPerDay: 10}); err != nil { // today's partition
		b.Fatal(err)
	}
	cols := []string{"ts", "account_id", "request_id", "key_id", "environment", "method", "path", "api", "status",
		"error_type", "error_code", "limit_name", "latency_us", "ip", "user_agent", "request_bytes", "response_bytes"}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{schema, "request_logs"}, cols, pgx.CopyFromFunc(func() ([]any, error) {
			if n == len(es) {
				return nil, nil
			}
			e := &es[n]
			n++
			return []any{e.Timestamp, e.AccountID, e.RequestID, e.KeyID, e.Environment, e.Method, e.Path, e.API, int16(e.Status),
				e.ErrorType, e.ErrorCode, e.Limit, e.Latency.Microseconds(), nil, e.UserAgent, e.RequestBytes, e.ResponseBytes}, nil
		})); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(es)), "ns/entry")
}
