package keys_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestVerify(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	now := f.clock.Now()
	plain := f.create(t, keys.APIKeyCreate{Name: "plain", Environment: keys.Live, Permissions: []string{"identity:read", "fraud:read"}})
	testKey := f.create(t, keys.APIKeyCreate{Name: "test", Environment: keys.Test})
	ipKey := f.create(t, keys.APIKeyCreate{Name: "ip", Environment: keys.Live, AllowedIPs: []string{"192.0.2.0/24", "2001:db8::/32", "198.51.100.7"}})
	expiring := f.create(t, keys.APIKeyCreate{Name: "exp", Environment: keys.Live, ExpiresAt: ptr(now.Add(time.Minute))})
	f.store.onCreate = func(r *store.Record) { r.RevokedAt = now }
	revoked := f.create(t, keys.APIKeyCreate{Name: "rev", Environment: keys.Live})
	f.store.onCreate = func(r *store.Record) { r.RevokedAt = now.Add(time.Hour) }
	revokedLater := f.create(t, keys.APIKeyCreate{Name: "rev later", Environment: keys.Live})
	f.store.onCreate = nil
	f.clock.Advance(2 * time.Minute)

	unknown := []byte(string(plain.Key))
	unknown[20] ^= 0x01 // flip a bit, then repair the checksum: well-formed, unknown
	unknownKey := keys.WithValidChecksum(string(unknown))

	tests := []struct {
		name string
		key  string
		opts []keys.VerifyOption
		want error
	}{
		{"valid", string(plain.Key), nil, nil},
		{"valid with permissions", string(plain.Key), []keys.VerifyOption{keys.Require("identity:read", "fraud:read")}, nil},
		{"missing permission", string(plain.Key), []keys.VerifyOption{keys.Require("identity:read", "fraud:write")}, keys.ErrPermissionDenied},
		{"permission across options", string(plain.Key), []keys.VerifyOption{keys.Require("identity:read"), keys.Require("kyb:read")}, keys.ErrPermissionDenied},
		{"right environment", string(plain.Key), []keys.VerifyOption{keys.InEnvironment(keys.Live)}, nil},
		{"wrong environment", string(testKey.Key), []keys.VerifyOption{keys.InEnvironment(keys.Live)}, keys.ErrWrongEnvironment},
		{"empty", "", nil, keys.ErrInvalidKey},
		{"malformed", "txc_live_nope", nil, keys.ErrInvalidKey},
		{"bad checksum", changeLast(string(plain.Key)), nil, keys.ErrInvalidKey},
		{"unknown well-formed", unknownKey, nil, keys.ErrInvalidKey},
		{"trailing newline", string(plain.Key) + "\n", nil, keys.ErrInvalidKey},
		{"revoked", string(revoked.Key), nil, keys.ErrKeyRevoked},
		{"revocation in the future", string(revokedLater.Key), nil, nil},
		{"expired", string(expiring.Key), nil, keys.ErrKeyExpired},
		{"ip in cidr", string(ipKey.Key), []keys.VerifyOption{keys.FromIP(mustAddr("192.0.2.200"))}, nil},
		{"ip exact", string(ipKey.Key), []keys.VerifyOption{keys.FromIP(mustAddr("198.51.100.7"))}, nil},
		{"ip exact neighbour", string(ipKey.Key), []keys.VerifyOption{keys.FromIP(mustAddr("198.51.100.8"))}, keys.ErrIPNotAllowed},
		{"ipv6 in cidr", string(ipKey.Key), []keys.VerifyOption{keys.FromIP(mustAddr("2001:db8:1::5"))}, nil},
		{"ipv6 zone ignored", string(ipKey.Key), []keys.VerifyOption{keys.FromIP(mustAddr("2001:db8::1%eth0"))}, nil},
		{"ipv4-mapped matches v4", string(ipKey.Key), []keys.VerifyOption{keys.FromIP(mustAddr("::ffff:192.0.2.9"))}, nil},
		{"ip outside", string(ipKey.Key), []keys.VerifyOption{keys.FromIP(mustAddr("203.0.113.1"))}, keys.ErrIPNotAllowed},
		{"no ip given", string(ipKey.Key), nil, keys.ErrIPNotAllowed},
		{"no allowlist, any ip", string(plain.Key), []keys.VerifyOption{keys.FromIP(mustAddr("203.0.113.1"))}, nil},
		{"revoked beats everything", string(revoked.Key), []keys.VerifyOption{keys.Require("kyb:write"), keys.FromIP(mustAddr("203.0.113.1"))}, keys.ErrKeyRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := f.m.Verify(ctx, tt.key, tt.opts...)
			if tt.want == nil {
				if err != nil || v.KeyID == "" {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), tt.key) && tt.key != "" {
				t.Fatal("the error echoes the presented key")
			}
		})
	}
}

func TestMalformedKeysNeverReachTheStore(t *testing.T) {
	f := newFixture(t)
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	k := string(c.Key)
	for _, bad := range []string{"", "x", "Bearer " + k, k + " ", " " + k, k[:len(k)-1], strings.ToUpper(k), k[:20] + "!" + k[21:], strings.Repeat("a", 8192)} {
		if _, err := f.m.Verify(context.Background(), bad); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := f.store.lookups.Load(); n != 0 {
		t.Fatalf("%d malformed keys reached the store", n)
	}
}

func TestStoreFailureIsNotInvalidKey(t *testing.T) {
	f := newFixture(t)
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	down := errors.New("connection refused")
	f.store.failWith = down
	_, err := f.m.Verify(context.Background(), string(c.Key))
	if !errors.Is(err, down) || !errors.Is(err, keys.ErrUnavailable) || errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("err = %v: a store outage must not read as a bad key", err)
	}
}

func TestRateLimitBoundary(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	const n = 5
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test, RateLimit: intp(n)})
	start := f.clock.Now()
	for i := range n {
		v, err := f.m.Verify(ctx, string(c.Key))
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		rl := v.RateLimit
		if rl.Limit != n || rl.Remaining != n-1-i {
			t.Fatalf("request %d: %+v", i+1, rl)
		}
		if want := start.Add(time.Duration(i+1) * time.Minute / n); !rl.Reset.Equal(want) {
			t.Fatalf("request %d: reset %v, want %v", i+1, rl.Reset, want)
		}
	}
	v, err := f.m.Verify(ctx, string(c.Key))
	var rle *keys.RateLimitError
	if !errors.As(err, &rle) || !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("request %d: err = %v, want rate limited", n+1, err)
	}
	if rle.RateLimit.RetryAfter != time.Minute/n || v.RateLimit.Remaining != 0 || v.KeyID == "" {
		t.Fatalf("retry after %v, state %+v", rle.RateLimit.RetryAfter, v.RateLimit)
	}
	// One interval later, exactly one more request passes.
	f.clock.Advance(time.Minute/n - time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(c.Key)); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("passed a nanosecond early: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(c.Key)); err != nil {
		t.Fatalf("refused after the interval: %v", err)
	}
	if _, err := f.m.Verify(ctx, string(c.Key)); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("second request in one interval passed: %v", err)
	}
	// After a whole window of quiet the full burst is back.
	f.clock.Advance(time.Minute)
	for i := range n {
		if _, err := f.m.Verify(ctx, string(c.Key)); err != nil {
			t.Fatalf("after the window, request %d: %v", i+1, err)
		}
	}
	// A refused request is not counted against the next one.
	if _, err := f.m.Verify(ctx, string(c.Key)); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatal("burst exceeded")
	}
	// Keys are limited separately.
	other := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test, RateLimit: intp(1)})
	if _, err := f.m.Verify(ctx, string(other.Key)); err != nil {
		t.Fatalf("another key was limited: %v", err)
	}
}

func TestPermissionFailureDoesNotSpendRateLimit(t *testing.T) {
	f := newFixture(t)
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test, RateLimit: intp(1)})
	for range 3 {
		if _, err := f.m.Verify(context.Background(), string(c.Key), keys.Require("kyb:write")); !errors.Is(err, keys.ErrPermissionDenied) {
			t.Fatal(err)
		}
	}
	if _, err := f.m.Verify(context.Background(), string(c.Key)); err != nil {
		t.Fatalf("forbidden requests used up the limit: %v", err)
	}
}

// TestConcurrentUse runs verification (with rate limits), creation and
// last-used flushes at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, keys.WithLastUsedFlushInterval(time.Millisecond))
	const limit = 50
	var ks []string
	for range 8 {
		ks = append(ks, string(f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test, RateLimit: intp(limit)}).Key))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := map[string]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := ks[(g+i)%len(ks)]
				_, err := f.m.Verify(ctx, k)
				switch {
				case err == nil:
					mu.Lock()
					passed[k]++
					mu.Unlock()
				case !errors.Is(err, keys.ErrRateLimited):
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := f.m.Create(ctx, keys.APIKeyCreate{Name: "n", Environment: keys.Test, AccountID: "acct_test"}); err != nil {
					t.Error(err)
					return
				}
				if err := f.m.Flush(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// The clock stood still, so each key passed exactly its burst.
	for k, n := range passed {
		if n != limit {
			t.Fatalf("key %s… passed %d requests, limit %d", k[:13], n, limit)
		}
	}
}

// The hot path allocates nothing, with every option in play and on every
// refusal an attacker can cause at will: an allocation here would be paid
// on every request of every host. (The benchmarks show it too; this test
// makes a regression fail CI rather than wait to be noticed.)
func TestVerifyAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(ctx) })
	create := func(req keys.APIKeyCreate) string {
		req.AccountID = "acct_test"
		c, err := m.Create(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return string(c.Key)
	}
	plain := create(keys.APIKeyCreate{Name: "plain", Environment: keys.Live})
	full := create(keys.APIKeyCreate{Name: "full", Environment: keys.Live, Permissions: []string{"identity:read"},
		AllowedIPs: []string{"192.0.2.0/24"}, RateLimit: intp(10_000_000)})
	unknown := keys.WithValidChecksum(plain[:len(plain)-8] + "xxxxxxxx")
	ip := mustAddr("192.0.2.9")
	for name, c := range map[string]struct {
		key  string
		opts []keys.VerifyOption
		want error
	}{
		"no options":                      {plain, nil, nil},
		"ip, permission, env, rate limit": {full, []keys.VerifyOption{keys.FromIP(ip), keys.Require("identity:read"), keys.InEnvironment(keys.Live)}, nil},
		"malformed":                       {plain[:len(plain)-1] + "!", nil, keys.ErrInvalidKey},
		"unknown":                         {unknown, nil, keys.ErrInvalidKey},
		"ip refused":                      {full, []keys.VerifyOption{keys.FromIP(mustAddr("198.51.100.1"))}, keys.ErrIPNotAllowed},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			allocs := testing.AllocsPerRun(1000, func() { _, err = m.Verify(ctx, c.key, c.opts...) })
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if allocs != 0 {
				t.Fatalf("%v allocations per Verify", allocs)
			}
		})
	}
}

// Security states in combination. A rolled key still in its grace period
// that is then revoked is refused at once, not at the end of its grace; it
// cannot be rolled again; a key both revoked and expired is reported
// revoked.
func TestSecurityStatesCombined(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	k := f.create(t, keys.APIKeyCreate{Name: "leaked", Environment: keys.Test})
	if _, err := f.m.Roll(ctx, k.ID, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatalf("in its grace period: %v", err)
	}
	var ve *keys.ValidationError
	if _, err := f.m.Roll(ctx, k.ID, time.Hour); !errors.As(err, &ve) {
		t.Fatalf("rolling a key already rolled: %v", err)
	}
	if _, err := f.m.Revoke(ctx, k.ID); err != nil {
		t.Fatalf("revoking a key in its grace period: %v", err)
	}
	if _, err := f.m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("revoked during its grace period, still: %v", err)
	}

	exp := f.clock.Now().Add(time.Minute)
	both := f.create(t, keys.APIKeyCreate{Name: "both", Environment: keys.Test, ExpiresAt: &exp})
	if _, err := f.m.Revoke(ctx, both.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if _, err := f.m.Verify(ctx, string(both.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("a key revoked and expired: %v, want ErrKeyRevoked", err)
	}
	if _, err := f.m.Roll(ctx, both.ID, 0); !errors.As(err, &ve) {
		t.Fatalf("rolling a revoked, expired key: %v", err)
	}
}

// Rules of Verify that live in the core, tested in the core: a limit of 1
// a minute admits one request and tells the next to wait a minute; a
// limiter that fails makes the verification unavailable, never valid and
// never a bad key.
func TestRateLimitOfOneAndAFailingLimiter(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	one := 1
	k := f.create(t, keys.APIKeyCreate{Name: "one", Environment: keys.Test, RateLimit: &one})
	v, err := f.m.Verify(ctx, string(k.Key))
	if err != nil || v.RateLimit.Limit != 1 || v.RateLimit.Remaining != 0 {
		t.Fatalf("the first request: %+v, %v", v.RateLimit, err)
	}
	var rle *keys.RateLimitError
	if _, err := f.m.Verify(ctx, string(k.Key)); !errors.As(err, &rle) || rle.RateLimit.RetryAfter != time.Minute {
		t.Fatalf("the second: %v, want a refusal for exactly a minute", err)
	}
	f.clock.Advance(time.Minute - time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(k.Key)); !errors.As(err, &rle) || rle.RateLimit.RetryAfter != time.Nanosecond {
		t.Fatalf("a nanosecond before the minute: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatalf("a minute later: %v", err)
	}

	broken := newFixture(t, keys.WithLimiter(failingLimiter{}))
	limited := broken.create(t, keys.APIKeyCreate{Name: "limited", Environment: keys.Test, RateLimit: &one})
	if _, err := broken.m.Verify(ctx, string(limited.Key)); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("with the limiter failing: %v, want ErrUnavailable", err)
	}
	unlimited := broken.create(t, keys.APIKeyCreate{Name: "unlimited", Environment: keys.Test})
	if _, err := broken.m.Verify(ctx, string(unlimited.Key)); err != nil {
		t.Fatalf("a key with no limit never asks the limiter: %v", err)
	}
}
