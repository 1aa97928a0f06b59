package keys_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// clock is a settable time source for tests: no sleeps.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// spyStore counts what reaches the store and can alter records on the way
// in (to set revocation, which the lifecycle API will do).
type spyStore struct {
	store.Store
	lookups  atomic.Int64
	creates  atomic.Int64
	touches  atomic.Int64
	onCreate func(*store.Record)
	failWith error
}

func (s *spyStore) Write(ctx context.Context, w store.Write) error {
	if w.Insert != nil && w.Replace == nil {
		s.creates.Add(1)
		if s.onCreate != nil {
			s.onCreate(w.Insert)
		}
	}
	return s.Store.Write(ctx, w)
}

func (s *spyStore) LookupDigest(ctx context.Context, h store.Digest) (*store.Record, error) {
	s.lookups.Add(1)
	if s.failWith != nil {
		return nil, s.failWith
	}
	return s.Store.LookupDigest(ctx, h)
}

func (s *spyStore) TouchLastUsed(ctx context.Context, batch []store.LastUsed) error {
	s.touches.Add(1)
	return s.Store.TouchLastUsed(ctx, batch)
}

type fixture struct {
	m     *keys.Manager
	store *spyStore
	clock *clock
}

func newFixture(t *testing.T, opts ...keys.Option) *fixture {
	t.Helper()
	f := &fixture{store: &spyStore{Store: memstore.New()}, clock: newClock()}
	f.m = newManagerAt(t, f.store, f.clock, opts...)
	return f
}

// newManagerAt is a Manager on store with clock's time, closed when the
// test ends.
func newManagerAt(t *testing.T, store store.Store, clock *clock, opts ...keys.Option) *keys.Manager {
	t.Helper()
	m, err := keys.New(store, append([]keys.Option{keys.WithClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// create issues a key as a trusted caller, in acct_test unless req names
// an account.
func (f *fixture) create(t *testing.T, req keys.APIKeyCreate) *keys.APIKeyCreated {
	t.Helper()
	if req.AccountID == "" {
		req.AccountID = "acct_test"
	}
	c, err := f.m.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return c
}

func intp(n int) *int { return &n }

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

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, limit.Checks, time.Time) (limit.Status, bool, error) {
	return limit.Status{}, false, errors.New("limiter down")
}

// touchFails is a store whose last-used flushes fail until healed.
type touchFails struct {
	store.Store
	healed atomic.Bool
}

func (s *touchFails) TouchLastUsed(ctx context.Context, b []store.LastUsed) error {
	if !s.healed.Load() {
		return errors.New("disk full")
	}
	return s.Store.TouchLastUsed(ctx, b)
}

// syncBuffer is a bytes.Buffer for a logger written by another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// events records what the event hook saw.
type events struct {
	mu  sync.Mutex
	all []event.Event
}

func (e *events) hook(_ context.Context, ev event.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) types() []event.Type {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []event.Type
	for _, ev := range e.all {
		out = append(out, ev.Type)
	}
	return out
}

func (e *events) reset() {
	e.mu.Lock()
	e.all = nil
	e.mu.Unlock()
}
