package keys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

// FuzzLogCursor: any cursor is refused or read as a position that
// encodes back to the same position; none panics.
func FuzzLogCursor(f *testing.F) {
	f.Add(encodeLogCursor(&reqlog.Entry{Timestamp: time.Unix(1_800_000_000, 123), RequestID: "req_ABC"}))
	f.Add("MTIz")
	f.Add("")
	f.Add("LTEgcmVxXw")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeLogCursor(s)
		if err != nil {
			return
		}
		if c.RequestID == "" || len(c.RequestID) > reqlog.MaxRequestIDLen {
			t.Fatalf("%q: request ID %q", s, c.RequestID)
		}
		again, err := decodeLogCursor(encodeLogCursor(&reqlog.Entry{Timestamp: c.Timestamp, RequestID: c.RequestID}))
		if err != nil || !again.Timestamp.Equal(c.Timestamp) || again.RequestID != c.RequestID {
			t.Fatalf("%q: %+v does not round-trip: %+v", s, c, again)
		}
	})
}

// failingLogs is a log store that fails while down, counting its calls.
type failingLogs struct {
	store.Store
	down  bool
	calls int
	got   int
	ids   map[string]int // request IDs stored, and how often
}

func (f *failingLogs) AddLogs(_ context.Context, b store.LogBatch) (int, error) {
	f.calls++
	if f.down {
		return 0, errors.New("down")
	}
	f.got += len(b.Entries)
	if f.ids == nil {
		f.ids = map[string]int{}
	}
	for _, e := range b.Entries {
		f.ids[e.RequestID]++
	}
	return 0, nil
}
func (f *failingLogs) Logs(context.Context, store.LogQuery) ([]reqlog.Entry, error) { return nil, nil }
func (f *failingLogs) PruneLogs(context.Context, time.Time) error                   { return nil }

type countingExporter struct {
	calls, entries int
	fail           bool
}

func (x *countingExporter) Export(_ context.Context, es []reqlog.Entry) error {
	x.calls++
	x.entries += len(es)
	if x.fail {
		return errors.New("collector down")
	}
	return nil
}

// The rings: two a processor, each a power of two holding its share of
// the buffer, and twice the buffer waiting for a failing store.
func TestLogBookShape(t *testing.T) {
	st := &failingLogs{Store: memstore.New()}
	procs := runtime.GOMAXPROCS(0)
	for _, c := range []struct{ buffer, ring int }{{0, reqlog.DefaultBuffer / (2 * procs)}, {1024, 1024 / (2 * procs)}, {1000, 1024 / (2 * procs)}, {8, 16}} {
		l := newLogBook(st, reqlog.Config{Buffer: c.buffer}, []string{"txc_"})
		want := max(16, c.ring)
		if len(l.rings) != max(2, 2*procs) || l.ringSize != want || l.maxPend != 2*cmp.Or(c.buffer, reqlog.DefaultBuffer) {
			t.Errorf("buffer %d: %d rings of %d, %d pending; want %d of %d, %d", c.buffer, len(l.rings), l.ringSize, l.maxPend, max(2, 2*procs), want, 2*cmp.Or(c.buffer, reqlog.DefaultBuffer))
		}
		for i := range l.rings {
			if l.rings[i].index != i {
				t.Fatal("a ring does not know its index")
			}
		}
	}
	if newLogBook(st, reqlog.Config{Disabled: true}, []string{"txc_"}) != nil {
		t.Error("Disabled keeps a log")
	}
	bare := struct{ store.Store }{memstore.New()}
	if newLogBook(bare, reqlog.Config{}, []string{"txc_"}) != nil {
		t.Error("a log with nowhere to go")
	}
	if newLogBook(bare, reqlog.Config{Exporter: &countingExporter{}}, nil) == nil {
		t.Error("no log for an exporter on a store that keeps none")
	}
}

// record: entries go in order, a wake each time a quarter of the ring
// fills, and a full ring drops and counts.
func TestRingRecordsWakesAndDrops(t *testing.T) {
	l := newLogBook(&failingLogs{Store: memstore.New()}, reqlog.Config{Buffer: 8}, []string{"txc_"})
	r := &l.rings[0]
	e := reqlog.Entry{AccountID: "acct", RequestID: "req_1", Path: strings.Repeat("p", 300), UserAgent: strings.Repeat("u", 300),
		IP: netip.MustParseAddr("198.51.100.9")}
	wakes := 0
	for i := range 16 {
		if got := l.record(r, &e); got != r {
			t.Fatal("an uncontended record moved ring")
		}
		select {
		case <-l.wake:
			wakes++
			if (i+1)%4 != 0 {
				t.Fatalf("woken after %d entries", i+1)
			}
		default:
		}
	}
	if wakes != 4 {
		t.Fatalf("%d wakes for 16 entries in a ring of 16, want 4", wakes)
	}
	if l.dropped[dropFull].Load() != 0 {
		t.Fatal("dropped before the ring was full")
	}
	// Full: the entry spills into the next ring, and so on until every
	// ring is full; then it is dropped.
	if got := l.record(r, &e); got != r || l.rings[1].tail.Load() != 1 || l.dropped[dropFull].Load() != 0 {
		t.Fatal("an entry for a full ring did not go to the next, or the core left its ring")
	}
	for range 16*len(l.rings) - 17 {
		l.record(&l.rings[0], &e)
	}
	if l.dropped[dropFull].Load() != 0 {
		t.Fatal("dropped with room in another ring")
	}
	l.record(r, &e)
	if l.dropped[dropFull].Load() != 1 {
		t.Fatal("every ring full, and nothing dropped")
	}
	for i := 1; i < len(l.rings); i++ {
		l.rings[i].drain(l, nil)
	}
	out := r.drain(l, nil)
	if len(out) != 16 || len(out[0].Path) != reqlog.MaxPathLen || len(out[0].UserAgent) != reqlog.MaxUserAgentLen || out[0].IP.String() != "198.51.100.0" {
		t.Fatalf("drained %d, first %+v", len(out), out[0])
	}
	if s := *r.slots.Load(); s[0].e.Path != "" {
		t.Fatal("a drained slot keeps its strings")
	}
	l.record(r, &e) // room again
	if len(r.drain(l, nil)) != 1 || l.dropped[dropFull].Load() != 1 {
		t.Fatal("the ring did not take an entry after draining")
	}
}

// flushLogs: a failing store keeps at most twice the buffer waiting,
// drops and counts the rest, and gets the waiting ones first when back;
// an exporter gets every entry, its failure counted; nothing drained
// exports nothing.
func TestFlushLogsBounds(t *testing.T) {
	st := &failingLogs{Store: memstore.New(), down: true}
	x := &countingExporter{}
	m, err := New(st, WithRequestLogs(reqlog.Config{Buffer: 64, Exporter: x}))
	if err != nil {
		t.Fatal(err)
	}
	// Closed, so that its flusher is stopped: this test flushes by hand.
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l := m.rlog
	batch := 0
	flush := func(n int, account string) error {
		t.Helper()
		batch++
		for i := range n {
			r := &l.rings[i%len(l.rings)]
			l.record(r, &reqlog.Entry{AccountID: account, RequestID: fmt.Sprint("req_", batch, "_", i)})
		}
		return m.flushLogs(context.Background())
	}
	if err := flush(0, "a"); err != nil || x.calls != 0 {
		t.Fatalf("an empty flush: %v, %d exports", err, x.calls)
	}
	// One flush that succeeds, so that the drain's buffer is kept; the
	// failing flushes after it must not write into what is waiting.
	st.down = false
	if err := flush(10, "a"); err != nil || st.got != 10 {
		t.Fatalf("a flush that succeeds: %v, %d stored", err, st.got)
	}
	st.down, st.got, st.ids = true, 0, nil
	// Small failing flushes first: the first drains into the kept
	// buffer, and the second must not reuse it while it waits.
	if err := flush(5, "a"); err == nil || l.pendingN != 5 || l.dropped[dropStore].Load() != 0 {
		t.Fatalf("first failing flush: %v, %d waiting, %d dropped", err, l.pendingN, l.dropped[dropStore].Load())
	}
	if err := flush(5, "a"); err == nil || l.pendingN != 10 {
		t.Fatalf("second: %d waiting, want 10", l.pendingN)
	}
	if err := flush(60, "a"); err == nil || l.pendingN != 70 {
		t.Fatalf("third: %d waiting, want 70", l.pendingN)
	}
	if err := flush(58, "a"); err == nil || l.pendingN != 128 || l.dropped[dropStore].Load() != 0 {
		t.Fatalf("fourth, up to 128: %d waiting, %d dropped; want 128, 0", l.pendingN, l.dropped[dropStore].Load())
	}
	if err := flush(9, "a"); err == nil || l.pendingN != 128 || l.dropped[dropStore].Load() != 9 {
		t.Fatalf("fifth, past 128: %d waiting, %d dropped; want 128, 9", l.pendingN, l.dropped[dropStore].Load())
	}
	if x.entries != 147 {
		t.Fatalf("the exporter got %d entries, want every one (147)", x.entries)
	}
	st.down = false
	if err := flush(5, ""); err != nil || st.got != 128 || l.pendingN != 0 || len(l.pending) != 0 {
		t.Fatalf("back: %v, stored %d (want the 128 waiting; the 5 of no account only exported), %d waiting", err, st.got, l.pendingN)
	}
	// Exactly the entries of the four failing flushes that waited (the
	// third to the sixth), each once; none of the seventh, dropped.
	for b, n := range map[int]int{3: 5, 4: 5, 5: 60, 6: 58} {
		for i := range n {
			if id := fmt.Sprint("req_", b, "_", i); st.ids[id] != 1 {
				t.Fatalf("%s stored %d times: a later drain wrote over what waited", id, st.ids[id])
			}
		}
	}
	x.fail = true
	if err := flush(3, "a"); err != nil || l.dropped[dropExport].Load() != 3 || st.got != 131 {
		t.Fatalf("a failing exporter: %v, %d counted, %d stored", err, l.dropped[dropExport].Load(), st.got)
	}
	if cap(l.scratch) == 0 || len(l.scratch) != 0 {
		t.Fatal("the drain's buffer is not kept for the next flush")
	}
	for _, e := range l.scratch[:cap(l.scratch)] {
		if e.RequestID != "" {
			t.Fatal("the kept buffer holds entries' strings")
		}
	}
}

// The summaries of drops and of failures are logged once a minute at
// most, and the first at once.
func TestLogDropsAreSummarisedOnceAMinute(t *testing.T) {
	var buf strings.Builder
	m, err := New(memstore.New(), WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	l := m.rlog
	for range 3 {
		l.drop(m, dropFull, 2)
		l.failed(m, errors.New("down"))
	}
	if n := strings.Count(buf.String(), "request log entries were dropped"); n != 1 {
		t.Fatalf("%d drop summaries for three drops in a minute, want 1:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "writing the request log failed"); n != 1 {
		t.Fatalf("%d failure lines, want 1", n)
	}
	if !strings.Contains(buf.String(), "dropped_buffer_full_total=2") || l.dropped[dropFull].Load() != 6 {
		t.Fatalf("the summary or the count is wrong: %s, %d", buf.String(), l.dropped[dropFull].Load())
	}
	l.warnedDrop.last.Store(time.Now().Add(-61 * time.Second).UnixNano())
	l.warnedFail.last.Store(time.Now().Add(-61 * time.Second).UnixNano())
	l.drop(m, dropFull, 1)
	l.failed(m, errors.New("down"))
	if strings.Count(buf.String(), "request log entries were dropped") != 2 || strings.Count(buf.String(), "writing the request log failed") != 2 {
		t.Fatal("a minute later, no new summary")
	}
}

// LogRequest keeps an entry of no account only for an exporter.
func TestLogRequestOfNoAccount(t *testing.T) {
	for _, exporter := range []bool{false, true} {
		var cfg reqlog.Config
		if exporter {
			cfg.Exporter = &countingExporter{}
		}
		m, err := New(memstore.New(), WithRequestLogs(cfg))
		if err != nil {
			t.Fatal(err)
		}
		m.LogRequest(&reqlog.Entry{RequestID: "req_anon", Status: 401})
		var n uint64
		for i := range m.rlog.rings {
			n += m.rlog.rings[i].tail.Load()
		}
		if (n == 1) != exporter {
			t.Errorf("exporter %v: %d entries recorded", exporter, n)
		}
		_ = m.Close(context.Background())
	}
}

// A cursor is at most 200 bytes (the key list's), its request ID at most
// the longest kept.
func TestLogCursorBounds(t *testing.T) {
	id := strings.Repeat("r", reqlog.MaxRequestIDLen)
	c := encodeLogCursor(&reqlog.Entry{Timestamp: time.Unix(1_800_000_000, 5), RequestID: id})
	if got, err := decodeLogCursor(c); err != nil || got.RequestID != id {
		t.Fatal("a cursor of the longest request ID")
	}
	if _, err := decodeLogCursor(encodeLogCursor(&reqlog.Entry{Timestamp: time.Unix(1, 0), RequestID: id + "r"})); err == nil {
		t.Fatal("a cursor of a request ID past the longest")
	}
	if len(c) > 200 {
		t.Fatalf("the longest request ID's cursor is %d bytes, past the bound", len(c))
	}
	if _, err := decodeLogCursor(strings.Repeat("A", 201)); err == nil {
		t.Fatal("a 201-byte cursor")
	}
	long := strings.Repeat("A", 513)
	if _, err := decodeLogCursor(long); err == nil {
		t.Fatal("a 513-byte cursor")
	}
}

func TestCleanUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"curl/8":                          "curl/8",
		"a\r\nX-Forged: 1":                "a??X-Forged: 1",
		"ü":                               "??",
		strings.Repeat("u", 300):          strings.Repeat("u", 256),
		"\x00" + strings.Repeat("u", 300): "?" + strings.Repeat("u", 255),
	} {
		if got := cleanUserAgent(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// bound keeps no key: a path segment, a user agent or a request ID
// holding the Manager's prefix (or a foreign one) is redacted, even past
// where the text is cut; a path is cut without splitting an escape.
func TestBoundRedactsKeysAndCutsPaths(t *testing.T) {
	l := newLogBook(&failingLogs{Store: memstore.New()}, reqlog.Config{}, []string{"txc_", "sk_live_"})
	key := "txc_live_" + strings.Repeat("K", 38)
	e := reqlog.Entry{Path: "/v1/keys/" + key + "/usage", UserAgent: "curl " + key, RequestID: "req_" + key, Method: "GET"}
	l.bound(&e)
	if e.Path != "/v1/keys/[key redacted]/usage" || e.UserAgent != "[key redacted]" || e.RequestID != "[key redacted]" {
		t.Fatalf("a key reached the log: %+v", e)
	}
	// A foreign key, and a key that starts before the cut and ends after.
	e = reqlog.Entry{Path: "/" + strings.Repeat("a", 250) + "/sk_live_" + strings.Repeat("F", 40), Method: "GET"}
	l.bound(&e)
	if strings.Contains(e.Path, "sk_live_") || strings.Contains(e.Path, "FFF") || len(e.Path) > reqlog.MaxPathLen {
		t.Fatalf("a key straddling the cut reached the log: %q", e.Path)
	}
	for _, c := range []struct{ in, want string }{
		{"/" + strings.Repeat("p", 255), "/" + strings.Repeat("p", 255)},          // 256: kept whole
		{"/" + strings.Repeat("p", 253) + "%41b", "/" + strings.Repeat("p", 253)}, // the escape would be split at 256: dropped
		{"/" + strings.Repeat("p", 252) + "%41b", "/" + strings.Repeat("p", 252) + "%41"},
		{"/" + strings.Repeat("p", 254) + "%41", "/" + strings.Repeat("p", 254)},
	} {
		e := reqlog.Entry{Path: c.in, Method: "GET"}
		l.bound(&e)
		if e.Path != c.want {
			t.Errorf("%d bytes ending %q: kept %d bytes ending %q", len(c.in), c.in[len(c.in)-4:], len(e.Path), e.Path[len(e.Path)-4:])
		}
	}
}
