package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/internal/demo"
	"github.com/txcloud/keys/memstore"
)

// soakDuration is KEYS_SOAK_SECONDS (CI sets it), 3 s by default.
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("KEYS_SOAK_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 600 {
			t.Fatalf("KEYS_SOAK_SECONDS=%q: want 1 to 600", s)
		}
		return time.Duration(n) * time.Second
	}
	return 3 * time.Second
}

// ledger is what the clients know about each key.
type ledgerKey struct {
	id, key     string
	rateLimit   int
	revokedAt   time.Time // when a revoke (or a roll with grace 0) returned; zero if never
	passed      int       // 200s
	lastSuccess time.Time // start of the last 200
}

type ledger struct {
	mu   sync.Mutex
	keys []*ledgerKey
	// violations found while running (a revoked key that passed).
	violations []string
}

func (l *ledger) add(k *ledgerKey) {
	l.mu.Lock()
	l.keys = append(l.keys, k)
	l.mu.Unlock()
}

func (l *ledger) pick(r *rand.Rand) *ledgerKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys[r.IntN(len(l.keys))]
}

// TestSoak drives the demo server over loopback with concurrent create,
// verify, update, revoke and roll for a fixed time (race detector on in CI),
// then checks the invariants: no key verified after its revocation
// returned; no rate limit exceeded; every key verifiable or revoked exactly
// as its history says; last_used, after Close, within a second of each
// key's last success; no 5xx at all.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test; run without -short")
	}
	d := soakDuration(t)
	ctx := context.Background()
	store := memstore.New()
	logger := slog.New(slog.DiscardHandler)
	m, err := keys.New(store, keys.WithLogger(logger), keys.WithLastUsedFlushInterval(100*time.Millisecond),
		keys.WithMaxKeysPerAccount(10_000_000)) // the soak creates keys as fast as it can, for as long as it is told
	if err != nil {
		t.Fatal(err)
	}
	admin, err := m.Create(ctx, keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: m.Vocabulary(), AccountID: "acct_soak"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(demo.LogRequests(logger, demo.NewRefusals(logger, 10*time.Second), demo.NewMux(m, logger, false, nil, httpadapter.WithManagementLimit(10_000_000))))
	defer srv.Close()
	client := srv.Client()

	var counts sync.Map // operation → *atomic.Int64
	count := func(op string) {
		c, _ := counts.LoadOrStore(op, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
	}
	var failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	do := func(method, path, key, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			fail("%s %s: %v", method, path, err)
			return 0, nil
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		if resp.StatusCode >= 500 {
			fail("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		count(method + " " + strconv.Itoa(resp.StatusCode))
		return resp.StatusCode, out
	}

	var l ledger
	create := func(r *rand.Rand) {
		limit := 0
		body := `{"name":"soak","environment":"test","permissions":["identity:read"]}`
		if r.IntN(2) == 0 {
			limit = 1 + r.IntN(20)
			body = `{"name":"soak","environment":"test","permissions":["identity:read"],"rate_limit":` + strconv.Itoa(limit) + `}`
		}
		if status, out := do("POST", "/v1/developers/keys", string(admin.Key), body); status == 201 {
			l.add(&ledgerKey{id: out["id"].(string), key: out["key"].(string), rateLimit: limit})
		}
	}
	for range 20 {
		create(rand.New(rand.NewPCG(1, 2)))
	}

	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	worker := func(seed uint64, op func(*rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, seed*7))
			for time.Now().Before(deadline) {
				op(r)
			}
		}()
	}
	verify := func(r *rand.Rand) {
		k := l.pick(r)
		began := time.Now()
		status, _ := do("GET", "/v1/ping", k.key, "")
		l.mu.Lock()
		defer l.mu.Unlock()
		if status == 200 {
			if !k.revokedAt.IsZero() && began.After(k.revokedAt) {
				l.violations = append(l.violations, k.id+" passed after its revocation returned")
			}
			k.passed++
			k.lastSuccess = began
		}
	}
	for i := range 4 {
		worker(uint64(10+i), verify)
	}
	worker(20, create)
	worker(21, func(r *rand.Rand) {
		do("PATCH", "/v1/developers/keys/"+l.pick(r).id, string(admin.Key), `{"name":"renamed `+strconv.Itoa(r.IntN(1000))+`"}`)
	})
	worker(22, func(r *rand.Rand) {
		time.Sleep(5 * time.Millisecond)
		k := l.pick(r)
		if status, _ := do("DELETE", "/v1/developers/keys/"+k.id, string(admin.Key), ""); status == 200 {
			l.mu.Lock()
			if k.revokedAt.IsZero() {
				k.revokedAt = time.Now()
			}
			l.mu.Unlock()
		}
	})
	worker(23, func(r *rand.Rand) {
		time.Sleep(5 * time.Millisecond)
		k := l.pick(r)
		status, out := do("POST", "/v1/developers/keys/"+k.id+"/roll", string(admin.Key), "")
		if status == 201 {
			l.mu.Lock()
			if k.revokedAt.IsZero() {
				k.revokedAt = time.Now() // grace 0: revoked when the roll returned
			}
			l.mu.Unlock()
			l.add(&ledgerKey{id: out["id"].(string), key: out["key"].(string), rateLimit: k.rateLimit})
		}
	})
	wg.Wait()
	elapsed := time.Since(start)
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.violations {
		t.Error(v)
	}
	revoked, passedTotal := 0, 0
	for _, k := range l.keys {
		passedTotal += k.passed
		if k.rateLimit > 0 {
			// GCRA: a burst of N, then N per minute.
			bound := k.rateLimit + int(elapsed.Seconds()*float64(k.rateLimit)/60) + 1
			if k.passed > bound {
				t.Errorf("%s (limit %d/min) passed %d requests in %v, over %d", k.id, k.rateLimit, k.passed, elapsed, bound)
			}
		}
		rec, err := store.Get(ctx, k.id)
		if err != nil {
			t.Fatalf("%s: %v", k.id, err)
		}
		if k.revokedAt.IsZero() != rec.RevokedAt.IsZero() {
			t.Errorf("%s: the clients saw revoked=%v, the store says revoked_at=%v", k.id, !k.revokedAt.IsZero(), rec.RevokedAt)
		}
		if !k.revokedAt.IsZero() {
			revoked++
		}
		if !k.lastSuccess.IsZero() && k.lastSuccess.Sub(rec.LastUsed) > time.Second {
			t.Errorf("%s: last_used %v is older than its last success %v by more than a second", k.id, rec.LastUsed, k.lastSuccess)
		}
	}
	// Every key verifies or is revoked, as its history says (a fresh
	// Manager, so no rate-limit state: the store alone decides).
	fresh, err := keys.New(store)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(ctx)
	for _, k := range l.keys {
		_, err := fresh.Verify(ctx, k.key)
		if k.revokedAt.IsZero() != (err == nil) || (err != nil && !errors.Is(err, keys.ErrKeyRevoked)) {
			t.Errorf("%s: revoked=%v but Verify says %v", k.id, !k.revokedAt.IsZero(), err)
		}
	}
	var summary []string
	total := int64(0)
	counts.Range(func(k, v any) bool {
		n := v.(*atomic.Int64).Load()
		total += n
		summary = append(summary, k.(string)+"="+strconv.FormatInt(n, 10))
		return true
	})
	t.Logf("soak %v: %d requests (%s); %d keys, %d revoked or rolled, %d successful verifications", elapsed.Round(time.Millisecond), total, strings.Join(summary, " "), len(l.keys), revoked, passedTotal)
	if total < 100 || revoked == 0 || passedTotal == 0 {
		t.Fatal("the soak did too little to prove anything")
	}
}
