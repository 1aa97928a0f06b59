package keys_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

func TestCreateStoresDigestNotKey(t *testing.T) {
	f := newFixture(t)
	c := f.create(t, keys.APIKeyCreate{Name: "  ci deploy  ", Environment: keys.Live, AccountID: "acct_1",
		Permissions: []string{"identity:read", "fraud:write", "identity:read"}, AllowedIPs: []string{"10.1.2.3/8", "::ffff:192.0.2.7", "10.9.9.9/8", "2001:db8::1", "192.0.2.7"},
		RateLimit: intp(60), ExpiresAt: ptr(f.clock.Now().Add(time.Hour))})

	if !strings.HasPrefix(string(c.Key), "txc_live_") || !strings.HasPrefix(string(c.Key), c.Prefix) || len(c.Prefix) != 13 {
		t.Fatalf("prefix %q does not begin the key", c.Prefix)
	}
	if !strings.HasPrefix(c.ID, "key_") {
		t.Fatalf("id %q", c.ID)
	}
	want := keys.APIKey{
		ID: c.ID, Name: "ci deploy", Prefix: c.Prefix, Environment: keys.Live,
		Permissions: []string{"identity:read", "fraud:write"},
		AllowedIPs:  []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::1"},
		RateLimit:   intp(60), ExpiresAt: ptr(f.clock.Now().Add(time.Hour)), CreatedAt: f.clock.Now(), Enabled: true,
	}
	if !reflect.DeepEqual(c.APIKey, want) {
		t.Fatalf("created\n got %+v\nwant %+v", c.APIKey, want)
	}

	rec, err := f.store.Get(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.AccountID != "acct_1" || rec.Digest == (store.Digest{}) {
		t.Fatalf("stored record lacks account or digest")
	}
	// The record holds no trace of the key beyond its public prefix.
	if s := fmt.Sprintf("%#v %v %s", rec, rec, rec.Name+rec.Prefix+rec.ID); strings.Contains(s, string(c.Key)[9:]) {
		t.Fatal("store holds the key")
	}
	if _, err := f.m.Verify(context.Background(), string(c.Key), keys.FromIP(mustAddr("10.9.9.9"))); err != nil {
		t.Fatalf("the created key does not verify: %v", err)
	}
}

func TestCreateValidation(t *testing.T) {
	long := strings.Repeat("é", 201)
	ips101 := make([]string, 101)
	for i := range ips101 {
		ips101[i] = fmt.Sprintf("10.0.%d.%d", i/250, i%250)
	}
	future := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	past := time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	base := func(mod func(*keys.APIKeyCreate)) keys.APIKeyCreate {
		r := keys.APIKeyCreate{Name: "n", Environment: keys.Test}
		mod(&r)
		return r
	}
	tests := []struct {
		name  string
		req   keys.APIKeyCreate
		param string
		code  string
	}{
		{"name missing", base(func(r *keys.APIKeyCreate) { r.Name = "" }), "name", "missing_parameter"},
		{"name blank", base(func(r *keys.APIKeyCreate) { r.Name = " \t " }), "name", "missing_parameter"},
		{"name too long", base(func(r *keys.APIKeyCreate) { r.Name = long }), "name", "invalid_parameter"},
		{"name NUL", base(func(r *keys.APIKeyCreate) { r.Name = "a\x00b" }), "name", "invalid_parameter"},
		{"name newline inside", base(func(r *keys.APIKeyCreate) { r.Name = "a\nb" }), "name", "invalid_parameter"},
		{"name RTL override", base(func(r *keys.APIKeyCreate) { r.Name = "abc\u202Etxt.exe" }), "name", "invalid_parameter"},
		{"name invalid UTF-8", base(func(r *keys.APIKeyCreate) { r.Name = "a\xffb" }), "name", "invalid_parameter"},
		{"environment missing", base(func(r *keys.APIKeyCreate) { r.Environment = "" }), "environment", "missing_parameter"},
		{"environment other", base(func(r *keys.APIKeyCreate) { r.Environment = "prod" }), "environment", "invalid_parameter"},
		{"environment case", base(func(r *keys.APIKeyCreate) { r.Environment = "LIVE" }), "environment", "invalid_parameter"},
		{"permission unknown", base(func(r *keys.APIKeyCreate) { r.Permissions = []string{"identity:read", "identity:delete"} }), "permissions[1]", "invalid_parameter"},
		{"permission wildcard", base(func(r *keys.APIKeyCreate) { r.Permissions = []string{"*"} }), "permissions[0]", "invalid_parameter"},
		{"permission spaces", base(func(r *keys.APIKeyCreate) { r.Permissions = []string{" identity:read"} }), "permissions[0]", "invalid_parameter"},
		{"permission empty", base(func(r *keys.APIKeyCreate) { r.Permissions = []string{""} }), "permissions[0]", "invalid_parameter"},
		{"ip garbage", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"10.0.0.1", "banana"} }), "allowed_ips[1]", "invalid_parameter"},
		{"ip zone", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"fe80::1%eth0"} }), "allowed_ips[0]", "invalid_parameter"},
		{"ip /0", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"0.0.0.0/0"} }), "allowed_ips[0]", "invalid_parameter"},
		{"ip v6 /0", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"::/0"} }), "allowed_ips[0]", "invalid_parameter"},
		{"ip /129", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"2001:db8::/129"} }), "allowed_ips[0]", "invalid_parameter"},
		{"ip /33", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"10.0.0.0/33"} }), "allowed_ips[0]", "invalid_parameter"},
		{"ip empty", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{""} }), "allowed_ips[0]", "invalid_parameter"},
		{"ip leading zeros", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = []string{"010.0.0.1"} }), "allowed_ips[0]", "invalid_parameter"},
		{"too many ips", base(func(r *keys.APIKeyCreate) { r.AllowedIPs = ips101 }), "allowed_ips", "invalid_parameter"},
		{"rate limit zero", base(func(r *keys.APIKeyCreate) { r.RateLimit = intp(0) }), "rate_limit", "invalid_parameter"},
		{"rate limit negative", base(func(r *keys.APIKeyCreate) { r.RateLimit = intp(-5) }), "rate_limit", "invalid_parameter"},
		{"rate limit huge", base(func(r *keys.APIKeyCreate) { r.RateLimit = intp(10_000_000 + 1) }), "rate_limit", "invalid_parameter"},
		{"expires now", base(func(r *keys.APIKeyCreate) { r.ExpiresAt = ptr(newClock().Now()) }), "expires_at", "invalid_parameter"},
		{"expires past", base(func(r *keys.APIKeyCreate) { r.ExpiresAt = &past }), "expires_at", "invalid_parameter"},
		{"first problem wins", base(func(r *keys.APIKeyCreate) { r.Name = ""; r.ExpiresAt = &future; r.RateLimit = intp(0) }), "name", "missing_parameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.m.Create(context.Background(), tt.req)
			var ve *keys.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, keys.ErrValidation) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if ve.Param != tt.param || ve.Code != tt.code {
				t.Fatalf("param %q code %q, want %q %q (%s)", ve.Param, ve.Code, tt.param, tt.code, ve.Message)
			}
			if n := f.store.creates.Load(); n != 0 {
				t.Fatalf("a rejected request reached the store %d times", n)
			}
		})
	}
}

func TestCreateDefaults(t *testing.T) {
	f := newFixture(t, keys.WithDefaultRateLimit(100))
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	if c.RateLimit == nil || *c.RateLimit != 100 {
		t.Fatalf("default rate limit not applied: %v", c.RateLimit)
	}
	if c.Permissions == nil || len(c.Permissions) != 0 || c.AllowedIPs == nil || len(c.AllowedIPs) != 0 {
		t.Fatal("omitted permissions/allowed_ips must be empty arrays (least privilege, any address)")
	}
	if c.ExpiresAt != nil || c.LastUsed != nil {
		t.Fatal("unset times must be omitted")
	}
	c2 := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test, RateLimit: intp(5)})
	if *c2.RateLimit != 5 {
		t.Fatal("explicit rate limit overridden by the default")
	}
}

func TestOptionsValidated(t *testing.T) {
	for name, o := range map[string]keys.Option{
		"short pepper":     keys.WithPepper([]byte("short")),
		"short idem":       keys.WithIdempotencySecret([]byte("short")),
		"bad vocabulary":   keys.WithVocabulary("read"),
		"bad vocabulary 2": keys.WithVocabulary("a:b:c"),
		"no resource":      keys.WithVocabulary(":read"),
		"no action":        keys.WithVocabulary("billing:"),
		"upper case":       keys.WithVocabulary("Billing:read"),
		"zero max ips":     keys.WithMaxAllowedIPs(0),
		"zero rate":        keys.WithDefaultRateLimit(0),
		"nil clock":        keys.WithClock(nil),
		"nil limiter":      keys.WithLimiter(nil),
		"zero flush":       keys.WithLastUsedFlushInterval(0),
		"bad prefix":       keys.WithKeyPrefix("TX"),
	} {
		t.Run(name, func(t *testing.T) {
			if m, err := keys.New(memstore.New(), o); err == nil {
				m.Close(context.Background())
				t.Fatal("accepted")
			}
		})
	}
	if _, err := keys.New(nil); err == nil {
		t.Fatal("nil store accepted")
	}
}

func TestCustomVocabularyAndMaxIPs(t *testing.T) {
	f := newFixture(t, keys.WithVocabulary("billing:read", "billing:write"), keys.WithMaxAllowedIPs(1))
	f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test, Permissions: []string{"billing:read"}, AllowedIPs: []string{"10.0.0.1"}})
	if _, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, Permissions: []string{"identity:read"}}); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("a permission outside the vocabulary: %v", err)
	}
	if _, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, AllowedIPs: []string{"10.0.0.1", "10.0.0.2"}}); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("two ips over a max of one: %v", err)
	}
}

func TestPepperChangesDigest(t *testing.T) {
	pepper := []byte(strings.Repeat("k", 32))
	store := memstore.New()
	m1, _ := keys.New(store, keys.WithPepper(pepper))
	defer m1.Close(context.Background())
	c, err := m1.Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, AccountID: "acct_test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.Verify(context.Background(), string(c.Key)); err != nil {
		t.Fatalf("peppered key does not verify: %v", err)
	}
	m2, _ := keys.New(store) // same store, no pepper
	defer m2.Close(context.Background())
	if _, err := m2.Verify(context.Background(), string(c.Key)); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("a manager without the pepper verified the key: %v", err)
	}
}

func TestScopedCreateNoEscalation(t *testing.T) {
	caller := keys.Principal{AccountID: "acct_a", Subject: "key_caller", Environment: keys.Test, Permissions: []string{"developers:write", "identity:read"}}
	tests := []struct {
		name  string
		req   keys.APIKeyCreate
		param string
	}{
		{"permission not held", keys.APIKeyCreate{Name: "n", Environment: keys.Test, Permissions: []string{"identity:read", "fraud:write"}}, "permissions[1]"},
		{"test creates live", keys.APIKeyCreate{Name: "n", Environment: keys.Live}, "environment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.m.As(caller).Create(context.Background(), tt.req)
			var pe *keys.PermissionError
			if !errors.As(err, &pe) || !errors.Is(err, keys.ErrPermissionDenied) || pe.Param != tt.param {
				t.Fatalf("err = %v, want a PermissionError on %s", err, tt.param)
			}
			if f.store.creates.Load() != 0 {
				t.Fatal("stored")
			}
		})
	}
	// A principal names no other account than its own: refused, not
	// silently overwritten.
	f := newFixture(t)
	var pe *keys.PermissionError
	if _, err := f.m.As(caller).Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, Permissions: []string{"identity:read"}, AccountID: "acct_other"}); !errors.As(err, &pe) || pe.Param != "account_id" {
		t.Fatalf("another account: %v", err)
	}
	c, err := f.m.As(caller).Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, Permissions: []string{"identity:read"}, AccountID: "acct_a"})
	if err != nil {
		t.Fatal(err)
	}
	if rec, _ := f.store.Get(context.Background(), c.ID); rec.AccountID != "acct_a" {
		t.Fatalf("key belongs to %q, want the caller's account", rec.AccountID)
	}
	if f.store.creates.Load() != 1 {
		t.Fatal("the refused create stored a key")
	}
	// A zero principal may do nothing: trust is never the default.
	for _, p := range []keys.Principal{{}, {Subject: "key_x", Permissions: keys.DefaultVocabulary()}} {
		if _, err := f.m.As(p).Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test, AccountID: "acct_a"}); !errors.As(err, &pe) {
			t.Fatalf("a principal with no account created a key: %v", err)
		}
		if _, err := f.m.As(p).Get(context.Background(), c.ID); !errors.As(err, &pe) {
			t.Fatalf("a principal with no account read a key: %v", err)
		}
	}
	// The trusted Create must name the account.
	var ve *keys.ValidationError
	if _, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test}); !errors.As(err, &ve) || ve.Param != "account_id" {
		t.Fatalf("trusted create without an account: %v", err)
	}
	dash := keys.Principal{AccountID: "acct_a", Subject: "user_1", Permissions: keys.DefaultVocabulary()}
	if _, err := f.m.As(dash).Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Live}); err != nil {
		t.Fatalf("a principal of no fixed environment may create live keys: %v", err)
	}
}

func TestCreateIdempotency(t *testing.T) {
	p := keys.Principal{AccountID: "acct_a", Subject: "key_1", Permissions: keys.DefaultVocabulary()}
	req := keys.APIKeyCreate{Name: "n", Environment: keys.Test, Permissions: []string{"identity:read"}}
	ctx := context.Background()

	t.Run("same request replays", func(t *testing.T) {
		f := newFixture(t)
		first, err := f.m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-0001"))
		if err != nil || first.Replayed {
			t.Fatal(err)
		}
		// Same request in another spelling: whitespace and a duplicate permission.
		again := req
		again.Name = " n "
		again.Permissions = []string{"identity:read", "identity:read"}
		second, err := f.m.As(p).Create(ctx, again, keys.IdempotencyKey("retry-key-0001"))
		if err != nil {
			t.Fatal(err)
		}
		if !second.Replayed || second.ID != first.ID || second.Key != first.Key || !reflect.DeepEqual(second.APIKey, first.APIKey) {
			t.Fatalf("replay differs: %+v vs %+v", second.APIKey, first.APIKey)
		}
		if f.store.creates.Load() != 1 {
			t.Fatalf("%d creates reached the store", f.store.creates.Load())
		}
	})
	t.Run("different request conflicts", func(t *testing.T) {
		f := newFixture(t)
		if _, err := f.m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-0002")); err != nil {
			t.Fatal(err)
		}
		other := req
		other.Name = "other"
		if _, err := f.m.As(p).Create(ctx, other, keys.IdempotencyKey("retry-key-0002")); !errors.Is(err, keys.ErrIdempotencyConflict) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("scoped to the caller", func(t *testing.T) {
		f := newFixture(t)
		a, _ := f.m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-0003"))
		q := p
		q.Subject = "key_2"
		b, err := f.m.As(q).Create(ctx, req, keys.IdempotencyKey("retry-key-0003"))
		if err != nil || b.ID == a.ID || b.Replayed {
			t.Fatalf("another caller's idempotency key replayed: %v", err)
		}
	})
	t.Run("expires after 24h", func(t *testing.T) {
		f := newFixture(t)
		a, _ := f.m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-0004"))
		f.clock.Advance((24 * time.Hour) - time.Second)
		if b, _ := f.m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-0004")); b.ID != a.ID {
			t.Fatal("not replayed within the TTL")
		}
		f.clock.Advance(time.Second)
		if b, err := f.m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-0004")); err != nil || b.ID == a.ID {
			t.Fatalf("replayed after the TTL: %v", err)
		}
	})
	t.Run("malformed idempotency key", func(t *testing.T) {
		f := newFixture(t)
		for _, k := range []string{"short", strings.Repeat("a", 256), "has space 123", "semi;colon12", "ünïcode-1234"} {
			_, err := f.m.As(p).Create(ctx, req, keys.IdempotencyKey(k))
			var ve *keys.ValidationError
			if !errors.As(err, &ve) || ve.Param != "Idempotency-Key" {
				t.Fatalf("%q: err = %v", k, err)
			}
		}
		for _, k := range []string{strings.Repeat("a", 10), strings.Repeat("Z_-9", 63) + "abc"} {
			if _, err := f.m.As(p).Create(ctx, req, keys.IdempotencyKey(k)); err != nil {
				t.Fatalf("%d-char key refused: %v", len(k), err)
			}
		}
		if f.store.creates.Load() != 2 {
			t.Fatal("malformed idempotency keys reached the store")
		}
	})
	t.Run("concurrent retries create one key", func(t *testing.T) {
		f := newFixture(t)
		var wg sync.WaitGroup
		ids := make([]string, 16)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := f.m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-race"))
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = c.ID
			}()
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("concurrent retries got different keys: %v", ids)
			}
		}
	})
	t.Run("stored entry is sealed", func(t *testing.T) {
		spy := &spyStore{Store: memstore.New()}
		var sealed []byte
		spy.onCreate = func(*store.Record) {}
		m, _ := keys.New(&idemSpy{spyStore: spy, seen: &sealed})
		defer m.Close(ctx)
		c, err := m.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-seal"))
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) == 0 || strings.Contains(string(sealed), string(c.Key)) || strings.Contains(string(sealed), c.ID) {
			t.Fatal("the idempotency entry holds the response in the clear")
		}
		// Another manager (another secret) on the same store cannot open it.
		m2, _ := keys.New(spy)
		defer m2.Close(ctx)
		if _, err := m2.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-seal")); err == nil || errors.Is(err, keys.ErrIdempotencyConflict) {
			t.Fatalf("opened with another secret: %v", err)
		}
		// With a shared secret, another instance replays it.
		secret := []byte(strings.Repeat("s", 32))
		shared := memstore.New()
		a, _ := keys.New(shared, keys.WithIdempotencySecret(secret))
		b, _ := keys.New(shared, keys.WithIdempotencySecret(secret))
		defer a.Close(ctx)
		defer b.Close(ctx)
		first, _ := a.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-shared"))
		second, err := b.As(p).Create(ctx, req, keys.IdempotencyKey("retry-key-shared"))
		if err != nil || second.ID != first.ID || second.Key != first.Key {
			t.Fatalf("instances sharing a secret do not replay: %v", err)
		}
	})
}

type idemSpy struct {
	*spyStore
	seen *[]byte
}

func (s *idemSpy) Write(ctx context.Context, w store.Write) error {
	if w.Idempotency != nil {
		*s.seen = append([]byte(nil), w.Idempotency.Sealed...)
	}
	return s.spyStore.Write(ctx, w)
}

func TestClosedManager(t *testing.T) {
	f := newFixture(t)
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Test})
	if err := f.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Close(context.Background()); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "n", Environment: keys.Test}); !errors.Is(err, keys.ErrClosed) {
		t.Fatalf("Create after Close: %v", err)
	}
	if _, err := f.m.Verify(context.Background(), string(c.Key)); !errors.Is(err, keys.ErrClosed) {
		t.Fatalf("Verify after Close: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// An account holds at most WithMaxKeysPerAccount active keys: a create
// beyond it is refused and stores nothing; a revocation makes room; a roll
// at the limit passes (rotation is never refused); other accounts are not
// affected.
func TestMaxKeysPerAccount(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, keys.WithMaxKeysPerAccount(3))
	var made []*keys.APIKeyCreated
	for range 3 {
		made = append(made, f.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: "acct_full"}))
	}
	if _, err := f.m.Create(ctx, keys.APIKeyCreate{Name: "one too many", Environment: keys.Test, AccountID: "acct_full"}); !errors.Is(err, keys.ErrKeyLimit) {
		t.Fatalf("a 4th key: %v, want ErrKeyLimit", err)
	}
	p := keys.Principal{AccountID: "acct_full", Subject: "user", Permissions: keys.DefaultVocabulary()}
	if _, err := f.m.As(p).Create(ctx, keys.APIKeyCreate{Name: "one too many", Environment: keys.Test}, keys.IdempotencyKey("limit-check-0001")); !errors.Is(err, keys.ErrKeyLimit) {
		t.Fatalf("a 4th key through a principal: %v, want ErrKeyLimit", err)
	}
	if l, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_full"}); err != nil || len(l.Data) != 3 {
		t.Fatalf("after refused creates the account lists %d keys (%v), want 3", len(l.Data), err)
	}
	if _, err := f.m.Roll(ctx, made[0].ID, time.Hour); err != nil {
		t.Fatalf("a roll at the limit: %v", err)
	}
	f.create(t, keys.APIKeyCreate{Name: "elsewhere", Environment: keys.Test, AccountID: "acct_other"})
	if _, err := f.m.Revoke(ctx, made[1].ID); err != nil {
		t.Fatal(err)
	}
	f.create(t, keys.APIKeyCreate{Name: "in the room a revocation made", Environment: keys.Test, AccountID: "acct_full"})
	for _, n := range []int{0, -1} {
		if _, err := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(n)); err == nil {
			t.Fatalf("WithMaxKeysPerAccount(%d) accepted", n)
		}
	}
}

// A loop of create and revoke (the way past the cap on active keys) keeps
// at most WithMaxKeysPerAccount revoked records, the newest, beside the
// active ones: what one account stores is bounded, and another account's
// history is untouched.
func TestRevokedHistoryIsBounded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, keys.WithMaxKeysPerAccount(5))
	kept := f.create(t, keys.APIKeyCreate{Name: "long-lived", Environment: keys.Test, AccountID: "acct_loop"})
	old := f.create(t, keys.APIKeyCreate{Name: "other history", Environment: keys.Test, AccountID: "acct_quiet"})
	if _, err := f.m.Revoke(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	var last []string
	for i := range 200 {
		f.clock.Advance(time.Millisecond) // so creation order is List's order
		k := f.create(t, keys.APIKeyCreate{Name: "churn", Environment: keys.Test, AccountID: "acct_loop"})
		if _, err := f.m.Revoke(ctx, k.ID); err != nil {
			t.Fatalf("revoke %d: %v", i, err)
		}
		last = append(last, k.ID)
	}
	revoked := true
	l, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_loop", Revoked: &revoked, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	// The last create pruned to 5; the revocation after it made 6.
	if len(l.Data) != 6 {
		t.Fatalf("after 200 creates and revocations, %d revoked records kept, want 6", len(l.Data))
	}
	for i, k := range l.Data {
		if want := last[len(last)-1-i]; k.ID != want {
			t.Fatalf("revoked record %d is %s, want the newest ones (%s)", i, k.ID, want)
		}
	}
	if _, err := f.m.Get(ctx, last[0]); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("the oldest revoked record: %v, want ErrNotFound", err)
	}
	if _, err := f.m.Verify(ctx, string(kept.Key)); err != nil {
		t.Fatalf("the account's active key: %v", err)
	}
	if _, err := f.m.Get(ctx, old.ID); err != nil {
		t.Fatalf("another account's revoked record: %v", err)
	}
	for _, n := range []int{0, -1} {
		if _, err := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(n)); err == nil {
			t.Fatalf("WithMaxKeysPerAccount(%d) accepted", n)
		}
	}
}
