package keys_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

// logsOutage is a memstore whose request log can be taken down.
type logsOutage struct {
	*memstore.Store
	down  atomic.Bool
	calls atomic.Int64
}

func (s *logsOutage) AddLogs(ctx context.Context, b store.LogBatch) (int, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return 0, errors.New("connection refused")
	}
	return s.Store.AddLogs(ctx, b)
}

func entryOf(acct string, i int) *reqlog.Entry {
	return &reqlog.Entry{RequestID: fmt.Sprintf("req_%08d", i), Timestamp: time.Now().UTC(), AccountID: acct, KeyID: "key_a",
		Method: "GET", Path: "GET /v1/ping", API: "GET /v1/ping", Status: 200, IP: netip.MustParseAddr("198.51.100.77")}
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

// TestLogsOutageIsBoundedAndResumes: while the store refuses the log,
// entries wait in memory up to the bound, past it they are dropped and
// counted, and writing resumes when the store is back; LogRequest never
// waits meanwhile.
func TestLogsOutageIsBoundedAndResumes(t *testing.T) {
	st := &logsOutage{Store: memstore.New()}
	const buffer = 1024
	m, err := keys.New(st, keys.WithRequestLogs(reqlog.Config{Buffer: buffer}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	st.down.Store(true)
	ctx := context.Background()
	n := 0
	for round := range 30 {
		start := time.Now()
		for range 500 {
			m.LogRequest(entryOf("acct_o", n))
			n++
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Fatalf("round %d: 500 entries took %v while the store was down", round, d)
		}
		if err := m.Flush(ctx); err == nil {
			t.Fatal("a flush to a store that is down succeeded")
		}
	}
	dropped := m.LogsDropped()
	waiting := n - int(dropped["store_failing"]+dropped["buffer_full"])
	if dropped["store_failing"] == 0 || waiting > 2*buffer {
		t.Fatalf("%d recorded, %d waiting, dropped %v: want the wait bounded (twice the buffer) and the rest counted", n, waiting, dropped)
	}
	st.down.Store(false)
	for i := range 100 {
		m.LogRequest(entryOf("acct_o", n+i))
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if got := countLogs(t, m, "acct_o"); got != waiting+100 {
		t.Fatalf("after the outage the store holds %d, want the %d that waited and the 100 after", got, waiting+100)
	}
}

// TestLogRequestNeverWaits: with the buffer full and nothing flushing it,
// LogRequest drops and counts, allocates nothing, and takes no longer.
func TestLogRequestNeverWaits(t *testing.T) {
	st := &logsOutage{Store: memstore.New()}
	m, err := keys.New(st, keys.WithRequestLogs(reqlog.Config{Buffer: 256}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	e := entryOf("acct_w", 1)
	if a := testing.AllocsPerRun(1000, func() { m.LogRequest(e) }); a != 0 {
		t.Fatalf("LogRequest allocates %v times", a)
	}
	for range 10_000 {
		m.LogRequest(e)
	}
	if m.LogsDropped()["buffer_full"] == 0 {
		t.Fatal("a full buffer dropped nothing")
	}
}

// TestLogRequestConcurrent: entries recorded from many goroutines while
// the flusher drains are each stored once (run under -race).
func TestLogRequestConcurrent(t *testing.T) {
	m, err := keys.New(memstore.New(), keys.WithRequestLogs(reqlog.Config{Buffer: 1 << 16}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	var wg sync.WaitGroup
	const workers, each = 8, 1000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.LogRequest(entryOf("acct_c", w*each+i))
				if i%100 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	stop := make(chan struct{})
	go func() { // reads flush while the writers write
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = m.Logs(context.Background(), "acct_c", reqlog.Filter{Limit: 1})
			}
		}
	}()
	wg.Wait()
	close(stop)
	if d := m.LogsDropped(); d["buffer_full"] != 0 {
		t.Fatalf("dropped %v with room for every entry", d)
	}
	if got := countLogs(t, m, "acct_c"); got != workers*each {
		t.Fatalf("stored %d, want %d", got, workers*each)
	}
}

// TestIPModes: the default keeps the /24 (or /48); the host may keep
// all or none.
func TestIPModes(t *testing.T) {
	for _, c := range []struct {
		mode     reqlog.IPMode
		in, want string
	}{
		{reqlog.IPTruncated, "198.51.100.77", "198.51.100.0"},
		{reqlog.IPTruncated, "2001:db8:1234:5678::1", "2001:db8:1234::"},
		{reqlog.IPTruncated, "::ffff:198.51.100.77", "198.51.100.0"},
		{reqlog.IPFull, "198.51.100.77", "198.51.100.77"},
		{reqlog.IPFull, "fe80::1%eth0", "fe80::1"},
		{reqlog.IPNone, "198.51.100.77", "invalid IP"},
	} {
		if got := c.mode.Apply(netip.MustParseAddr(c.in)).String(); got != c.want {
			t.Errorf("%d %s: %s, want %s", c.mode, c.in, got, c.want)
		}
	}
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	m.LogRequest(entryOf("acct_ip", 1))
	e, err := m.Log(context.Background(), "acct_ip", "req_00000001")
	if err != nil || e.IP.String() != "198.51.100.0" {
		t.Fatalf("default IP mode: %v %v", e, err)
	}
}

// TestAFloodingTenantKeepsItsOwnEntries: one account past its daily cap
// loses only its own entries; another account's are all kept.
func TestAFloodingTenantKeepsItsOwnEntries(t *testing.T) {
	m, err := keys.New(memstore.New(), keys.WithRequestLogs(reqlog.Config{PerAccountDay: 500, Buffer: 1 << 16}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	for i := range 5000 {
		m.LogRequest(entryOf("acct_flood", i))
		if i%50 == 0 {
			m.LogRequest(entryOf("acct_quiet", i))
		}
	}
	if got := countLogs(t, m, "acct_quiet"); got != 100 {
		t.Fatalf("the quiet tenant keeps %d of its 100 entries", got)
	}
	if got := countLogs(t, m, "acct_flood"); got != 500 {
		t.Fatalf("the flooding tenant keeps %d, want its cap of 500", got)
	}
	if d := m.LogsDropped()["account_daily_cap"]; d != 4500 {
		t.Fatalf("dropped past the cap: %d, want 4500", d)
	}
}

func TestWithRequestLogsRefusesNonsense(t *testing.T) {
	for _, c := range []reqlog.Config{{Retention: time.Minute}, {PerAccountDay: -1}, {Buffer: -1}, {IP: 9}} {
		if _, err := keys.New(memstore.New(), keys.WithRequestLogs(c)); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestManagerPrunesPastRetention: the Manager's flusher prunes the store
// by its retention, on the Manager's clock, without being asked.
func TestManagerPrunesPastRetention(t *testing.T) {
	now := time.Now()
	m, err := keys.New(memstore.New(), keys.WithClock(func() time.Time { return now }), keys.WithRequestLogs(reqlog.Config{Retention: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	old, fresh := entryOf("acct_p", 1), entryOf("acct_p", 2)
	old.Timestamp = now.Add(-2 * time.Hour)
	m.LogRequest(old)
	m.LogRequest(fresh)
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for countLogs(t, m, "acct_p") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("an entry past the retention was not pruned within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := m.Log(context.Background(), "acct_p", fresh.RequestID); err != nil {
		t.Fatalf("the entry within the retention: %v", err)
	}
}
