package keys_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// Presenting what the store keeps, in any encoding, is not presenting the
// key.
func TestDigestIsNotAKey(t *testing.T) {
	f := newFixture(t)
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Live})
	d := sha256.Sum256([]byte(string(c.Key)))
	body := strings.NewReplacer("+", "A", "/", "B", "=", "C", "-", "D", "_", "E").Replace(base64.RawURLEncoding.EncodeToString(d[:]))
	for name, presented := range map[string]string{
		"hex":                       hex.EncodeToString(d[:]),
		"base64":                    base64.StdEncoding.EncodeToString(d[:]),
		"raw":                       string(d[:]),
		"prefixed hex":              "txc_live_" + hex.EncodeToString(d[:]),
		"shaped like a key, summed": keys.WithValidChecksum("txc_live_" + body[:32] + "000000"),
	} {
		if _, err := f.m.Verify(context.Background(), presented); !errors.Is(err, keys.ErrInvalidKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := f.m.Verify(context.Background(), string(c.Key)); err != nil {
		t.Fatal("the key itself stopped working")
	}
}

// No error says anything about the presented key, malformed or not.
func TestErrorsNeverEchoTheKey(t *testing.T) {
	f := newFixture(t)
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Live, AllowedIPs: []string{"10.0.0.0/8"}, RateLimit: intp(1)})
	k := string(c.Key)
	for _, presented := range []string{k, k + " ", "txc_live_" + strings.Repeat("Q", 38), k[:30], "Bearer " + k, strings.Repeat("z", 5000)} {
		for _, opts := range [][]keys.VerifyOption{nil, {keys.Require("kyb:write")}, {keys.FromIP(mustAddr("192.0.2.1"))}, {keys.FromIP(mustAddr("10.0.0.1"))}} {
			_, err := f.m.Verify(context.Background(), presented, opts...)
			if err != nil && (strings.Contains(err.Error(), presented) || strings.Contains(err.Error(), k[9:30])) {
				t.Fatalf("error %q echoes the key", err)
			}
		}
	}
}

// An import entry prints without its key or its digest, through fmt and
// log/slog (text and JSON): a host logging what it imports leaks neither.
func TestImportKeyPrintsRedacted(t *testing.T) {
	key := "sk_live_" + strings.Repeat("s", 24)
	d := store.Digest(sha256.Sum256([]byte(key)))
	ik := keys.ImportKey{Key: keys.Secret(key), Digest: &d, Prefix: "sk_live_", AccountID: "acct"}
	var asJSON, asText strings.Builder
	slog.New(slog.NewJSONHandler(&asJSON, nil)).Info("importing", "entry", ik, "digest", *ik.Digest)
	slog.New(slog.NewTextHandler(&asText, nil)).Info("importing", "entry", ik, "digest", ik.Digest)
	hexDigest, b64Digest := hex.EncodeToString(d[:]), base64.StdEncoding.EncodeToString(d[:])
	for how, out := range map[string]string{"%v": fmt.Sprintf("%v", ik), "%+v": fmt.Sprintf("%+v", ik), "%x": fmt.Sprintf("%x", *ik.Digest),
		"slog JSON": asJSON.String(), "slog text": asText.String()} {
		if strings.Contains(out, key) || strings.Contains(out, hexDigest) || strings.Contains(out, b64Digest) || strings.Contains(out, fmt.Sprint(d[:4])[1:9]) {
			t.Errorf("%s shows the key or its digest: %s", how, out)
		}
	}
}

// medianVerify times rounds of n verifications of each key in turn,
// interleaving the keys so drift in machine speed hits them alike, and
// returns each key's median time per verification.
func medianVerify(m *keys.Manager, presented []string, rounds, n int) []time.Duration {
	ctx := context.Background()
	samples := make([][]time.Duration, len(presented))
	for range rounds {
		for i, k := range presented {
			start := time.Now()
			for range n {
				_, _ = m.Verify(ctx, k)
			}
			samples[i] = append(samples[i], time.Since(start)/time.Duration(n))
		}
	}
	out := make([]time.Duration, len(presented))
	for i, s := range samples {
		slices.Sort(s)
		out[i] = s[len(s)/2]
	}
	return out
}

// A lookup by digest costs the same however many keys are stored: no scan.
func TestUnknownKeyCostIndependentOfStoreSize(t *testing.T) {
	if testing.Short() || buildtag.Mutation {
		t.Skip("builds a store of a million keys; run without -short")
	}
	fill := func(n int) *keys.Manager {
		s := memstore.New()
		for range n {
			if err := s.Write(context.Background(), store.Write{Insert: randomRecord(t)}); err != nil {
				t.Fatal(err)
			}
		}
		m, err := keys.New(s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		return m
	}
	small, large := fill(1_000), fill(1_000_000)
	elsewhere := newFixture(t) // unknown keys: real keys of another Manager
	var unknown []string
	for range 64 {
		unknown = append(unknown, string(elsewhere.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Live}).Key))
	}
	var ts, tl []time.Duration
	for range 9 {
		for _, k := range unknown {
			r := medianVerify(small, []string{k}, 1, 50)
			ts = append(ts, r[0])
			r = medianVerify(large, []string{k}, 1, 50)
			tl = append(tl, r[0])
		}
	}
	slices.Sort(ts)
	slices.Sort(tl)
	ms, ml := ts[len(ts)/2], tl[len(tl)/2]
	ratio := float64(ml) / float64(ms)
	t.Logf("unknown key: %v at 1,000 keys, %v at 1,000,000 (%.2fx)", ms, ml, ratio)
	// A scan would be ~1000x; a hash table at a million keys pays only
	// cache misses.
	if ratio > 2.5 {
		t.Fatalf("an unknown key costs %.2fx more at a million keys", ratio)
	}
}

// An unknown well-formed key and a real key with a wrong secret part take
// the same path (parse, one digest, one lookup that misses), so their times
// are indistinguishable. The lookup is by the digest of what was
// presented: how close the presented key is to a real one does not change
// which table slots the lookup touches. Single keys do differ a little (a
// digest's probe in the table may be one slot or a few, at random), so the
// test compares the two classes: near misses of 128 different real keys
// against 128 unknown keys, interleaved pair by pair, median against median.
func TestTimingUnknownVersusWrongSecret(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Unknown keys: real keys of another Manager, never stored here.
	elsewhere := newFixture(t)
	const n = 128
	var nearMiss, unknown []string
	for range n {
		real := []byte(string(f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Live}).Key))
		// Change the last random character, staying in the alphabet: all
		// but one character right.
		if i := len(real) - 7; real[i] == 'a' {
			real[i] = 'b'
		} else {
			real[i] = 'a'
		}
		nearMiss = append(nearMiss, keys.WithValidChecksum(string(real)))
		unknown = append(unknown, string(elsewhere.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Live}).Key))
	}
	for _, k := range append(slices.Clone(nearMiss), unknown...) {
		if _, err := f.m.Verify(ctx, k); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatal(err)
		}
	}
	timeOf := func(k string) time.Duration {
		start := time.Now()
		for range 20 {
			_, _ = f.m.Verify(ctx, k)
		}
		return time.Since(start) / 20
	}
	var tn, tu []time.Duration
	for round := range 15 {
		for i := range n {
			if (round+i)%2 == 0 {
				tn, tu = append(tn, timeOf(nearMiss[i])), append(tu, timeOf(unknown[i]))
			} else {
				tu, tn = append(tu, timeOf(unknown[i])), append(tn, timeOf(nearMiss[i]))
			}
		}
	}
	slices.Sort(tn)
	slices.Sort(tu)
	mn, mu := tn[len(tn)/2], tu[len(tu)/2]
	ratio := float64(mn) / float64(mu)
	t.Logf("near miss of a real key %v, unknown key %v (%.3fx, %d samples each)", mn, mu, ratio, len(tn))
	if ratio < 0.8 || ratio > 1.25 {
		t.Fatalf("a near miss of a real key takes %.3fx the time of an unknown key", ratio)
	}
}

type countingLimiter struct {
	limit.Limiter
	calls atomic.Int64
}

func (l *countingLimiter) Allow(ctx context.Context, checks limit.Checks, now time.Time) (limit.Status, bool, error) {
	l.calls.Add(1)
	return l.Limiter.Allow(ctx, checks, now)
}

// A flood of unknown keys touches nothing that valid keys share: not the
// rate limiter, not the last-used bookkeeping (memstore's lookups take no
// lock at all: memstore.TestLookupTakesNoLock).
func TestUnknownKeysTouchNoSharedState(t *testing.T) {
	lim := &countingLimiter{Limiter: limit.NewMemory()}
	f := newFixture(t, keys.WithLimiter(lim), keys.WithLastUsedFlushInterval(time.Hour))
	c := f.create(t, keys.APIKeyCreate{Name: "n", Environment: keys.Live, RateLimit: intp(1000)})
	for i := range 5000 {
		k := keys.WithValidChecksum("txc_live_" + strings.Repeat(string("0123456789"[i%10]), 32) + "000000")
		if _, err := f.m.Verify(context.Background(), k); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatal(err)
		}
	}
	if n := lim.calls.Load(); n != 0 {
		t.Fatalf("unknown keys reached the limiter %d times", n)
	}
	if err := f.m.Flush(context.Background()); err != nil || f.store.touches.Load() != 0 {
		t.Fatalf("unknown keys left last-used work: %d flushes", f.store.touches.Load())
	}
	if _, err := f.m.Verify(context.Background(), string(c.Key)); err != nil || lim.calls.Load() != 1 {
		t.Fatalf("the valid key: %v, %d limiter calls", err, lim.calls.Load())
	}
}

// randomRecord is a stored key's record with a random ID and digest (the
// core's tests do not import storetest: each mutant of gremlins' run would
// rebuild it and everything it imports).
func randomRecord(t testing.TB) *store.Record {
	var d store.Digest
	if _, err := rand.Read(d[:]); err != nil {
		t.Fatal(err)
	}
	return &store.Record{ID: "key_" + hex.EncodeToString(d[:8]), AccountID: "acct_big", Name: "k", Prefix: "txc_test_abcd", Environment: "test", Digest: d, CreatedAt: time.Now(), Version: 1}
}

func TestDigestIsComparedNotTrusted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	real := f.create(t, keys.APIKeyCreate{Name: "real", Environment: keys.Test})
	rec, err := f.store.Get(ctx, real.ID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.New(lyingStore{Store: f.store, rec: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	other := newFixture(t).create(t, keys.APIKeyCreate{Name: "other", Environment: keys.Test})
	if _, err := m.Verify(ctx, string(other.Key)); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("Verify trusted the store's record: %v", err)
	}
	rep, err := m.ReportLeak(ctx, string(other.Key), event.Leak{}, keys.LeakRevoke)
	if err != nil || rep.Found {
		t.Fatalf("ReportLeak trusted the store's record: %+v, %v", rep, err)
	}
	if _, err := m.Verify(ctx, string(real.Key)); err != nil {
		t.Fatalf("the real key: %v", err)
	}
}

// lyingStore answers every digest lookup with the same record, as a
// broken or hostile store might: the Manager compares digests itself.
type lyingStore struct {
	store.Store
	rec *store.Record
}

func (s lyingStore) LookupDigest(context.Context, store.Digest) (*store.Record, error) {
	return s.rec, nil
}
