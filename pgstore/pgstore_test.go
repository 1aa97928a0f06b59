package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/pgstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// dsn is the database the tests use: KEYS_TEST_POSTGRES. Unset, the tests
// skip; set, the database must answer.
func dsn(t testing.TB) string {
	d := os.Getenv("KEYS_TEST_POSTGRES")
	if d == "" {
		t.Skip("set KEYS_TEST_POSTGRES (e.g. postgres://root@127.0.0.1:5432/test) to run the PostgreSQL tests")
	}
	return d
}

func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(context.Background()); err != nil {
		t.Fatalf("KEYS_TEST_POSTGRES is set but PostgreSQL does not answer: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// freshSchema names a schema of the test's own, dropped when it ends.
func freshSchema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	schema := "keys_test_" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return schema
}

// newStore opens a migrated store in schema ("": a fresh one).
func newStore(t testing.TB, pool *pgxpool.Pool, schema string, opts ...pgstore.Option) *pgstore.Store {
	t.Helper()
	if schema == "" {
		schema = freshSchema(t, pool)
	}
	s, err := pgstore.New(pool, append([]pgstore.Option{pgstore.WithSchema(schema)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestConformance(t *testing.T) {
	pool := newPool(t)
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, pool, "") })
}

func TestMigrateConcurrentlyAndTwice(t *testing.T) {
	pool := newPool(t)
	schema := freshSchema(t, pool)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pgstore.New(pool, pgstore.WithSchema(schema))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close(context.Background())
			errs <- s.Migrate(context.Background())
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	s := newStore(t, pool, schema) // a fifth, after: a no-op
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema}.Sanitize()+".keys_migrations").Scan(&n); err != nil || n != 14 {
		t.Fatalf("%d migrations recorded, %v", n, err)
	}
	if err := s.Write(context.Background(), store.Write{Insert: storetest.NewRecord(t)}); err != nil {
		t.Fatal(err)
	}
}

// Close stops the listener and is idempotent; writes after it are
// refused. (The Manager never closes a store: its owner does.)
func TestClose(t *testing.T) {
	pool := newPool(t)
	s := newStore(t, pool, "")
	ctx := context.Background()
	if !waitListening(s) {
		t.Fatal("the listener never connected")
	}
	for range 2 {
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if s.Listening() {
		t.Fatal("still listening after Close")
	}
	if err := s.Write(ctx, store.Write{Insert: storetest.NewRecord(t)}); !errors.Is(err, pgstore.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: "key_x", At: time.Now()}}); !errors.Is(err, pgstore.ErrClosed) {
		t.Fatalf("TouchLastUsed after Close: %v", err)
	}
}

func waitListening(s *pgstore.Store) bool {
	for range 200 {
		if s.Listening() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// Two Managers on two pools are two instances: a key created on A
// verifies on B, and a key revoked on B fails on A within a second.
func TestTwoInstances(t *testing.T) {
	ctx := context.Background()
	poolA, poolB := newPool(t), newPool(t)
	schema := freshSchema(t, poolA)
	storeA := newStore(t, poolA, schema, pgstore.WithCache(1000, time.Minute))
	storeB := newStore(t, poolB, schema, pgstore.WithCache(1000, time.Minute))
	deadline := time.Now().Add(5 * time.Second)
	for !(storeA.Listening() && storeB.Listening()) {
		if time.Now().After(deadline) {
			t.Fatal("the invalidation listeners did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	a, err := keys.New(storeA)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := keys.New(storeB)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	owner := keys.Principal{AccountID: "acct_two", Subject: "user", Permissions: keys.DefaultVocabulary()}

	c, err := a.As(owner).Create(ctx, keys.APIKeyCreate{Name: "shared", Environment: keys.Live, Permissions: []string{"kyb:read"}})
	if err != nil {
		t.Fatal(err)
	}
	// Both instances verify it, and so both cache it.
	for _, m := range []*keys.Manager{a, b} {
		if _, err := m.Verify(ctx, string(c.Key), keys.Require("kyb:read")); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	// An update on B reaches A's cache.
	if _, err := b.As(owner).Update(ctx, c.ID, keys.APIKeyUpdate{Permissions: keys.Change([]string{"fraud:read"})}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see B's update", func() bool {
		_, err := a.Verify(ctx, string(c.Key), keys.Require("kyb:read"))
		return errors.Is(err, keys.ErrPermissionDenied)
	})
	// A revocation on B reaches A within a second.
	if _, err := b.As(owner).Revoke(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	waitFor(t, "A to refuse the key revoked on B", func() bool {
		_, err := a.Verify(ctx, string(c.Key))
		return errors.Is(err, keys.ErrKeyRevoked)
	})
	if d := time.Since(revoked); d > time.Second {
		t.Fatalf("A verified a revoked key for %v", d)
	}
	// A disable on B reaches A within a second, and so does the enable.
	d, err := a.As(owner).Create(ctx, keys.APIKeyCreate{Name: "to disable", Environment: keys.Live})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(ctx, string(d.Key)); err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		if _, err := b.As(owner).Update(ctx, d.ID, keys.APIKeyUpdate{Enabled: keys.Change(on)}); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		waitFor(t, "A to see the key enabled="+strconv.FormatBool(on)+" on B", func() bool {
			_, err := a.Verify(ctx, string(d.Key))
			return errors.Is(err, keys.ErrKeyDisabled) != on
		})
		if took := time.Since(changed); took > time.Second {
			t.Fatalf("A took %v to see the change", took)
		}
	}
	// And a roll on A reaches B: the new key verifies there at once.
	c2, err := a.As(owner).Create(ctx, keys.APIKeyCreate{Name: "to roll", Environment: keys.Live})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, string(c2.Key)); err != nil {
		t.Fatal(err)
	}
	rolled, err := a.As(owner).Roll(ctx, c2.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, string(rolled.Key)); err != nil {
		t.Fatalf("B does not know the key rolled on A: %v", err)
	}
	waitFor(t, "B to refuse the key rolled on A", func() bool {
		_, err := b.Verify(ctx, string(c2.Key))
		return errors.Is(err, keys.ErrKeyRevoked)
	})
}

// waitFor polls cond for up to a second.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a second for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The rows hold digests, never keys.
func TestRowsHoldNoPlaintext(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := freshSchema(t, pool)
	s := newStore(t, pool, schema)
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	p := keys.Principal{AccountID: "acct_rows", Subject: "u", Permissions: keys.DefaultVocabulary()}
	var secrets []string
	for i := range 5 {
		c, err := m.As(p).Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Test}, keys.IdempotencyKey("rows-idem-000"+string(rune('0'+i))))
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, string(c.Key))
		r, err := m.As(p).Roll(ctx, c.ID, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, string(r.Key))
	}
	var dump string
	q := "SELECT concat_ws('|', k::text, encode(k.digest, 'escape')) FROM " + pgx.Identifier{schema}.Sanitize() + ".api_keys k " +
		"UNION ALL SELECT concat_ws('|', i::text, encode(i.sealed, 'escape')) FROM " + pgx.Identifier{schema}.Sanitize() + ".api_key_idempotency i"
	rows, err := pool.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		dump += line + "\n"
		n++
	}
	if n != 15 || !strings.Contains(dump, "txc_test_") {
		t.Fatalf("%d rows read; the dump must show the stored prefixes, or it proves nothing", n)
	}
	for _, k := range secrets {
		if strings.Contains(dump, k[9:]) {
			t.Fatal("a row holds a plaintext key")
		}
	}
}

// A key in the cache verifies without a round trip and without an
// allocation, as on memstore: the cache is what keeps PostgreSQL off every
// request's path. (A digest escaping to the heap once cost every cache hit
// an allocation; this test keeps it from coming back.)
func TestCachedVerifyAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newPool(t), "", pgstore.WithCache(100, time.Hour))
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(ctx) })
	c, err := m.Create(ctx, keys.APIKeyCreate{Name: "hot", Environment: keys.Live, AccountID: "acct_hot"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(c.Key)); err != nil { // fills the cache
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(1000, func() { _, err = m.Verify(ctx, string(c.Key)) }); err != nil || allocs != 0 {
		t.Fatalf("a cached Verify: %v allocations, err %v", allocs, err)
	}
}

// Four writers PATCHing one key through two instances all land: colliding
// writers back off instead of answering 503 (issue 11, finding 6: 11% of
// such PATCHes failed when retries were immediate).
func TestConcurrentUpdatesOfOneKey(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := freshSchema(t, pool)
	var ms []*keys.Manager
	for range 2 {
		m, err := keys.New(newStore(t, pool, schema))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(ctx)
		ms = append(ms, m)
	}
	c, err := ms[0].Create(ctx, keys.APIKeyCreate{Name: "contended", Environment: keys.Live, AccountID: "acct_patch"})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := ms[w%2].Update(ctx, c.ID, keys.APIKeyUpdate{Name: keys.Change("w" + strconv.Itoa(w) + "-" + strconv.Itoa(i))}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		failed++
		t.Log(err)
	}
	if failed > 0 {
		t.Fatalf("%d of %d concurrent PATCHes of one key failed", failed, writers*each)
	}
	k, err := ms[1].Get(ctx, c.ID)
	if err != nil || !strings.HasPrefix(k.Name, "w") {
		t.Fatalf("after the updates: %+v, %v", k, err)
	}
}

// The counts the triggers keep (active and revoked keys per account, which
// the cap and the history bound read) match the rows after a concurrent
// mix of creates at the cap, revocations, rolls with and without grace,
// and the deletions the history bound makes; and every idempotency entry
// names a stored key.
func TestCountsFollowTheRows(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := freshSchema(t, pool)
	s := newStore(t, pool, schema)
	m, err := keys.New(s, keys.WithMaxKeysPerAccount(4))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acct := "acct_" + strconv.Itoa(w%2)
			var ids []string
			for i := range 60 {
				var opts []keys.IssueOption
				if i%2 == 0 {
					opts = append(opts, keys.IdempotencyKey("mixed-create-"+strconv.Itoa(w)+"-"+strconv.Itoa(i)))
				}
				k, err := m.Create(ctx, keys.APIKeyCreate{Name: "mix", Environment: keys.Test, AccountID: acct}, opts...)
				switch {
				case errors.Is(err, keys.ErrKeyLimit):
				case err != nil:
					t.Error(err)
					return
				default:
					ids = append(ids, k.ID)
				}
				if len(ids) == 0 {
					continue
				}
				id := ids[0]
				switch i % 3 {
				case 0:
					_, err = m.Revoke(ctx, id)
				case 1:
					_, err = m.Roll(ctx, id, time.Duration(i%2)*time.Hour, keys.IdempotencyKey("mixed-roll-"+strconv.Itoa(w)+"-"+strconv.Itoa(i)))
				case 2:
					_, err = m.Revoke(ctx, id)
				}
				if err != nil && !errors.Is(err, keys.ErrNotFound) && !errors.As(err, new(*keys.ValidationError)) {
					t.Error(err)
					return
				}
				ids = ids[1:]
			}
		}()
	}
	wg.Wait()
	q := `SELECT count(*) FROM (
	SELECT account_id, count(*) FILTER (WHERE revoked_at IS NULL) AS active, count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked
	FROM {{s}}.api_keys GROUP BY account_id) AS k
FULL JOIN {{s}}.api_key_counts AS c USING (account_id)
WHERE coalesce(k.active, 0) <> coalesce(c.active, 0) OR coalesce(k.revoked, 0) <> coalesce(c.revoked, 0)`
	q = strings.ReplaceAll(q, "{{s}}", pgx.Identifier{schema}.Sanitize())
	var wrong int
	if err := pool.QueryRow(ctx, q).Scan(&wrong); err != nil || wrong != 0 {
		t.Fatalf("%d accounts whose counts differ from their rows (%v)", wrong, err)
	}
	var stored, active, revoked int
	q = strings.ReplaceAll(`SELECT count(*), count(*) FILTER (WHERE revoked_at IS NULL), count(*) FILTER (WHERE revoked_at IS NOT NULL) FROM {{s}}.api_keys`, "{{s}}", pgx.Identifier{schema}.Sanitize())
	if err := pool.QueryRow(ctx, q).Scan(&stored, &active, &revoked); err != nil {
		t.Fatal(err)
	}
	// Two accounts: at most 4 active each, and 4 revoked beside any
	// revocations since their last create or roll.
	if stored == 0 || active > 8 || stored > 2*(4+4+4) {
		t.Fatalf("after 240 creates: %d records stored, %d active, %d revoked", stored, active, revoked)
	}
	t.Logf("%d records stored (%d active, %d revoked)", stored, active, revoked)
}

// Expired idempotency entries are deleted on the Manager's flush, up to
// the batch's latest time (the Manager's clock): the table does not grow
// for ever, and an entry not yet expired at that time stays.
func TestFlushDeletesExpiredIdempotencyEntries(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := freshSchema(t, pool)
	s := newStore(t, pool, schema)
	created := time.Date(2031, 7, 1, 0, 0, 0, 0, time.UTC)
	var last *store.Record
	for i := range 2500 {
		r := storetest.NewRecord(t)
		e := &store.IdempotencyRecord{KeyID: r.ID, Sealed: []byte("x"), CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour)}
		switch i {
		case 2498: // expires at the flush's very time: due
			e.ExpiresAt = created.Add(48 * time.Hour)
		case 2499: // a microsecond later: kept
			e.ExpiresAt = created.Add(48*time.Hour + time.Microsecond)
		}
		if _, err := rand.Read(e.Scope[:]); err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, store.Write{Insert: r, Idempotency: e}); err != nil {
			t.Fatal(err)
		}
		last = r
	}
	if err := s.TouchLastUsed(ctx, []store.LastUsed{{ID: last.ID, At: created.Add(48 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "api_key_idempotency"}.Sanitize()).Scan(&left); err != nil || left != 1 {
		t.Fatalf("%d entries left after a flush past their expiry (want the 1 not yet expired): %v", left, err)
	}
}

// Stats counts cache hits, filter refusals and queries as they happen,
// and times this instance's insert notifications.
func TestStats(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	s := newStore(t, pool, "")
	deadline := time.Now().Add(5 * time.Second)
	for !s.Stats().Listening {
		if time.Now().After(deadline) {
			t.Fatal("the listener never connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := storetest.NewRecord(t)
	if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
		t.Fatal(err)
	}
	for s.Stats().NotificationLag == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the insert's notification was never timed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := s.Stats()
	for range 3 {
		if _, err := s.LookupDigest(ctx, r.Digest); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		var forged store.Digest
		_, _ = rand.Read(forged[:])
		_, _ = s.LookupDigest(ctx, forged)
	}
	after := s.Stats()
	// The first lookup queries and caches; the next two hit the cache.
	// Of 100 forged digests, the filter refuses all but its budget of
	// misses (20 a second), which query.
	hits, queries, refusals := after.CacheHits-before.CacheHits, after.Queries-before.Queries, after.FilterRefusals-before.FilterRefusals
	if hits != 2 || queries+refusals != 101 || refusals < 60 {
		t.Fatalf("three lookups of a key and 100 forged: %d cache hits, %d queries, %d refusals", hits, queries, refusals)
	}
	if after.NotificationLag <= 0 || after.NotificationLag > 5*time.Second {
		t.Fatalf("notification lag %v", after.NotificationLag)
	}
}

// Each option accepts the ends of its range and refuses one past them; a
// query timeout of 0 means none (queries still run).
func TestOptionEdges(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	for name, c := range map[string]struct {
		opt pgstore.Option
		ok  bool
	}{
		"WithSchema(48 characters)": {pgstore.WithSchema("s" + strings.Repeat("x", 47)), true},
		"WithSchema(49 characters)": {pgstore.WithSchema("s" + strings.Repeat("x", 48)), false},
		"WithCache(0, 1ns)":         {pgstore.WithCache(0, time.Nanosecond), true},
		"WithCache(-1, 1s)":         {pgstore.WithCache(-1, time.Second), false},
		"WithCache(10, 0)":          {pgstore.WithCache(10, 0), false},
		"WithQueryTimeout(0)":       {pgstore.WithQueryTimeout(0), true},
		"WithQueryTimeout(-1ns)":    {pgstore.WithQueryTimeout(-time.Nanosecond), false},
	} {
		s, err := pgstore.New(pool, c.opt)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want accepted %v", name, err, c.ok)
		}
		if s != nil {
			_ = s.Close(ctx)
		}
	}
	s := newStore(t, pool, "", pgstore.WithQueryTimeout(0))
	r := storetest.NewRecord(t)
	if err := s.Write(ctx, store.Write{Insert: r}); err != nil {
		t.Fatalf("with no query timeout: %v", err)
	}
	if _, err := s.Get(ctx, r.ID); err != nil {
		t.Fatalf("with no query timeout: %v", err)
	}
}
