package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/pgstore"
)

// taggedPool is a pool whose connections carry application_name, so a test
// can kill exactly them with pg_terminate_backend.
func taggedPool(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	name := "keys_fault_" + strings.ToLower(rand.Text()[:8])
	cfg.ConnConfig.RuntimeParams["application_name"] = name
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, name
}

// faultPair is instance A, whose connections can be killed, and instance B,
// on one fresh schema.
type faultPair struct {
	admin  *pgxpool.Pool
	appA   string
	storeA *pgstore.Store
	a, b   *keys.Manager
}

func newFaultPair(t *testing.T, ttl time.Duration) *faultPair {
	t.Helper()
	admin := newPool(t)
	poolA, appA := taggedPool(t)
	schema := freshSchema(t, admin)
	storeA := newStore(t, poolA, schema, pgstore.WithCache(1000, ttl))
	storeB := newStore(t, newPool(t), schema)
	a, err := keys.New(storeA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keys.New(storeB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()); _ = b.Close(context.Background()) })
	return &faultPair{admin: admin, appA: appA, storeA: storeA, a: a, b: b}
}

func kill(t *testing.T, admin *pgxpool.Pool, app string) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Every connection of instance A, the listener's included, is killed
// mid-run: A recovers without a restart, loses no key, its listener comes
// back, and revocations on B reach it again within a second.
func TestConnectionsKilled(t *testing.T) {
	ctx := context.Background()
	p := newFaultPair(t, 2*time.Second)
	admin, appA, storeA, a, b := p.admin, p.appA, p.storeA, p.a, p.b
	owner := keys.Principal{AccountID: "acct_fault", Subject: "u", Permissions: keys.DefaultVocabulary()}
	eventually(t, 5*time.Second, "A's listener connects", storeA.Listening)

	var created []*keys.APIKeyCreated
	for range 5 {
		c, err := a.As(owner).Create(ctx, keys.APIKeyCreate{Name: "before", Environment: keys.Live})
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, c)
		if _, err := a.Verify(ctx, string(c.Key)); err != nil {
			t.Fatal(err)
		}
	}
	if n := kill(t, admin, appA); n == 0 {
		t.Fatal("no connection of A was killed: the test proves nothing")
	}
	// Errors while the pool notices are 503-class, never "invalid key"...
	var c *keys.APIKeyCreated
	eventually(t, 5*time.Second, "A creates keys again", func() bool {
		var err error
		c, err = a.As(owner).Create(ctx, keys.APIKeyCreate{Name: "after", Environment: keys.Live})
		if err != nil && !errors.Is(err, keys.ErrUnavailable) {
			t.Fatalf("after the kill: %v", err)
		}
		return err == nil
	})
	created = append(created, c)
	// ...and nothing was lost.
	for _, k := range append(created, c) {
		if _, err := b.Verify(ctx, string(k.Key)); err != nil {
			t.Fatalf("a key created on A is gone: %v", err)
		}
	}
	eventually(t, 5*time.Second, "A's listener reconnects", storeA.Listening)
	target := created[0]
	if _, err := a.Verify(ctx, string(target.Key)); err != nil { // cached again on A
		t.Fatal(err)
	}
	if _, err := b.As(owner).Revoke(ctx, target.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "A refuses the key B revoked, after reconnecting", func() bool {
		_, err := a.Verify(ctx, string(target.Key))
		return errors.Is(err, keys.ErrKeyRevoked)
	})
}

// With A's listener killed over and over, so that notifications are lost,
// A never verifies a key revoked on B once the cache TTL has passed.
func TestListenerDownFallsBackToTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	p := newFaultPair(t, ttl)
	admin, appA, a, b := p.admin, p.appA, p.a, p.b
	owner := keys.Principal{AccountID: "acct_ttl", Subject: "u", Permissions: keys.DefaultVocabulary()}
	c, err := b.As(owner).Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Live})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	killed := make(chan int, 1)
	// If the test fails early, the killer must still stop: left running it
	// would terminate the connections of the tests that follow.
	var stopOnce sync.Once
	stopKiller := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopKiller()
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				killed <- n
				return
			case <-time.After(5 * time.Millisecond):
				// Not kill(): t.Fatal is for the test's own goroutine.
				var k int
				if admin.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, appA).Scan(&k) == nil {
					n += k
				}
			}
		}
	}()
	deadline := time.Now().Add(time.Second)
	var revokedAt time.Time
	for time.Now().Before(deadline) {
		_, err := a.Verify(ctx, string(c.Key))
		switch {
		case err == nil:
			if !revokedAt.IsZero() && time.Since(revokedAt) > ttl+100*time.Millisecond {
				t.Fatalf("A verified a revoked key %v after the revocation (TTL %v)", time.Since(revokedAt), ttl)
			}
		case errors.Is(err, keys.ErrKeyRevoked), errors.Is(err, keys.ErrUnavailable):
		default:
			t.Fatalf("verify: %v", err)
		}
		if revokedAt.IsZero() && time.Until(deadline) < 700*time.Millisecond {
			if _, err := b.As(owner).Revoke(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
			revokedAt = time.Now()
		}
	}
	stopKiller()
	if n := <-killed; n == 0 {
		t.Fatal("nothing was killed: the test proves nothing")
	}
	eventually(t, 5*time.Second, "A verifies again once the faults stop", func() bool {
		_, err := a.Verify(ctx, string(c.Key))
		return errors.Is(err, keys.ErrKeyRevoked)
	})
}

// revokeBehindTheStore revokes key id in the database directly, sending
// no notification: a change the listener never hears of.
func revokeBehindTheStore(t *testing.T, admin *pgxpool.Pool, schema, id string) {
	t.Helper()
	if _, err := admin.Exec(context.Background(), `UPDATE `+pgx.Identifier{schema, "api_keys"}.Sanitize()+` SET revoked_at = now() - interval '1 second', version = version + 1 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
}

// With the listener up but a change's notification lost, the cache TTL
// alone bounds how long a stale record is served: the key verifies from
// the cache until the TTL, and is refused after it.
func TestLostNotificationBoundedByTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	admin := newPool(t)
	schema := freshSchema(t, admin)
	s := newStore(t, newPool(t), schema, pgstore.WithCache(1000, ttl))
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	eventually(t, 5*time.Second, "the listener connects", s.Listening)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: "acct_ttl"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil { // cached now
		t.Fatal(err)
	}
	cachedAt := time.Now()
	revokeBehindTheStore(t, admin, schema, k.ID)
	if _, err := m.Verify(ctx, string(k.Key)); err != nil && time.Since(cachedAt) < ttl/2 {
		t.Fatalf("before the TTL the cached record should still answer (the notification was never sent): %v", err)
	}
	time.Sleep(ttl + 50*time.Millisecond)
	if _, err := m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("after the TTL, with the listener up and the notification lost: %v", err)
	}
	if !s.Listening() {
		t.Fatal("the listener went down during the test")
	}
}

// When the listener reconnects, the cache is emptied (notifications sent
// while it was away are lost): a change made meanwhile is seen at once,
// long before the TTL.
func TestReconnectEmptiesCache(t *testing.T) {
	ctx := context.Background()
	admin := newPool(t)
	pool, app := taggedPool(t)
	schema := freshSchema(t, admin)
	s := newStore(t, pool, schema, pgstore.WithCache(1000, time.Hour))
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	eventually(t, 5*time.Second, "the listener connects", s.Listening)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: "acct_reconnect"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil { // cached for an hour
		t.Fatal(err)
	}
	revokeBehindTheStore(t, admin, schema, k.ID)
	if n := kill(t, admin, app); n == 0 {
		t.Fatal("no connection of the store to kill")
	}
	eventually(t, 5*time.Second, "the listener goes down", func() bool { return !s.Listening() })
	eventually(t, 10*time.Second, "the listener reconnects", s.Listening)
	// The pool's other connections died too: the first queries may fail
	// (unavailable), but the key must never verify again.
	eventually(t, 5*time.Second, "the revocation is seen", func() bool {
		_, err := m.Verify(ctx, string(k.Key))
		switch {
		case err == nil:
			t.Fatal("after the listener reconnected, the stale cached record still verified (cache TTL an hour)")
		case errors.Is(err, keys.ErrUnavailable):
			return false
		case !errors.Is(err, keys.ErrKeyRevoked):
			t.Fatalf("after the reconnect: %v", err)
		}
		return true
	})
}
