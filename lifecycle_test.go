package keys_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

var owner = keys.Principal{AccountID: "acct_a", Subject: "user_1", Permissions: keys.DefaultVocabulary()}

func (f *fixture) createFor(t *testing.T, p keys.Principal, req keys.APIKeyCreate) *keys.APIKeyCreated {
	t.Helper()
	c, err := f.m.As(p).Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRevokeThenVerify(t *testing.T) {
	ctx := context.Background()
	var events []event.Event
	f := newFixture(t, keys.WithEventHook(func(_ context.Context, e event.Event) { events = append(events, e) }))
	c := f.createFor(t, owner, keys.APIKeyCreate{Name: "leaked", Environment: keys.Live})
	if _, err := f.m.Verify(ctx, string(c.Key)); err != nil {
		t.Fatal(err)
	}
	k, err := f.m.As(owner).Revoke(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if k.RevokedAt == nil || !k.RevokedAt.Equal(f.clock.Now()) {
		t.Fatalf("revoked_at %v", k.RevokedAt)
	}
	if _, err := f.m.Verify(ctx, string(c.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("the very next Verify: %v", err)
	}
	f.clock.Advance(time.Hour)
	again, err := f.m.As(owner).Revoke(ctx, c.ID)
	if err != nil || !again.RevokedAt.Equal(*k.RevokedAt) {
		t.Fatalf("revoking twice changed revoked_at: %v %v", again.RevokedAt, err)
	}
	got, err := f.m.As(owner).Get(ctx, c.ID)
	if err != nil || got.RevokedAt == nil {
		t.Fatalf("the revoked record is gone or unmarked: %v", err)
	}
	// The record stays for audit as it was: it cannot be changed, by a
	// principal or a trusted caller (an empty patch included).
	for name, update := range map[string]func(keys.APIKeyUpdate) (*keys.APIKey, error){
		"scoped":  func(u keys.APIKeyUpdate) (*keys.APIKey, error) { return f.m.As(owner).Update(ctx, c.ID, u) },
		"trusted": func(u keys.APIKeyUpdate) (*keys.APIKey, error) { return f.m.Update(ctx, c.ID, u) },
	} {
		for _, u := range []keys.APIKeyUpdate{{Name: keys.Change("renamed")}, {}} {
			var ve *keys.ValidationError
			if _, err := update(u); !errors.As(err, &ve) || ve.Code != "invalid_request" {
				t.Fatalf("%s update of a revoked key: %v", name, err)
			}
		}
	}
	if again, _ := f.m.Get(ctx, c.ID); again.Name != "leaked" {
		t.Fatalf("a revoked key was renamed to %q", again.Name)
	}
	var types []string
	for _, e := range events {
		types = append(types, string(e.Type))
		if strings.Contains(fmt.Sprintf("%+v", e), string(c.Key)[9:]) {
			t.Fatal("an event carries the key")
		}
	}
	if strings.Join(types, ",") != "key.created,key.revoked" || events[1].Actor != "user_1" || events[1].KeyID != c.ID {
		t.Fatalf("events %v", types)
	}
}

func TestRollWithGrace(t *testing.T) {
	ctx := context.Background()
	var events []event.Event
	f := newFixture(t, keys.WithEventHook(func(_ context.Context, e event.Event) { events = append(events, e) }))
	old := f.createFor(t, owner, keys.APIKeyCreate{Name: "deploy", Environment: keys.Live, Permissions: []string{"kyb:read"}, AllowedIPs: []string{"10.0.0.0/8"}, RateLimit: intp(30)})
	ip := keys.FromIP(mustAddr("10.1.1.1"))
	rolled, err := f.m.As(owner).Roll(ctx, old.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if rolled.ID == old.ID || rolled.Key == old.Key || rolled.Name != "deploy" || rolled.Permissions[0] != "kyb:read" ||
		rolled.AllowedIPs[0] != "10.0.0.0/8" || *rolled.RateLimit != 30 || rolled.RevokedAt != nil {
		t.Fatalf("successor %+v", rolled.APIKey)
	}
	for _, k := range []keys.Secret{old.Key, rolled.Key} {
		if _, err := f.m.Verify(ctx, string(k), ip); err != nil {
			t.Fatalf("during the grace period: %v", err)
		}
	}
	f.clock.Advance(time.Hour - time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(old.Key), ip); err != nil {
		t.Fatalf("old key just before the grace period ends: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(old.Key), ip); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("old key after the grace period: %v", err)
	}
	if _, err := f.m.Verify(ctx, string(rolled.Key), ip); err != nil {
		t.Fatalf("new key after the grace period: %v", err)
	}
	if _, err := f.m.As(owner).Roll(ctx, old.ID, 0); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("rolling a rolled key: %v", err)
	}
	// Grace 0: the old secret stops at once.
	now, err := f.m.As(owner).Roll(ctx, rolled.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Verify(ctx, string(rolled.Key), ip); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("grace 0: %v", err)
	}
	if _, err := f.m.Verify(ctx, string(now.Key), ip); err != nil {
		t.Fatal(err)
	}
	for _, g := range []time.Duration{-time.Second, (7 * 24 * time.Hour) + time.Second} {
		var ve *keys.ValidationError
		if _, err := f.m.As(owner).Roll(ctx, now.ID, g); !errors.As(err, &ve) || ve.Param != "grace_period_seconds" {
			t.Fatalf("grace %v: %v", g, err)
		}
	}
	if _, err := f.m.As(owner).Roll(ctx, now.ID, (7 * 24 * time.Hour)); err != nil {
		t.Fatalf("the longest grace: %v", err)
	}
	if e := events[1]; e.Type != event.KeyRolled || e.Replaces != old.ID || e.KeyID != rolled.ID {
		t.Fatalf("roll event %+v", e)
	}
	exp := f.createFor(t, owner, keys.APIKeyCreate{Name: "exp", Environment: keys.Live, ExpiresAt: ptr(f.clock.Now().Add(time.Minute))})
	f.clock.Advance(time.Minute)
	if _, err := f.m.As(owner).Roll(ctx, exp.ID, 0); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("rolling an expired key: %v", err)
	}
}

func TestUpdate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := f.createFor(t, owner, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, Permissions: []string{"identity:read"}, AllowedIPs: []string{"10.0.0.0/8"}, RateLimit: intp(5), ExpiresAt: ptr(f.clock.Now().Add(time.Hour))})
	k, err := f.m.As(owner).Update(ctx, c.ID, keys.APIKeyUpdate{
		Name:        keys.Change(" renamed "),
		Permissions: keys.Change([]string{"fraud:read", "fraud:read", "kyb:write"}),
		AllowedIPs:  keys.Clear[[]string](),
		RateLimit:   keys.Clear[int](),
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "renamed" || strings.Join(k.Permissions, ",") != "fraud:read,kyb:write" || len(k.AllowedIPs) != 0 || k.RateLimit != nil || k.ExpiresAt == nil {
		t.Fatalf("updated %+v", k)
	}
	// The change holds for the very next Verify.
	v, err := f.m.Verify(ctx, string(c.Key), keys.FromIP(mustAddr("192.0.2.1")), keys.Require("kyb:write"))
	if err != nil || v.RateLimit.Limit != 0 {
		t.Fatalf("verify after update: %v %+v", err, v.RateLimit)
	}
	if _, err := f.m.Verify(ctx, string(c.Key), keys.Require("identity:read")); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("a removed permission still works: %v", err)
	}
	k, err = f.m.As(owner).Update(ctx, c.ID, keys.APIKeyUpdate{ExpiresAt: keys.Clear[time.Time](), RateLimit: keys.Change(9)})
	if err != nil || k.ExpiresAt != nil || *k.RateLimit != 9 || k.Name != "renamed" {
		t.Fatalf("second update: %+v %v", k, err)
	}
	for name, tc := range map[string]struct {
		u     keys.APIKeyUpdate
		param string
	}{
		"clear name":     {keys.APIKeyUpdate{Name: keys.Clear[string]()}, "name"},
		"blank name":     {keys.APIKeyUpdate{Name: keys.Change("  ")}, "name"},
		"bad permission": {keys.APIKeyUpdate{Permissions: keys.Change([]string{"root:all"})}, "permissions[0]"},
		"bad ip":         {keys.APIKeyUpdate{AllowedIPs: keys.Change([]string{"::/0"})}, "allowed_ips[0]"},
		"zero rate":      {keys.APIKeyUpdate{RateLimit: keys.Change(0)}, "rate_limit"},
		"past expiry":    {keys.APIKeyUpdate{ExpiresAt: keys.Change(f.clock.Now().Add(-time.Second))}, "expires_at"},
	} {
		t.Run(name, func(t *testing.T) {
			var ve *keys.ValidationError
			if _, err := f.m.As(owner).Update(ctx, c.ID, tc.u); !errors.As(err, &ve) || ve.Param != tc.param {
				t.Fatalf("err = %v, want a ValidationError on %s", err, tc.param)
			}
		})
	}
	narrow := keys.Principal{AccountID: "acct_a", Subject: "key_narrow", Permissions: []string{"developers:write", "identity:read"}}
	var pe *keys.PermissionError
	if _, err := f.m.As(narrow).Update(ctx, c.ID, keys.APIKeyUpdate{Permissions: keys.Change([]string{"identity:read", "kyb:write"})}); !errors.As(err, &pe) || pe.Param != "permissions[1]" {
		t.Fatalf("escalation through update: %v", err)
	}
	if _, err := f.m.As(narrow).Roll(ctx, c.ID, 0); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("escalation through roll (the key holds more than the caller): %v", err)
	}
	if _, err := f.m.As(narrow).Update(ctx, c.ID, keys.APIKeyUpdate{Name: keys.Change("ok")}); err != nil {
		t.Fatalf("a rename needs no permission the key holds: %v", err)
	}
}

func TestLifecycleIsolation(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	live := f.createFor(t, owner, keys.APIKeyCreate{Name: "live", Environment: keys.Live})
	test := f.createFor(t, owner, keys.APIKeyCreate{Name: "test", Environment: keys.Test})
	stranger := keys.Principal{AccountID: "acct_b", Subject: "key_b", Permissions: keys.DefaultVocabulary()}
	testKey := keys.Principal{AccountID: "acct_a", Subject: "key_t", Environment: keys.Test, Permissions: keys.DefaultVocabulary()}
	for _, tc := range []struct {
		p  keys.Principal
		id string
	}{{stranger, live.ID}, {stranger, test.ID}, {testKey, live.ID}, {owner, "key_nope"}} {
		if _, err := f.m.As(tc.p).Get(ctx, tc.id); !errors.Is(err, keys.ErrNotFound) {
			t.Fatalf("Get: %v", err)
		}
		if _, err := f.m.As(tc.p).Update(ctx, tc.id, keys.APIKeyUpdate{Name: keys.Change("x")}); !errors.Is(err, keys.ErrNotFound) {
			t.Fatalf("Update: %v", err)
		}
		if _, err := f.m.As(tc.p).Revoke(ctx, tc.id); !errors.Is(err, keys.ErrNotFound) {
			t.Fatalf("Revoke: %v", err)
		}
		if _, err := f.m.As(tc.p).Roll(ctx, tc.id, 0); !errors.Is(err, keys.ErrNotFound) {
			t.Fatalf("Roll: %v", err)
		}
	}
	if _, err := f.m.Verify(ctx, string(live.Key)); err != nil {
		t.Fatalf("someone else's attempts changed the key: %v", err)
	}
	if l, err := f.m.As(stranger).List(ctx, keys.ListFilter{}); err != nil || len(l.Data) != 0 {
		t.Fatalf("a stranger lists %d keys", len(l.Data))
	}
	l, err := f.m.As(testKey).List(ctx, keys.ListFilter{})
	if err != nil || len(l.Data) != 1 || l.Data[0].ID != test.ID {
		t.Fatalf("a test key lists %v", l)
	}
	if l, _ := f.m.As(testKey).List(ctx, keys.ListFilter{Environment: keys.Live}); len(l.Data) != 0 {
		t.Fatal("a test key listed live keys")
	}
	if k, err := f.m.As(testKey).Get(ctx, test.ID); err != nil || k.ID != test.ID {
		t.Fatalf("a test key reading a test key: %v", err)
	}
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	want := map[string]bool{}
	for range 250 {
		f.clock.Advance(time.Millisecond)
		want[f.createFor(t, owner, keys.APIKeyCreate{Name: "k", Environment: keys.Test}).ID] = true
	}
	// Keys created while paging, on a frozen clock: each shares the newest
	// key's timestamp, so its random ID can sort before or after the cursor,
	// the hardest case for keyset paging. At most 500 of them: an unbounded
	// writer can add keys after the cursor faster than the pager reads them,
	// and this test once hung CI that way.
	// Forty of them before the first page, so that the cursor of the first
	// pages sits inside that shared timestamp while the writer runs.
	for range 40 {
		f.createFor(t, owner, keys.APIKeyCreate{Name: "new", Environment: keys.Test})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 500 {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.m.As(owner).Create(ctx, keys.APIKeyCreate{Name: "new", Environment: keys.Test}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	seen := map[string]int{}
	cursor, pages := "", 0
	var prev time.Time
	for {
		l, err := f.m.As(owner).List(ctx, keys.ListFilter{Limit: 20, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, k := range l.Data {
			if !prev.IsZero() && k.CreatedAt.After(prev) {
				t.Fatal("not newest first")
			}
			prev = k.CreatedAt
			if want[k.ID] {
				seen[k.ID]++
			}
		}
		if !l.HasMore {
			if l.NextCursor != "" {
				t.Fatal("a last page with a cursor")
			}
			break
		}
		cursor = l.NextCursor
	}
	close(stop)
	wg.Wait()
	for id := range want {
		if seen[id] != 1 {
			t.Fatalf("key seen %d times", seen[id])
		}
	}
	if pages < 13 {
		t.Fatalf("%d pages for 250+ keys at 20 a page", pages)
	}
	yes := true
	for name, lf := range map[string]keys.ListFilter{"limit 0 is 20": {}, "revoked": {Revoked: &yes}, "live": {Environment: keys.Live}} {
		l, err := f.m.As(owner).List(ctx, lf)
		if err != nil {
			t.Fatal(name, err)
		}
		if (name == "limit 0 is 20" && len(l.Data) != 20) || (name != "limit 0 is 20" && len(l.Data) != 0) {
			t.Fatalf("%s: %d keys", name, len(l.Data))
		}
	}
	for name, lf := range map[string]keys.ListFilter{
		"limit 101": {Limit: 101}, "limit -1": {Limit: -1}, "cursor garbage": {Cursor: "!!"}, "cursor forged": {Cursor: "bm9wZQ"},
		"environment": {Environment: "prod"},
	} {
		if _, err := f.m.As(owner).List(ctx, lf); !errors.Is(err, keys.ErrValidation) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// A revocation racing updates is never undone by them.
func TestRevokeRacingUpdates(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := f.createFor(t, owner, keys.APIKeyCreate{Name: "k", Environment: keys.Test})
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				// Once the revocation lands, updates are refused: a
				// revoked key's record stays as it was, for audit.
				_, err := f.m.As(owner).Update(ctx, c.ID, keys.APIKeyUpdate{Name: keys.Change(fmt.Sprintf("n%d-%d", i, j))})
				if err != nil && !errors.Is(err, keys.ErrValidation) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := f.m.As(owner).Revoke(ctx, c.ID); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	if _, err := f.m.Verify(ctx, string(c.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("concurrent updates undid the revocation: %v", err)
	}
}

func TestRollIdempotency(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := f.createFor(t, owner, keys.APIKeyCreate{Name: "k", Environment: keys.Test})
	first, err := f.m.As(owner).Roll(ctx, c.ID, time.Minute, keys.IdempotencyKey("roll-retry-0001"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.m.As(owner).Roll(ctx, c.ID, time.Minute, keys.IdempotencyKey("roll-retry-0001"))
	if err != nil || !again.Replayed || again.ID != first.ID || again.Key != first.Key {
		t.Fatalf("a retried roll did not replay: %v", err)
	}
	if _, err := f.m.As(owner).Roll(ctx, c.ID, time.Hour, keys.IdempotencyKey("roll-retry-0001")); !errors.Is(err, keys.ErrIdempotencyConflict) {
		t.Fatalf("another grace with the same idempotency key: %v", err)
	}
	l, err := f.m.As(owner).List(ctx, keys.ListFilter{})
	if err != nil || len(l.Data) != 2 {
		t.Fatalf("%d keys after one roll retried, want 2", len(l.Data))
	}
	var ve *keys.ValidationError
	if _, err := f.m.As(owner).Roll(ctx, first.ID, 0, keys.IdempotencyKey("bad key!")); !errors.As(err, &ve) || ve.Param != "Idempotency-Key" {
		t.Fatalf("malformed idempotency key: %v", err)
	}
}

// slowStore widens the window between a read and the write that depends on
// it, as a database round trip does.
type slowStore struct {
	store.Store
	delay time.Duration
}

func (s *slowStore) Get(ctx context.Context, id string) (*store.Record, error) {
	time.Sleep(s.delay)
	return s.Store.Get(ctx, id)
}

func (s *slowStore) Write(ctx context.Context, w store.Write) error {
	time.Sleep(s.delay)
	return s.Store.Write(ctx, w)
}

// Concurrent changes of one key all land: writers that collide back off
// (with jitter) instead of retrying at once until they give up with a 503.
func TestConcurrentUpdatesOfOneKeyAllLand(t *testing.T) {
	ctx := context.Background()
	s := &slowStore{Store: memstore.New(), delay: time.Millisecond}
	m, err := keys.New(s)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	c, err := m.Create(ctx, keys.APIKeyCreate{Name: "contended", Environment: keys.Test, AccountID: "acct_a"})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 15
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := m.Update(ctx, c.ID, keys.APIKeyUpdate{Name: keys.Change(fmt.Sprintf("w%d-%d", w, i))}); err != nil {
					failed.Add(1)
					t.Log(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d concurrent updates of one key failed", n, writers*each)
	}
	rec, err := s.Get(ctx, c.ID)
	if err != nil || rec.Version != 1+writers*each {
		t.Fatalf("version %d after %d updates (%v)", rec.Version, writers*each, err)
	}
}

// Rolls count toward the history bound as creates do: a chain of 30 rolls
// of one key under a cap of 3 keeps at most 3 revoked records (and the
// live successor), not 30.
func TestRollChainHistoryIsBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, keys.WithMaxKeysPerAccount(3))
	k := f.create(t, keys.APIKeyCreate{Name: "chain", Environment: keys.Test, AccountID: "acct_chain"})
	id := k.ID
	for i := range 30 {
		f.clock.Advance(time.Millisecond)
		next, err := f.m.Roll(ctx, id, 0)
		if err != nil {
			t.Fatalf("roll %d: %v", i, err)
		}
		id = next.ID
	}
	all, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_chain", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Data) > 4 {
		t.Fatalf("after 30 rolls, %d records kept (cap 3): rolls escape the history bound", len(all.Data))
	}
}
