package httpadapter_test

import (
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// countingStore counts creates and can alter records on their way in.
type countingStore struct {
	store.Store
	creates   atomic.Int64
	onCreate  func(*store.Record)
	down      atomic.Bool
	touchDown atomic.Bool
	// cancels: lookups and lists fail with the caller's context's error
	// once it is done, as a database driver's do.
	cancels atomic.Bool
	// logBatches and logEntries count what reached the request log.
	logBatches, logEntries atomic.Int64
}

func (s *countingStore) List(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	if s.cancels.Load() && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return s.Store.List(ctx, q)
}

func (s *countingStore) TouchLastUsed(ctx context.Context, batch []store.LastUsed) error {
	if s.touchDown.Load() {
		return io.ErrClosedPipe
	}
	return s.Store.TouchLastUsed(ctx, batch)
}

func (s *countingStore) Write(ctx context.Context, w store.Write) error {
	if s.down.Load() {
		return io.ErrUnexpectedEOF
	}
	if w.Insert != nil && w.Replace == nil {
		s.creates.Add(1)
		if s.onCreate != nil {
			s.onCreate(w.Insert)
		}
	}
	return s.Store.Write(ctx, w)
}

// AddUsage and Usage forward to the wrapped store's usage: a wrapper
// hides the capabilities it does not forward.
func (s *countingStore) AddUsage(ctx context.Context, b store.UsageBatch) error {
	return s.Store.(store.UsageStore).AddUsage(ctx, b)
}

func (s *countingStore) Usage(ctx context.Context, q store.UsageQuery) ([]store.UsageRow, error) {
	return s.Store.(store.UsageStore).Usage(ctx, q)
}

// SpendCredits and ReadCredits forward to the wrapped store's credits.
func (s *countingStore) SpendCredits(ctx context.Context, id string, cost int64, now time.Time) (store.Budget, error) {
	return s.Store.(store.CreditStore).SpendCredits(ctx, id, cost, now)
}

func (s *countingStore) ReadCredits(ctx context.Context, ids []string, now time.Time) (map[string]store.Budget, error) {
	return s.Store.(store.CreditStore).ReadCredits(ctx, ids, now)
}

func (s *countingStore) SetCredits(ctx context.Context, id string, b *store.Budget) error {
	return s.Store.(store.CreditStore).SetCredits(ctx, id, b)
}

func (s *countingStore) RefundCredits(ctx context.Context, id string, cost int64, period time.Time) error {
	return s.Store.(store.CreditStore).RefundCredits(ctx, id, cost, period)
}

var _ store.CreditStore = (*countingStore)(nil)

func (s *countingStore) LookupDigest(ctx context.Context, h store.Digest) (*store.Record, error) {
	if s.down.Load() {
		return nil, io.ErrUnexpectedEOF
	}
	if s.cancels.Load() && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return s.Store.LookupDigest(ctx, h)
}

type env struct {
	m     *keys.Manager
	store *countingStore
	clock *clock
	// admin is a test key with every permission; others as named.
	admin, live, readOnly, narrow, revoked, ipBound, limited string
	stranger                                                 string // acct_b, every permission
	created                                                  int64  // creates made by setup
}

func newEnv(t *testing.T, opts ...keys.Option) *env {
	t.Helper()
	mem := memstore.New()
	e := &env{store: &countingStore{Store: mem}, clock: &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}}
	// The counting store keeps memstore's event log: its writes go
	// through the counter, its reads straight to memstore.
	m, err := keys.New(struct {
		*countingStore
		store.EventStore
	}{e.store, mem}, append([]keys.Option{keys.WithClock(e.clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	e.m = m
	mk := func(req keys.APIKeyCreate) string {
		t.Helper()
		if req.AccountID == "" {
			req.AccountID = "acct_a"
		}
		c, err := m.Create(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return string(c.Key)
	}
	e.admin = mk(keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary()})
	e.live = mk(keys.APIKeyCreate{Name: "live admin", Environment: keys.Live, Permissions: keys.DefaultVocabulary()})
	e.readOnly = mk(keys.APIKeyCreate{Name: "reader", Environment: keys.Test, Permissions: []string{"developers:read", "identity:read"}})
	e.narrow = mk(keys.APIKeyCreate{Name: "narrow", Environment: keys.Test, Permissions: []string{"developers:write", "identity:read"}})
	e.ipBound = mk(keys.APIKeyCreate{Name: "office", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AllowedIPs: []string{"203.0.113.0/24"}})
	e.limited = mk(keys.APIKeyCreate{Name: "limited", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), RateLimit: intp(3)})
	e.stranger = mk(keys.APIKeyCreate{Name: "stranger", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_b"})
	e.store.onCreate = func(r *store.Record) { r.RevokedAt = e.clock.Now() }
	e.revoked = mk(keys.APIKeyCreate{Name: "revoked", Environment: keys.Test, Permissions: keys.DefaultVocabulary()})
	e.store.onCreate = nil
	e.created = e.store.creates.Load()
	return e
}

func intp(n int) *int { return &n }

type request struct {
	method  string
	path    string
	headers map[string][]string
	body    string
	remote  string
}

func serve(h http.Handler, r request) *httptest.ResponseRecorder {
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.path == "" {
		r.path = "/developers/keys"
	}
	req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
	if r.remote != "" {
		req.RemoteAddr = r.remote
	}
	for k, vs := range r.headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func bearer(key string) []string { return []string{"Bearer " + key} }

func jsonHeaders(key string) map[string][]string {
	return map[string][]string{"Authorization": bearer(key), "Content-Type": {"application/json"}}
}

// envelope decodes an error body and checks the fields every error has.
func envelope(t *testing.T, rec *httptest.ResponseRecorder) httpadapter.ErrorDetail {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body) != 1 || body["error"] == nil {
		t.Fatalf("not an error envelope: %s", rec.Body)
	}
	dec := json.NewDecoder(strings.NewReader(string(body["error"])))
	dec.DisallowUnknownFields()
	var d httpadapter.ErrorDetail
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("error object: %v: %s", err, rec.Body)
	}
	if d.Type == "" || d.Code == "" || d.Message == "" || !strings.HasPrefix(d.RequestID, "req_") {
		t.Fatalf("incomplete error: %s", rec.Body)
	}
	if rec.Header().Get("Request-Id") != d.RequestID {
		t.Fatal("Request-Id header differs from request_id")
	}
	return d
}

func memstoreNew() store.Store { return memstore.New() }

// forgeKey makes a well-formed key that was never issued: the checksum is
// public (CRC-32 in base62), so anyone can.
func forgeKey(prefixAndBody string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	c := crc32.ChecksumIEEE([]byte(prefixAndBody))
	var d [6]byte
	for i := 5; i >= 0; i-- {
		d[i] = alphabet[c%62]
		c /= 62
	}
	return prefixAndBody + string(d[:])
}

// changeLast replaces a key's last character (a checksum digit) with
// another base62 character: never the one it had, so the result is never
// the real key.
func changeLast(key string) string {
	c := byte('x')
	if key[len(key)-1] == c {
		c = 'y'
	}
	return key[:len(key)-1] + string(c)
}

// AddLogs, Logs and PruneLogs forward to the wrapped store's request log.
func (s *countingStore) AddLogs(ctx context.Context, b store.LogBatch) (int, error) {
	if s.down.Load() {
		return 0, io.ErrUnexpectedEOF
	}
	s.logBatches.Add(1)
	s.logEntries.Add(int64(len(b.Entries)))
	return s.Store.(store.LogStore).AddLogs(ctx, b)
}

func (s *countingStore) Logs(ctx context.Context, q store.LogQuery) ([]reqlog.Entry, error) {
	return s.Store.(store.LogStore).Logs(ctx, q)
}

func (s *countingStore) PruneLogs(ctx context.Context, before time.Time) error {
	return s.Store.(store.LogStore).PruneLogs(ctx, before)
}

var _ store.LogStore = (*countingStore)(nil)

// noDNS resolves nothing: a fuzz target must not ask the network.
type noDNS struct{}

func (noDNS) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS in tests")
}

// literalHost is the address a URL's host names literally, if it does.
func literalHost(raw string) (netip.Addr, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return ip, err == nil
}
