package keys_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
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
		// Odd networks and a high host byte, so that a /23 or a /25 (a
		// /47 or a /49) would show.
		{reqlog.IPTruncated, "198.51.101.200", "198.51.101.0"},
		{reqlog.IPTruncated, "2001:db8:1235:8678::1", "2001:db8:1235::"},
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

// The reads' rules, in Go: pages of the asked size with a cursor to the
// rest, filters checked, another account's key a not-found, a principal
// without an account refused.
func TestLogReadsRules(t *testing.T) {
	ctx := context.Background()
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	mine, err := m.Create(ctx, keys.APIKeyCreate{Name: "mine", Environment: keys.Test, AccountID: "acct_r"})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := m.Create(ctx, keys.APIKeyCreate{Name: "theirs", Environment: keys.Test, AccountID: "acct_other"})
	if err != nil {
		t.Fatal(err)
	}
	long := "req_" + strings.Repeat("L", reqlog.MaxRequestIDLen-4)
	for i := range 5 {
		e := entryOf("acct_r", i)
		e.KeyID = mine.ID
		m.LogRequest(e)
	}
	e := entryOf("acct_r", 99)
	e.RequestID = long
	m.LogRequest(e)
	as := m.As(keys.Principal{AccountID: "acct_r", Subject: mine.ID})
	p, err := as.Logs(ctx, reqlog.Filter{Limit: 2, KeyID: mine.ID})
	if err != nil || len(p.Data) != 2 || !p.HasMore || p.NextCursor == "" {
		t.Fatalf("a page of 2 of 5: %+v %v", p, err)
	}
	p, err = as.Logs(ctx, reqlog.Filter{Limit: 5, KeyID: mine.ID})
	if err != nil || len(p.Data) != 5 || p.HasMore || p.NextCursor != "" {
		t.Fatalf("a page of 5 of 5: %d entries, more %v, %v", len(p.Data), p.HasMore, err)
	}
	if _, err := as.Logs(ctx, reqlog.Filter{KeyID: theirs.ID}); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("another account's key: %v", err)
	}
	if _, err := m.As(keys.Principal{Subject: "x"}).Logs(ctx, reqlog.Filter{}); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("a principal without an account: %v", err)
	}
	if _, err := m.As(keys.Principal{Subject: "x"}).Log(ctx, "req_00000001"); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("a principal without an account reading one: %v", err)
	}
	for _, c := range []struct {
		f     reqlog.Filter
		param string
	}{
		{reqlog.Filter{Limit: -1}, "limit"},
		{reqlog.Filter{Limit: reqlog.MaxLimit + 1}, "limit"},
		{reqlog.Filter{Start: time.Now(), End: time.Now().Add(-time.Second)}, "end"},
		{reqlog.Filter{Start: time.Unix(5, 0), End: time.Unix(5, 0)}, "end"},
		{reqlog.Filter{Status: reqlog.Status{Min: 99, Max: 99}}, "status"},
		{reqlog.Filter{Status: reqlog.Status{Min: 500, Max: 600}}, "status"},
		{reqlog.Filter{Status: reqlog.Status{Min: 500, Max: 499}}, "status"},
		{reqlog.Filter{Method: strings.Repeat("M", 257)}, ""},
		{reqlog.Filter{API: strings.Repeat("a", 257)}, ""},
		{reqlog.Filter{RequestID: long + "x"}, ""},
		{reqlog.Filter{Cursor: "!"}, "cursor"},
	} {
		var ve *keys.ValidationError
		if _, err := m.Logs(ctx, "acct_r", c.f); !errors.As(err, &ve) || ve.Param != c.param {
			t.Errorf("%+v: %v, want a validation error of %q", c.f, err, c.param)
		}
	}
	for _, f := range []reqlog.Filter{{Limit: 1}, {Limit: reqlog.MaxLimit}, {Status: reqlog.Status{Min: 100, Max: 599}}, {Method: strings.Repeat("M", 256)},
		{RequestID: long}, {Start: time.Unix(5, 0), End: time.Unix(6, 0)}} {
		if _, err := m.Logs(ctx, "acct_r", f); err != nil {
			t.Errorf("%+v, at its bounds: %v", f, err)
		}
	}
	if got, err := m.Log(ctx, "acct_r", long); err != nil || got.RequestID != long {
		t.Fatalf("a request ID of the longest kept: %v", err)
	}
	if _, err := m.Log(ctx, "acct_r", long+"x"); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("a request ID past the longest kept: %v", err)
	}
	if _, err := m.Logs(ctx, "", reqlog.Filter{}); err == nil {
		t.Fatal("a read naming no account")
	}
}
