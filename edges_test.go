package keys_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// Each bound of the foreign-key rules at its edge, one unit either side.
func TestForeignKeyEdges(t *testing.T) {
	for p, ok := range map[string]bool{"ab": true, "a": false, strings.Repeat("p", 32): true, strings.Repeat("p", 33): false, "a~": false, "a_-": true} {
		if _, err := keys.New(memstore.New(), keys.WithForeignPrefixes(p)); (err == nil) != ok {
			t.Errorf("WithForeignPrefixes(%q): %v, want ok=%t", p, err, ok)
		}
	}
	for n, ok := range map[int]bool{0: false, 1: true, 8: true, 9: false} {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = "p" + strings.Repeat("x", i+1)
		}
		if _, err := keys.New(memstore.New(), keys.WithForeignPrefixes(ps...)); (err == nil) != ok {
			t.Errorf("WithForeignPrefixes with %d prefixes: %v, want ok=%t", n, err, ok)
		}
	}
	for d, ok := range map[time.Duration]bool{0: true, time.Minute: true, time.Minute - 1: false, -1: false, 1: false} {
		if _, err := keys.New(memstore.New(), keys.WithMaxKeyLifetime(d)); (err == nil) != ok {
			t.Errorf("WithMaxKeyLifetime(%v): %v, want ok=%t", d, err, ok)
		}
	}
	f := newFixture(t, keys.WithForeignPrefixes("sk_"))
	ctx := context.Background()
	for key, ok := range map[string]bool{
		"sk_" + strings.Repeat("a", 16):          true,  // the shortest secret
		"sk_" + strings.Repeat("a", 15):          false, // one short
		"sk_" + strings.Repeat("b", 256-3):       true,  // 256 in all
		"sk_" + strings.Repeat("b", 257-3):       false, // 257
		"sk_" + strings.Repeat("c", 15) + "~":    true,  // the last printable character
		"sk_" + strings.Repeat("c", 15) + "!":    true,  // the first
		"sk_" + strings.Repeat("c", 15) + " ":    false,
		"sk_" + strings.Repeat("c", 15) + "\x7f": false,
	} {
		_, err := f.m.Import(ctx, []keys.ImportKey{{Key: keys.Secret(key), AccountID: "acct", Name: "edge", Environment: keys.Test}})
		if (err == nil) != ok {
			t.Fatalf("Import(%d characters ending %q): %v, want ok=%t", len(key), key[len(key)-1:], err, ok)
		}
		if ok {
			if _, err := f.m.Verify(ctx, key); err != nil {
				t.Fatalf("Verify of an imported key of %d characters: %v", len(key), err)
			}
		}
	}
	d := [32]byte(sha256.Sum256([]byte("sk_" + strings.Repeat("d", 20))))
	for prefix, ok := range map[string]bool{"sk_12345678": true, "sk_123456789": false, "sk_1234567~": true, "sk_1234 ": false, "sk_": true} {
		dd := [32]byte(sha256.Sum256([]byte("digest for " + prefix))) // one of its own for each
		res, err := f.m.Import(ctx, []keys.ImportKey{{Digest: &dd, Prefix: prefix, AccountID: "acct", Name: "edge", Environment: keys.Test}})
		if (err == nil) != ok || ok && res.Created != 1 {
			t.Fatalf("a digest import with prefix %q: %+v, %v, want ok=%t", prefix, res, err, ok)
		}
	}
	var ve *keys.ValidationError
	_, err := f.m.Import(ctx, []keys.ImportKey{{Key: keys.Secret("sk_" + strings.Repeat("e", 20)), Digest: &d, Prefix: "sk_", AccountID: "acct", Name: "both", Environment: keys.Test}})
	if !errors.As(err, &ve) || ve.Param != "[0].key" {
		t.Fatalf("a key and a digest both: %v", err)
	}
}

// Metadata as sent may be 64 KiB (white space included) if it compacts to
// 4 KiB; a byte more is refused unread.
func TestMetadataInputEdge(t *testing.T) {
	f := newFixture(t)
	for n, ok := range map[int]bool{64 << 10: true, 64<<10 + 1: false} {
		raw := "{" + strings.Repeat(" ", n-2) + "}"
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "m", Environment: keys.Test, AccountID: "a", Metadata: json.RawMessage(raw)})
		if (err == nil) != ok {
			t.Fatalf("metadata of %d bytes as sent: %v, want ok=%t", n, err, ok)
		}
	}
}

// NotifyExpiring pages through a window of more keys than one page.
func TestNotifyExpiringPages(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	exp := f.clock.Now().Add(time.Hour)
	for i := range 250 {
		f.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test, AccountID: []string{"a", "b", "c"}[i%3], ExpiresAt: &exp})
		f.clock.Advance(time.Millisecond)
	}
	ev.reset()
	n, err := f.m.NotifyExpiring(ctx, exp, exp.Add(time.Microsecond))
	if err != nil || n != 250 {
		t.Fatalf("NotifyExpiring = %d, %v; want 250", n, err)
	}
	seen := map[string]bool{}
	for _, e := range ev.all {
		seen[e.KeyID] = true
	}
	if len(seen) != 250 {
		t.Fatalf("%d distinct keys announced of 250", len(seen))
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
