package keys_test

// Tests for the classes of rule issue 14's mutation sample found loosely
// tested: exact instants, every member of a class, every field of a
// fingerprint, and security states in combination. Each is a property over
// the class, not one case per mutant.

import (
	"context"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// A key expires at its expires_at exactly, and a rolled key's grace ends
// at its revoked_at exactly: valid one nanosecond before, refused at.
func TestExactInstants(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	exp := f.clock.Now().Add(time.Hour)
	k := f.create(t, keys.APIKeyCreate{Name: "expiring", Environment: keys.Test, ExpiresAt: &exp})
	rolled := f.create(t, keys.APIKeyCreate{Name: "rolled", Environment: keys.Test})
	if _, err := f.m.Roll(ctx, rolled.ID, 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	graceEnd := f.clock.Now().Add(30 * time.Minute)

	f.clock.Advance(graceEnd.Sub(f.clock.Now()) - time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(rolled.Key)); err != nil {
		t.Fatalf("a rolled key a nanosecond before its grace ends: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(rolled.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("a rolled key when its grace ends: %v", err)
	}

	f.clock.Advance(exp.Sub(f.clock.Now()) - time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatalf("a key a nanosecond before it expires: %v", err)
	}
	f.clock.Advance(time.Nanosecond)
	if _, err := f.m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrKeyExpired) {
		t.Fatalf("a key at its expiry: %v", err)
	}
}

// A key name is at most 200 characters as sent, counted in characters,
// not bytes: 200 multi-byte characters pass, 201 do not, and surrounding
// spaces count before they are trimmed.
func TestNameLengthBoundary(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{strings.Repeat("é", 200), true},
		{strings.Repeat("é", 201), false},
		{strings.Repeat("a", 199) + " ", true},
		{" " + strings.Repeat("a", 199) + " ", false},
		{strings.Repeat("a", 200), true},
	} {
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: c.name, Environment: keys.Test, AccountID: "acct_test"})
		var ve *keys.ValidationError
		if c.ok != (err == nil) || (err != nil && (!errors.As(err, &ve) || ve.Param != "name")) {
			t.Errorf("a name of %d characters (%d bytes): %v", len([]rune(c.name)), len(c.name), err)
		}
	}
}

// Every bidirectional-formatting control (the nine of CVE-2021-42574 and
// the three marks) and every C0 and C1 control character is refused in a
// name; their neighbours in the code charts are not.
func TestEveryInvisibleCharacterRefused(t *testing.T) {
	f := newFixture(t)
	create := func(name string) error {
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: name, Environment: keys.Test, AccountID: "acct_test"})
		return err
	}
	var refused []rune
	for r := rune(0); r < 0x20; r++ {
		refused = append(refused, r)
	}
	for r := rune(0x7F); r <= 0x9F; r++ {
		refused = append(refused, r)
	}
	refused = append(refused, 0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069)
	for _, r := range refused {
		if r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r' || r == 0x85 {
			continue // white space: trimmed at the ends, so try it inside
		}
		for _, name := range []string{"a" + string(r) + "b", string(r) + "ab", "ab" + string(r)} {
			var ve *keys.ValidationError
			if err := create(name); !errors.As(err, &ve) || ve.Param != "name" {
				t.Errorf("a name with U+%04X: %v", r, err)
			}
		}
	}
	for _, r := range []rune{'\t', '\n', '\v', '\f', '\r', 0x85} {
		if err := create("a" + string(r) + "b"); err == nil {
			t.Errorf("a name with U+%04X inside it was accepted", r)
		}
	}
	for _, r := range []rune{0x20, 0x7E, 0xA0, 0x061B, 0x061D, 0x200D, 0x2029, 0x2065, 0x206A, 0x2070, 0x2029, 0x202F} {
		if err := create("a" + string(r) + "b"); err != nil {
			t.Errorf("a name with U+%04X, which is no control: %v", r, err)
		}
	}
}

// The alphabet of a key's body is checked even when the checksum is right:
// a key whose body holds any byte outside base62, with a checksum computed
// over that body, is refused without a store lookup.
func TestBodyAlphabetCheckedBehindAValidChecksum(t *testing.T) {
	f := newFixture(t)
	k := f.create(t, keys.APIKeyCreate{Name: "shape", Environment: keys.Live})
	key := string(k.Key)
	const prefix, sumChars = len("txc_live_"), 6
	base62 := "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	checksum := func(s string) string {
		c := crc32.ChecksumIEEE([]byte(s))
		var d [sumChars]byte
		for i := sumChars - 1; i >= 0; i-- {
			d[i] = base62[c%62]
			c /= 62
		}
		return string(d[:])
	}
	body := key[:len(key)-sumChars]
	if checksum(body) != key[len(key)-sumChars:] {
		t.Fatal("the test's checksum is not the format's")
	}
	before := f.store.lookups.Load()
	for b := 0; b < 256; b += 3 {
		if strings.IndexByte(base62, byte(b)) >= 0 {
			continue
		}
		for at := prefix; at < len(body); at++ { // every position: the check runs 8 bytes at a time
			forged := body[:at] + string([]byte{byte(b)}) + body[at+1:]
			forged += checksum(forged)
			if _, err := f.m.Verify(context.Background(), forged); !errors.Is(err, keys.ErrInvalidKey) {
				t.Fatalf("a body with byte %#x at %d and a valid checksum: %v", b, at, err)
			}
		}
	}
	if n := f.store.lookups.Load() - before; n != 0 {
		t.Fatalf("malformed bodies cost %d store lookups", n)
	}
}

// Every character of a key's random part is equally likely: a chi-square
// test over 8,000 keys (256,000 characters in 62 classes; 61 degrees of
// freedom). The bound, 125, is passed by chance less than once in a
// million runs; a rejection bound off by one byte (one character a quarter
// more likely) gives about 250.
func TestRandomPartIsUniform(t *testing.T) {
	f := newFixture(t, keys.WithMaxKeysPerAccount(1_000_000))
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var counts [62]int
	total := 0
	for range 8000 {
		k := f.create(t, keys.APIKeyCreate{Name: "uniform", Environment: keys.Test})
		random := string(k.Key)[len("txc_test_") : len(k.Key)-6]
		if len(random) != 32 {
			t.Fatalf("a random part of %d characters", len(random))
		}
		for i := 0; i < len(random); i++ {
			counts[strings.IndexByte(base62, random[i])]++
			total++
		}
	}
	want := float64(total) / 62
	chi := 0.0
	for _, c := range counts {
		chi += math.Pow(float64(c)-want, 2) / want
	}
	t.Logf("chi-square %.1f over %d characters (61 degrees of freedom: mean 61)", chi, total)
	if chi > 125 {
		t.Fatalf("the random part is not uniform: chi-square %.1f, counts %v", chi, counts)
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

// Every field of a create is in its idempotency fingerprint: the same
// idempotency key with any one field changed is a conflict, and with
// nothing changed a replay. An idempotency key's scope is its endpoint: the
// same key on Create and on Roll are two requests.
func TestIdempotencyFingerprintEveryField(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	p := keys.Principal{AccountID: "acct_test", Subject: "user", Permissions: keys.DefaultVocabulary()}
	exp := f.clock.Now().Add(48 * time.Hour)
	later := exp.Add(time.Second)
	ten, eleven := 10, 11
	base := func() keys.APIKeyCreate {
		return keys.APIKeyCreate{Name: "fp", Environment: keys.Test, Permissions: []string{"identity:read"},
			AllowedIPs: []string{"192.0.2.0/24"}, RateLimit: &ten, ExpiresAt: &exp}
	}
	changes := map[string]func(*keys.APIKeyCreate){
		"name":        func(r *keys.APIKeyCreate) { r.Name = "fp2" },
		"environment": func(r *keys.APIKeyCreate) { r.Environment = keys.Live },
		"permissions": func(r *keys.APIKeyCreate) { r.Permissions = []string{"identity:read", "transactions:read"} },
		"allowed_ips": func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"192.0.2.0/25"} },
		"rate_limit":  func(r *keys.APIKeyCreate) { r.RateLimit = &eleven },
		"expires_at":  func(r *keys.APIKeyCreate) { r.ExpiresAt = &later },
	}
	i := 0
	for field, change := range changes {
		i++
		idem := keys.IdempotencyKey("fingerprint-" + field + "-0001")
		first, err := f.m.As(p).Create(ctx, base(), idem)
		if err != nil {
			t.Fatal(err)
		}
		again, err := f.m.As(p).Create(ctx, base(), idem)
		if err != nil || !again.Replayed || again.ID != first.ID {
			t.Fatalf("%s: the same request again: %v, replayed %v", field, err, again != nil && again.Replayed)
		}
		req := base()
		change(&req)
		if _, err := f.m.As(p).Create(ctx, req, idem); !errors.Is(err, keys.ErrIdempotencyConflict) {
			t.Errorf("the same idempotency key with %s changed: %v, want a conflict", field, err)
		}
	}
	if i != 6 {
		t.Fatal("not every field was tried")
	}

	shared := keys.IdempotencyKey("shared-across-endpoints")
	created, err := f.m.As(p).Create(ctx, base(), shared)
	if err != nil {
		t.Fatal(err)
	}
	rolled, err := f.m.As(p).Roll(ctx, created.ID, time.Hour, shared)
	if err != nil || rolled.Replayed || rolled.ID == created.ID {
		t.Fatalf("a roll with the idempotency key of a create: %v (replayed %v)", err, rolled != nil && rolled.Replayed)
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

type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, limit.Checks, time.Time) (limit.Status, bool, error) {
	return limit.Status{}, false, errors.New("limiter down")
}

// A key prefix is 1 to 16 lowercase letters and digits: each end of each
// range is accepted, and its neighbours outside are refused, as are 0 and
// 17 characters. A ValidationError's text names its parameter when it has
// one.
func TestKeyPrefixBoundaries(t *testing.T) {
	for _, p := range []string{"a", "z", "0", "9", "az09", strings.Repeat("k", 16)} {
		if _, err := keys.New(memstore.New(), keys.WithKeyPrefix(p)); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	for _, p := range []string{"", strings.Repeat("k", 17), "`", "{", "/", ":", "A", "Z", "a_b", "a-b"} {
		if _, err := keys.New(memstore.New(), keys.WithKeyPrefix(p)); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	withParam := &keys.ValidationError{Param: "name", Message: "too long"}
	without := &keys.ValidationError{Message: "too long"}
	if !strings.Contains(withParam.Error(), "name") || strings.Contains(without.Error(), "invalid :") || withParam.Error() == without.Error() {
		t.Fatalf("ValidationError texts: %q, %q", withParam.Error(), without.Error())
	}
}

// Instances sharing a pepper and no explicit idempotency secret derive the
// same secret from the pepper: one opens the results the other sealed, so
// a retry that lands on another instance is a replay. With no pepper each
// Manager's secret is its own, and the retry cannot be opened there.
func TestIdempotencySecretFromPepper(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	pepper := []byte("a pepper of at least thirty-two bytes, shared")
	newM := func(opts ...keys.Option) *keys.Manager {
		m, err := keys.New(store, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(ctx) })
		return m
	}
	p := keys.Principal{AccountID: "acct_pepper", Subject: "u", Permissions: keys.DefaultVocabulary()}
	req := keys.APIKeyCreate{Name: "retried", Environment: keys.Test}
	a, b := newM(keys.WithPepper(pepper)), newM(keys.WithPepper(pepper))
	first, err := a.As(p).Create(ctx, req, keys.IdempotencyKey("pepper-retry-0001"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.As(p).Create(ctx, req, keys.IdempotencyKey("pepper-retry-0001"))
	if err != nil || !again.Replayed || again.ID != first.ID || string(again.Key) != string(first.Key) {
		t.Fatalf("the retry on another instance with the same pepper: %v", err)
	}
	c, d := newM(), newM()
	if _, err := c.As(p).Create(ctx, req, keys.IdempotencyKey("no-pepper-0001")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.As(p).Create(ctx, req, keys.IdempotencyKey("no-pepper-0001")); err == nil {
		t.Fatal("without a pepper or a shared secret, another instance opened the sealed result")
	}
}

// A permission name is resource:action, each part of lowercase letters,
// digits, '_', '.' and '-': every end of every range passes, its
// neighbours outside do not, nor an empty part or a second colon.
func TestPermissionNameCharacters(t *testing.T) {
	vocab := func(p string) error {
		_, err := keys.New(memstore.New(), keys.WithVocabulary(p))
		return err
	}
	for _, p := range []string{"a:z", "z:a", "0:9", "9:0", "a_b:c.d", "a-b:c-d", "az09_.-:az09_.-"} {
		if err := vocab(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"`:a", "{:a", "/:a", "a:`", "a:{", "a:/", "A:a", "a:Z", ":a", "a:", "a", "a:b:c", "a :b", "a:b@"} {
		if err := vocab(p); err == nil {
			t.Errorf("%q accepted", p)
		}
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

// An unknown permission is echoed whole up to 64 bytes, and cut with an
// ellipsis beyond; WithMaxKeysPerAccount accepts 1.
func TestEchoedPermissionAt64Bytes(t *testing.T) {
	f := newFixture(t)
	for n, cut := range map[int]bool{64: false, 65: true} {
		p := "x:" + strings.Repeat("y", n-2)
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, AccountID: "acct_test", Permissions: []string{p}})
		var ve *keys.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("an unknown permission of %d bytes: %v", n, err)
		}
		if got := strings.Contains(ve.Message, "…"); got != cut || (!cut && !strings.Contains(ve.Message, p)) {
			t.Errorf("an unknown permission of %d bytes is echoed as %q", n, ve.Message)
		}
	}
	if _, err := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(1)); err != nil {
		t.Fatalf("WithMaxKeysPerAccount(1): %v", err)
	}
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

// The background flush logs a warning when a flush fails, and keeps the
// times for the next one; a flush that succeeds logs nothing.
func TestBackgroundFlushFailureIsLoggedAndRetried(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	store := &touchFails{Store: memstore.New()}
	m, err := keys.New(store, keys.WithLastUsedFlushInterval(5*time.Millisecond), keys.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "n", Environment: keys.Test, AccountID: "acct_flush"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "flushing last-used times failed") {
		if time.Now().After(deadline) {
			t.Fatal("a failing background flush was not logged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	store.healed.Store(true)
	for {
		if r, _ := store.Get(ctx, k.ID); r != nil && !r.LastUsed.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the time kept from the failed flush was never written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := strings.Count(logs.String(), "\n")
	time.Sleep(30 * time.Millisecond) // several successful flushes
	if after := strings.Count(logs.String(), "\n"); after != before {
		t.Fatalf("successful flushes logged: %s", logs.String())
	}
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

// A cursor is at most 200 characters: a well-formed one of exactly 200
// (a position with a long ID) is read, and one character more is refused.
func TestCursorLengthBoundary(t *testing.T) {
	f := newFixture(t)
	f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	var c200 string
	for idLen := 1; len(c200) < 200; idLen++ {
		c200 = base64.RawURLEncoding.EncodeToString([]byte("1700000000000000|key_" + strings.Repeat("z", idLen)))
	}
	if len(c200) != 200 {
		t.Fatalf("a cursor of %d characters", len(c200))
	}
	if _, err := f.m.List(context.Background(), keys.ListFilter{AccountID: "acct_test", Cursor: c200}); err != nil {
		t.Fatalf("a well-formed cursor of 200 characters: %v", err)
	}
	var ve *keys.ValidationError
	if _, err := f.m.List(context.Background(), keys.ListFilter{AccountID: "acct_test", Cursor: c200 + "A"}); !errors.As(err, &ve) || ve.Param != "cursor" {
		t.Fatalf("a cursor of 201 characters: %v", err)
	}
}
