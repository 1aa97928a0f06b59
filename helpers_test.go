package keys_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
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
	keys.Store
	lookups  atomic.Int64
	creates  atomic.Int64
	touches  atomic.Int64
	onCreate func(*keys.Record)
	failWith error
}

func (s *spyStore) Create(ctx context.Context, rec *keys.Record, idem *keys.IdempotencyRecord) error {
	s.creates.Add(1)
	if s.onCreate != nil {
		s.onCreate(rec)
	}
	return s.Store.Create(ctx, rec, idem)
}

func (s *spyStore) LookupHash(ctx context.Context, h keys.Digest) (*keys.Record, error) {
	s.lookups.Add(1)
	if s.failWith != nil {
		return nil, s.failWith
	}
	return s.Store.LookupHash(ctx, h)
}

func (s *spyStore) TouchLastUsed(ctx context.Context, batch []keys.LastUsed) error {
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
	m, err := keys.New(f.store, append([]keys.Option{keys.WithClock(f.clock.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	f.m = m
	return f
}

func (f *fixture) create(t *testing.T, req keys.APIKeyCreate) *keys.APIKeyCreated {
	t.Helper()
	c, err := f.m.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return c
}

func intp(n int) *int { return &n }
