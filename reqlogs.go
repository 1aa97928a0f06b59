package keys

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys/internal/sentinel"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

// The request log: LogRequest puts an entry in one of several bounded
// rings (lock-free, no allocation), a flusher drains them every
// reqlog.FlushInterval (or sooner, when a ring is a quarter full) and writes
// the entries of accounts to the store in batches, and hands every entry
// to the host's Exporter.

// errLogsNotKept is what the log reads return on a store that keeps none.
var errLogsNotKept = fmt.Errorf("keys: %w: %w", sentinel.ErrLogsNotKept, ErrNotFound)

// maxLogBatch bounds the entries of one LogBatch (one COPY).
const maxLogBatch = 10_000

// Why entries were dropped, for the counters and the summary logged.
const (
	dropFull   = iota // the buffer was full
	dropStore         // the store failed past the pending bound
	dropCap           // the account was past its entries a day
	dropExport        // the exporter failed
	dropReasons
)

var dropNames = [dropReasons]string{"buffer_full", "store_failing", "account_daily_cap", "exporter_failed"}

// logBook is the Manager's request log.
type logBook struct {
	store     store.LogStore  // nil: none keeps the log
	exporter  reqlog.Exporter // nil: none
	ip        reqlog.IPMode
	retention time.Duration
	perDay    int

	// keyPrefixes are the prefixes of the keys the Manager verifies (its
	// brand, and the foreign prefixes): text holding one is redacted.
	keyPrefixes []string

	rings    []logRing
	ringSize int           // slots in each ring, a power of two
	wake     chan struct{} // a ring has filled a quarter more
	// hint gives each P (processor) the ring it wrote last, so that a
	// core keeps writing one ring, in order, and two cores rarely share
	// one: sync.Pool keeps it per P, without a lock. It is only a hint:
	// when the pool loses it (at a GC) the next ring is handed out, and
	// a ring may take entries from any core.
	hint     sync.Pool
	nextRing atomic.Uint32
	scratch  []reqlog.Entry // drain's buffer, reused when nothing is pending

	mu        sync.Mutex // one flush at a time
	pending   []store.LogBatch
	pendingN  int
	maxPend   int
	nextPrune time.Time

	dropped    [dropReasons]atomic.Int64
	warnedDrop everyMinute // the summary of drops
	warnedFail everyMinute // the line of a failed flush
}

// logRing is a bounded multi-producer queue of entries (D. Vyukov's): a
// producer claims a slot by moving tail, writes it and publishes it by its
// sequence number; the flusher takes published slots in order. Its slots
// are allocated at its first entry.
type logRing struct {
	tail  atomic.Uint64
	slots atomic.Pointer[[]logSlot]
	index int        // in logBook.rings
	mu    sync.Mutex // the consumer's: the flusher takes each ring's in turn
	head  uint64     // under mu
	_     [88]byte   // 128 bytes a ring: two cores' rings share no cache line, nor a prefetched pair
}

type logSlot struct {
	seq atomic.Uint64
	e   reqlog.Entry
}

// newLogBook is the log of a Manager on st with cfg, or nil when nothing
// would keep or take its entries.
func newLogBook(st store.Store, cfg reqlog.Config, keyPrefixes []string) *logBook {
	ls, _ := store.Capability[store.LogStore](st)
	if cfg.Disabled || ls == nil && cfg.Exporter == nil {
		return nil
	}
	// Two rings a P: each P writes one (hint), and moves to another when
	// it finds a core writing the same; the buffer is split among them.
	n := min(max(2*runtime.GOMAXPROCS(0), 2), 128)
	size := cmp.Or(cfg.Buffer, reqlog.DefaultBuffer)
	// A ring holds its share of the buffer, a power of two; its slots
	// are made when it is first written, so rings no core writes take no
	// memory.
	per := max(16, 1<<bits.Len(uint(size/n-1)))
	l := &logBook{store: ls, exporter: cfg.Exporter, ip: cfg.IP, keyPrefixes: keyPrefixes,
		retention: cmp.Or(cfg.Retention, reqlog.DefaultRetention), perDay: cmp.Or(cfg.PerAccountDay, reqlog.DefaultPerAccountDay),
		rings: make([]logRing, n), wake: make(chan struct{}, 1), maxPend: 2 * size}
	l.ringSize = per
	for i := range l.rings {
		l.rings[i].index = i
	}
	l.hint.New = func() any { return &l.rings[l.nextRing.Add(1)%uint32(len(l.rings))] }
	return l
}

// LogRequest records one request in the request log (package reqlog):
// the HTTP middleware, the key endpoints and the gRPC interceptors call
// it once per request, after the answer; a host serving requests another
// way may too. It takes no lock, allocates nothing (after a ring's first
// entry) and never waits: when the buffer is full the entry is dropped,
// and counted. It copies e as it is; the flusher applies the Manager's
// IPMode, the bounds of reqlog and the redaction of keys. An entry of no
// account (a key that matches no record) is kept only for an Exporter.
func (m *Manager) LogRequest(e *reqlog.Entry) {
	l := m.rlog
	if l == nil || e.AccountID == "" && l.exporter == nil {
		return
	}
	r := l.hint.Get().(*logRing)
	l.hint.Put(l.record(r, e))
}

// record puts e in r, or, when another core is writing r too (its tail
// moved under us), in the next ring, and returns the ring the P should
// write next: so that cores sharing a ring part. When r is full, e
// spills into the next ring with room, and the P keeps its own ring (a
// core that stays on one ring keeps its slots in its cache). When every
// ring is full, e is dropped and counted.
func (l *logBook) record(r *logRing, e *reqlog.Entry) *logRing {
	var home *logRing // r, once it was found full
	for {
		slots := r.slots.Load()
		if slots == nil {
			slots = r.allocate(l.ringSize)
		}
		s := *slots
		mask := uint64(len(s) - 1)
		pos := r.tail.Load()
		slot := &s[pos&mask]
		switch seq := slot.seq.Load(); {
		case seq == pos:
			if !r.tail.CompareAndSwap(pos, pos+1) {
				r = &l.rings[(r.index+1)%len(l.rings)] // shared with another core: move on
				continue
			}
			slot.e = *e // bounded (IPMode, lengths) by the flusher, off the request's path
			slot.seq.Store(pos + 1)
			if pos&(mask>>2) == mask>>2 { // a quarter of the ring since the last wake
				select {
				case l.wake <- struct{}{}:
				default:
				}
			}
			return cmp.Or(home, r)
		case seq < pos: // the slot holds an entry not drained yet: full
			if home == nil {
				home = r
			}
			if next := &l.rings[(r.index+1)%len(l.rings)]; next != home {
				r = next
				continue
			}
			select { // every ring full: the flusher must run
			case l.wake <- struct{}{}:
			default:
			}
			l.dropped[dropFull].Add(1)
			return home
		}
		// Another producer took the slot and has not published it yet:
		// the tail has moved, read it again.
	}
}

// allocate gives r its slots, once.
func (r *logRing) allocate(n int) *[]logSlot {
	s := make([]logSlot, n)
	for i := range s {
		s[i].seq.Store(uint64(i))
	}
	if r.slots.CompareAndSwap(nil, &s) {
		return &s
	}
	return r.slots.Load()
}

// bound makes a drained entry what the log keeps: the IPMode applied,
// every text within its bound and copied when cut (a slice of a long
// string would keep all of it alive as long as the entry), the user
// agent printable, and no key: a path segment, user agent or request ID
// holding this Manager's key prefix, or a foreign one, is redacted (a
// client that pastes its key into a URL must not find it stored). The
// flusher does this, off the request's path.
func (l *logBook) bound(e *reqlog.Entry) {
	e.Timestamp = e.Timestamp.UTC().Truncate(time.Microsecond) // as PostgreSQL keeps it, and the cursor
	e.IP = l.ip.Apply(e.IP)
	e.RequestID = l.unkeyed(cut(e.RequestID, reqlog.MaxRequestIDLen+maxForeignKeyLen), reqlog.MaxRequestIDLen)
	e.Method = methodOf(e.Method)
	e.Path = cutPath(l.redactPath(cut(e.Path, reqlog.MaxPathLen+maxForeignKeyLen)))
	e.API = cut(e.API, maxLogFilterLen)
	e.UserAgent = cleanUserAgent(l.unkeyed(cut(e.UserAgent, reqlog.MaxUserAgentLen+maxForeignKeyLen), reqlog.MaxUserAgentLen))
}

// redacted stands for what held a key.
const redacted = "[key redacted]"

// holdsKey reports whether s holds one of the prefixes of keys this
// Manager verifies.
func (l *logBook) holdsKey(s string) bool {
	for _, p := range l.keyPrefixes {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// unkeyed is s, or redacted if it holds a key; then cut to n.
func (l *logBook) unkeyed(s string, n int) string {
	if l.holdsKey(s) {
		return redacted
	}
	return cut(s, n)
}

// redactPath replaces each segment of path that holds a key. The path
// was cut to MaxPathLen and a key's length first, so a key that starts
// within what is kept is whole in it.
func (l *logBook) redactPath(path string) string {
	if !l.holdsKey(path) {
		return path
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		if l.holdsKey(seg) {
			segs[i] = redacted
		}
	}
	return strings.Join(segs, "/")
}

// cutPath cuts an escaped path to reqlog.MaxPathLen without splitting
// an escape (%XX).
func cutPath(p string) string {
	if len(p) <= reqlog.MaxPathLen {
		return p
	}
	p = p[:reqlog.MaxPathLen]
	if i := strings.LastIndexByte(p, '%'); i >= len(p)-2 {
		p = p[:i]
	}
	return strings.Clone(p)
}

// cleanUserAgent is a User-Agent as an entry keeps it: at most
// reqlog.MaxUserAgentLen bytes (copied when cut), every byte outside
// printable ASCII a '?'.
func cleanUserAgent(s string) string {
	s = cut(s, reqlog.MaxUserAgentLen)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < 0x20 || b[j] > 0x7e {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}

// maxMethodLen bounds a recorded method (net/http lets any token
// through).
const maxMethodLen = 32

// methodOf is the method as an entry keeps it: the standard ones as
// constants, any other copied (cut to maxMethodLen). net/http's Method
// is a slice of the request line, so keeping it would keep the whole
// line, path and all, for as long as the entry lives.
func methodOf(m string) string {
	for _, std := range [...]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"} {
		if m == std {
			return std
		}
	}
	return strings.Clone(m[:min(len(m), maxMethodLen)])
}

// cut is s cut to n bytes, copied when cut.
func cut(s string, n int) string {
	if len(s) > n {
		return strings.Clone(s[:n])
	}
	return s
}

// drain takes every published entry out of the rings, into out. The
// caller holds l.mu.
func (l *logBook) drain(out []reqlog.Entry) []reqlog.Entry {
	for i := range l.rings {
		out = l.rings[i].drain(l, out)
	}
	return out
}

// drain takes r's published entries, in order, into out: a ring's worth
// at most, so that producers as fast as the flusher cannot keep it
// draining for ever. Producers never take r.mu.
func (r *logRing) drain(l *logBook, out []reqlog.Entry) []reqlog.Entry {
	slots := r.slots.Load()
	if slots == nil {
		return out
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := *slots
	mask := uint64(len(s) - 1)
	for range len(s) {
		slot := &s[r.head&mask]
		if slot.seq.Load() != r.head+1 {
			return out
		}
		out = append(out, slot.e)
		slot.e = reqlog.Entry{} // lets go of its strings
		l.bound(&out[len(out)-1])
		slot.seq.Store(r.head + mask + 1)
		r.head++
	}
	return out
}

// flushLogs drains the rings, exports every entry, and writes the
// accounts' entries to the store, with the batches a failing store left
// pending first. Past the pending bound the newest are dropped.
func (m *Manager) flushLogs(ctx context.Context) error {
	l := m.rlog
	l.mu.Lock()
	defer l.mu.Unlock()
	var buf []reqlog.Entry
	if len(l.pending) == 0 {
		buf = l.scratch[:0] // the last flush's entries are all stored: its buffer is free
	}
	entries := l.drain(buf)
	defer func() {
		if len(l.pending) == 0 && cap(entries) <= 2*l.maxPend {
			clear(entries) // lets go of the strings
			l.scratch = entries[:0]
		}
	}()
	if l.exporter != nil && len(entries) > 0 {
		if err := l.exporter.Export(ctx, entries); err != nil {
			l.drop(m, dropExport, int64(len(entries)))
		}
	}
	if l.store == nil {
		return nil
	}
	kept := entries[:0]
	for _, e := range entries {
		if e.AccountID != "" {
			kept = append(kept, e)
		}
	}
	err := m.storePendingLogs(ctx) // what waits goes first
	for len(kept) > 0 {
		n := min(len(kept), maxLogBatch)
		b := store.LogBatch{ID: newBatchID(), Entries: kept[:n:n], MaxPerDay: l.perDay}
		kept = kept[n:]
		if err == nil { // the store answers: written now
			l.pending, l.pendingN = append(l.pending, b), l.pendingN+n
			err = m.storePendingLogs(ctx)
			continue
		}
		if l.pendingN+n > l.maxPend { // the store fails: kept for the next flush, up to the bound
			l.drop(m, dropStore, int64(n+len(kept)))
			break
		}
		l.pending, l.pendingN = append(l.pending, b), l.pendingN+n
	}
	return err
}

// storePendingLogs writes the pending batches, oldest first. The caller
// holds l.mu.
func (m *Manager) storePendingLogs(ctx context.Context) error {
	l := m.rlog
	for len(l.pending) > 0 {
		b := l.pending[0]
		dropped, err := l.store.AddLogs(ctx, b)
		if err != nil {
			return fmt.Errorf("keys: storing the request log: %w", err)
		}
		if dropped > 0 {
			l.drop(m, dropCap, int64(dropped))
		}
		l.pending[0] = store.LogBatch{}
		l.pending = l.pending[1:]
		l.pendingN -= len(b.Entries)
	}
	return nil
}

// pruneLogs deletes entries past the retention, once an hour.
func (m *Manager) pruneLogs(ctx context.Context) error {
	l := m.rlog
	now := m.now()
	l.mu.Lock()
	due := l.store != nil && !now.Before(l.nextPrune)
	if due {
		l.nextPrune = now.Add(time.Hour)
	}
	l.mu.Unlock()
	if !due {
		return nil
	}
	return l.store.PruneLogs(ctx, now.Add(-l.retention))
}

// drop counts dropped entries, and logs a summary at most once a minute.
func (l *logBook) drop(m *Manager, reason int, n int64) {
	l.dropped[reason].Add(n)
	if l.warnedDrop.due() {
		m.logger.Warn("keys: request log entries were dropped", l.droppedAttrs()...)
	}
}

func (l *logBook) droppedAttrs() []any {
	var attrs []any
	for i, name := range dropNames {
		attrs = append(attrs, "dropped_"+name+"_total", l.dropped[i].Load())
	}
	return attrs
}

// LogsDropped is how many request-log entries were dropped so far, by
// reason: "buffer_full" (recorded faster than flushed), "store_failing"
// (the store failed past the pending bound), "account_daily_cap" (an
// account past reqlog.Config.PerAccountDay) and "exporter_failed". Nil
// when the Manager keeps no log.
func (m *Manager) LogsDropped() map[string]int64 {
	if m.rlog == nil {
		return nil
	}
	out := make(map[string]int64, dropReasons)
	for i, name := range dropNames {
		out[name] = m.rlog.dropped[i].Load()
	}
	return out
}

// Logs is a page of the account's request log, newest first (package
// reqlog): what the store holds, this instance's entries not flushed
// yet included (it flushes first). On a store that keeps no log it is
// an error the HTTP endpoints answer with 404.
func (m *Manager) Logs(ctx context.Context, accountID string, f reqlog.Filter) (*reqlog.Page, error) {
	return m.readLogs(ctx, trusted, accountID, f)
}

// Log is the account's entry of one request, by its request ID: with a
// host's ID seen twice, the newest. ErrNotFound if there is none.
func (m *Manager) Log(ctx context.Context, accountID, requestID string) (*reqlog.Entry, error) {
	return m.logOne(ctx, trusted, accountID, requestID)
}

// Logs is a page of the principal's account's request log; a test
// principal sees only its test keys' entries. A KeyID must name a key
// the principal may see (ErrNotFound otherwise).
func (s Scoped) Logs(ctx context.Context, f reqlog.Filter) (*reqlog.Page, error) {
	if err := s.c.valid(); err != nil {
		return nil, err
	}
	if f.KeyID != "" {
		if _, err := s.m.load(ctx, s.c, f.KeyID); err != nil {
			return nil, err
		}
	}
	return s.m.readLogs(ctx, s.c, s.c.p.AccountID, f)
}

// Log is the principal's account's entry of one request: ErrNotFound
// for another account's request, as if it did not exist.
func (s Scoped) Log(ctx context.Context, requestID string) (*reqlog.Entry, error) {
	if err := s.c.valid(); err != nil {
		return nil, err
	}
	return s.m.logOne(ctx, s.c, s.c.p.AccountID, requestID)
}

func (m *Manager) logOne(ctx context.Context, c caller, accountID, requestID string) (*reqlog.Entry, error) {
	if requestID == "" || len(requestID) > reqlog.MaxRequestIDLen {
		return nil, ErrNotFound
	}
	p, err := m.readLogs(ctx, c, accountID, reqlog.Filter{RequestID: requestID, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(p.Data) == 0 {
		return nil, ErrNotFound
	}
	return &p.Data[0], nil
}

// maxLogFilterLen bounds the text filters.
const maxLogFilterLen = 256

func (m *Manager) readLogs(ctx context.Context, c caller, accountID string, f reqlog.Filter) (*reqlog.Page, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if accountID == "" {
		return nil, missing("account_id")
	}
	l := m.rlog
	if l == nil || l.store == nil {
		return nil, errLogsNotKept
	}
	q := store.LogQuery{AccountID: accountID, Start: f.Start, End: f.End, KeyID: f.KeyID, Status: f.Status,
		Method: f.Method, API: f.API, RequestID: f.RequestID, Limit: cmp.Or(f.Limit, reqlog.DefaultLimit)}
	if !c.trusted {
		q.Environment = string(c.p.Environment)
	}
	switch {
	case q.Limit < 1 || q.Limit > reqlog.MaxLimit:
		return nil, invalid("limit", "limit must be from 1 to %d", reqlog.MaxLimit)
	case !q.Start.IsZero() && !q.End.IsZero() && !q.Start.Before(q.End):
		return nil, invalid("end", "end must be after start")
	case f.Status.Min != 0 && (f.Status.Min < 100 || f.Status.Max > 599 || f.Status.Min > f.Status.Max):
		return nil, invalid("status", "status must be a code such as 429 or a class such as 4xx")
	case len(f.KeyID) > maxLogFilterLen || len(f.Method) > maxLogFilterLen || len(f.API) > maxLogFilterLen || len(f.RequestID) > reqlog.MaxRequestIDLen:
		return nil, invalid("", "a filter is at most %d bytes", maxLogFilterLen)
	}
	if f.Cursor != "" {
		cur, err := decodeLogCursor(f.Cursor)
		if err != nil {
			return nil, err
		}
		q.After = cur
	}
	if err := m.flushLogs(ctx); err != nil { // this instance's entries first; a failure is the store's, and the read says so
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	q.Limit++
	got, err := l.store.Logs(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%w: reading the request log: %w", ErrUnavailable, err)
	}
	p := &reqlog.Page{Data: got}
	if len(got) == q.Limit {
		p.Data, p.HasMore = got[:q.Limit-1], true
		last := &p.Data[len(p.Data)-1]
		p.NextCursor = encodeLogCursor(last)
	}
	if p.Data == nil {
		p.Data = []reqlog.Entry{}
	}
	return p, nil
}

// encodeLogCursor is the key list's cursor (encodeCursor) of an entry:
// its time, which the log keeps to the microsecond, and request ID.
func encodeLogCursor(e *reqlog.Entry) string { return encodeCursor(e.Timestamp, e.RequestID) }

func decodeLogCursor(s string) (*store.LogCursor, error) {
	at, id, err := decodeCursor(s)
	if err == nil && len(id) > reqlog.MaxRequestIDLen {
		err = invalid("cursor", "cursor is not one this API returned")
	}
	if err != nil {
		return nil, err
	}
	return &store.LogCursor{Timestamp: at, RequestID: id}, nil
}

// failed logs a failed flush, at most once a minute (the store is down:
// one line a second would flood the host's log).
func (l *logBook) failed(m *Manager, err error) {
	if l.warnedFail.due() {
		m.logger.Warn("keys: writing the request log failed; entries wait in memory (bounded) and are retried every second", "err", err)
	}
}
