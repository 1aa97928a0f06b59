package keys_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu       sync.Mutex
	outcomes []observe.Outcome
	timed    int
	took     []time.Duration
	ops      []string // "op:ok" or "op:error"
}

func (r *recorder) Verify(_ context.Context, o observe.Outcome, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		panic("a verification that took a negative time")
	}
	if took > 0 {
		r.timed++
		r.took = append(r.took, took)
	}
	r.outcomes = append(r.outcomes, o)
}

type opKey struct{}

func (r *recorder) Operation(ctx context.Context, op observe.Op) (context.Context, func(error)) {
	return context.WithValue(ctx, opKey{}, op), func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		res := "ok"
		if err != nil {
			res = "error"
		}
		r.ops = append(r.ops, string(op)+":"+res)
	}
}

// opStore checks that store calls run in the context Operation returned.
type opStore struct {
	store.Store
	bad chan string
}

func (s opStore) Write(ctx context.Context, w store.Write) error {
	if ctx.Value(opKey{}) == nil {
		s.bad <- "Write"
	}
	return s.Store.Write(ctx, w)
}

// Every outcome of Verify reaches the Observer with its label, and every
// lifecycle operation (and the last-used flush) is reported once with its
// result, its store calls running in the context the Observer returned.
func TestObserver(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	clk := newClock()
	store := opStore{Store: memstore.New(), bad: make(chan string, 100)}
	m, err := keys.New(store, keys.WithObserver(rec), keys.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	mk := func(req keys.APIKeyCreate) *keys.APIKeyCreated {
		t.Helper()
		req.Name, req.AccountID = "observed", "acct_obs"
		if req.Environment == "" {
			req.Environment = keys.Test
		}
		k, err := m.Create(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	one := 1
	exp := clk.Now().Add(time.Minute)
	good := mk(keys.APIKeyCreate{Permissions: []string{"identity:read"}})
	limited := mk(keys.APIKeyCreate{RateLimit: &one})
	fenced := mk(keys.APIKeyCreate{AllowedIPs: []string{"10.0.0.0/8"}})
	expiring := mk(keys.APIKeyCreate{ExpiresAt: &exp})
	revoked := mk(keys.APIKeyCreate{})
	if _, err := m.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		key  string
		opts []keys.VerifyOption
		want observe.Outcome
	}{
		{string(good.Key), nil, observe.Valid},
		{"txc_test_nonsense", nil, observe.Invalid},
		{string(revoked.Key), nil, observe.Revoked},
		{string(good.Key), []keys.VerifyOption{keys.InEnvironment(keys.Live)}, observe.WrongEnvironment},
		{string(fenced.Key), []keys.VerifyOption{keys.FromIP(netip.MustParseAddr("192.0.2.1"))}, observe.IPNotAllowed},
		{string(good.Key), []keys.VerifyOption{keys.Require("transactions:read")}, observe.Forbidden},
		{string(limited.Key), nil, observe.Valid},
		{string(limited.Key), nil, observe.RateLimited},
	}
	for _, c := range calls {
		_, _ = m.Verify(ctx, c.key, c.opts...)
	}
	clk.Advance(time.Minute)
	_, _ = m.Verify(ctx, string(expiring.Key))
	_, _ = m.Get(ctx, "key_missing")
	if _, err := m.List(ctx, keys.ListFilter{AccountID: "acct_obs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Update(ctx, good.ID, keys.APIKeyUpdate{Name: keys.Change("renamed")}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Roll(ctx, good.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Import(ctx, []keys.ImportKey{{Key: "not a key", AccountID: "acct_obs", Name: "x", Environment: keys.Test}}); err == nil {
		t.Fatal("Import of a non-key passed")
	}
	if _, err := m.NotifyExpiring(ctx, clk.Now(), clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReportLeak(ctx, "txc_test_nonsense", event.Leak{}, keys.LeakRevoke); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []observe.Outcome{}
	for _, c := range calls {
		want = append(want, c.want)
	}
	want = append(want, observe.Expired)
	if len(rec.outcomes) != len(want) {
		t.Fatalf("outcomes %v, want %v", rec.outcomes, want)
	}
	for i := range want {
		if rec.outcomes[i] != want[i] {
			t.Fatalf("outcome %d: %s, want %s", i, rec.outcomes[i], want[i])
		}
	}
	got := strings.Join(rec.ops, " ")
	wantOps := "create:ok create:ok create:ok create:ok create:ok revoke:ok get:error list:ok update:ok roll:ok flush_last_used:ok import:error notify_expiring:ok report_leak:ok"
	if got != wantOps {
		t.Fatalf("operations:\n got %s\nwant %s", got, wantOps)
	}
	select {
	case call := <-store.bad:
		t.Fatalf("a store %s ran outside the operation's context", call)
	default:
	}
	if _, err := keys.New(memstore.New(), keys.WithObserver(nil)); err == nil {
		t.Fatal("WithObserver(nil) accepted")
	}
}

// One verification in 16 is timed, at random: over 4,000 of them, between
// 150 and 400 carry a duration (the chance of falling outside is below
// one in a million), and every one is counted.
func TestObserverTimesASample(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	m, err := keys.New(memstore.New(), keys.WithObserver(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "timed", Environment: keys.Test, AccountID: "acct_obs"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the durations must not be the time since New
	for range 4000 {
		if _, err := m.Verify(ctx, string(k.Key)); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.outcomes) != 4000 || rec.timed < 150 || rec.timed > 400 {
		t.Fatalf("%d verifications reported, %d timed (want 4000, about 250)", len(rec.outcomes), rec.timed)
	}
	slices.Sort(rec.took)
	if median := rec.took[len(rec.took)/2]; median > time.Millisecond {
		t.Fatalf("the median timed verification took %v: the duration is not the verification's", median)
	}
}

// OutcomeOf covers every error Verify returns; an error it does not know
// is unavailable.
func TestOutcomeOf(t *testing.T) {
	for err, want := range map[error]observe.Outcome{
		nil:                      observe.Valid,
		keys.ErrInvalidKey:       observe.Invalid,
		keys.ErrUnavailable:      observe.Unavailable,
		errors.New("anything"):   observe.Unavailable,
		&keys.RateLimitError{}:   observe.RateLimited,
		keys.ErrPermissionDenied: observe.Forbidden,
		keys.ErrKeyExpired:       observe.Expired,
		keys.ErrKeyRevoked:       observe.Revoked,
		keys.ErrIPNotAllowed:     observe.IPNotAllowed,
		keys.ErrWrongEnvironment: observe.WrongEnvironment,
		keys.ErrKeyDisabled:      observe.Disabled,
		&keys.CreditsError{}:     observe.CreditsExhausted,
		fmt.Errorf("%w: looking up: %w", keys.ErrUnavailable, context.Canceled): observe.Canceled,
	} {
		if got := keys.OutcomeOf(err); got != want {
			t.Errorf("OutcomeOf(%v) = %s, want %s", err, got, want)
		}
	}
	names := map[string]bool{}
	for o := range observe.Outcome(observe.NumOutcomes) {
		names[o.String()] = true
	}
	if len(names) != 12 || !names["canceled"] || !names["credits_exhausted"] || !names["disabled"] || !names["valid"] || !names["rate_limited"] || names["unknown"] || observe.Outcome(observe.NumOutcomes).String() != "unknown" {
		t.Fatalf("outcome names: %v", names)
	}
}

// nop is the cheapest Observer there is, to measure the hook itself.
type nop struct{}

func (nop) Verify(context.Context, observe.Outcome, time.Duration) {}
func (nop) Operation(ctx context.Context, _ observe.Op) (context.Context, func(error)) {
	return ctx, func(error) {}
}

// BenchmarkVerifyObserved: Verify with an Observer that does nothing,
// beside Verify without one (BenchmarkVerify) in the same run: the cost
// of the hook (target: at most 30 ns, no allocation).
func BenchmarkVerifyObserved(b *testing.B) {
	m, ks := benchKeys(b, benchStoreSize, 0, keys.WithObserver(nop{}))
	key := ks[benchStoreSize/2]
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Verify(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
