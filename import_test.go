package keys_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// Keys issued elsewhere, imported as plain text and as digests, verify
// afterwards; importing them again creates nothing twice; the format's own
// malformed keys are still refused without a lookup.
func TestImportForeignAndOwnKeys(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithForeignPrefixes("sk_live_", "legacy-"), keys.WithEventHook(ev.hook))
	ctx := context.Background()
	own := f.create(t, keys.APIKeyCreate{Name: "own", Environment: keys.Live})
	// Our own key's record goes away, then comes back by import (a move
	// between deployments that share a pepper).
	other := newFixture(t)
	moved := other.create(t, keys.APIKeyCreate{Name: "moved", Environment: keys.Test})
	n := 100_000 // the size; .ci/run runs it without -race
	if buildtag.Race || buildtag.Mutation {
		n = 10_000
	}
	var in []keys.ImportKey
	var plain []string
	for i := range n {
		k := fmt.Sprintf("sk_live_%032d", i)
		plain = append(plain, k)
		ik := keys.ImportKey{AccountID: "acct_imp", Name: "imported", Environment: keys.Live, OwnerID: "cust", Permissions: []string{"identity:read"}}
		if i%2 == 0 {
			ik.Key = keys.Secret(k)
		} else {
			d := store.Digest(sha256.Sum256([]byte(k)))
			ik.Digest, ik.Prefix = &d, "sk_live_0000"
		}
		in = append(in, ik)
	}
	in = append(in, keys.ImportKey{Key: moved.Key, AccountID: "acct_imp", Name: "moved", Environment: keys.Test})
	ev.reset()
	res, err := f.m.Import(ctx, in)
	if err != nil || res.Created != n+1 || res.Existing != 0 {
		t.Fatalf("Import = %+v, %v", res, err)
	}
	res, err = f.m.Import(ctx, in)
	if err != nil || res.Created != 0 || res.Existing != n+1 {
		t.Fatalf("Import again = %+v, %v; want nothing created", res, err)
	}
	if len(ev.all) != 0 {
		t.Fatalf("Import emitted %d events", len(ev.all))
	}
	for _, i := range []int{0, 1, 2, 999, n/2 + 1, n - 1} {
		v, err := f.m.Verify(ctx, plain[i], keys.Require("identity:read"))
		if err != nil || v.AccountID != "acct_imp" || v.OwnerID != "cust" || v.KeyID == "" {
			t.Fatalf("Verify of imported key %d: %v %+v", i, err, v)
		}
	}
	if _, err := f.m.Verify(ctx, string(moved.Key)); err != nil {
		t.Fatalf("Verify of an imported key of our own format: %v", err)
	}
	if _, err := f.m.Verify(ctx, string(own.Key)); err != nil {
		t.Fatal(err)
	}
	// Refused before any lookup: a malformed key of ours, a foreign prefix
	// with too short a secret, an unknown prefix.
	before := f.store.lookups.Load()
	for _, k := range []string{changeLast(string(own.Key)), "sk_live_short", "pk_live_" + strings.Repeat("a", 40), "sk_live_" + strings.Repeat("a", 300), "sk_live_" + strings.Repeat("a", 20) + " "} {
		if _, err := f.m.Verify(ctx, k); !errors.Is(err, keys.ErrInvalidKey) {
			t.Fatalf("Verify(%.20q…) = %v", k, err)
		}
	}
	if got := f.store.lookups.Load() - before; got != 0 {
		t.Fatalf("%d lookups for keys refused by their form", got)
	}
	if _, err := f.m.Verify(ctx, "sk_live_"+strings.Repeat("z", 32)); !errors.Is(err, keys.ErrInvalidKey) {
		t.Fatalf("an unknown foreign key: %v", err)
	}
}

// Import checks every entry before it stores any, and names the entry.
func TestImportValidatesFirst(t *testing.T) {
	f := newFixture(t, keys.WithForeignPrefixes("sk_"))
	ctx := context.Background()
	good := keys.ImportKey{Key: keys.Secret("sk_" + strings.Repeat("a", 20)), AccountID: "acct", Name: "ok", Environment: keys.Test}
	d := store.Digest{}
	for name, bad := range map[string]keys.ImportKey{
		"[1].name":        {Key: keys.Secret("sk_" + strings.Repeat("b", 20)), AccountID: "acct", Environment: keys.Test},
		"[1].key":         {Key: "nope_" + keys.Secret(strings.Repeat("b", 20)), AccountID: "acct", Name: "x", Environment: keys.Test},
		"[1].prefix":      {Digest: &d, Prefix: "xx_1234", AccountID: "acct", Name: "x", Environment: keys.Test},
		"[1].account_id":  {Key: keys.Secret("sk_" + strings.Repeat("b", 20)), Name: "x", Environment: keys.Test},
		"[1].metadata":    {Key: keys.Secret("sk_" + strings.Repeat("b", 20)), AccountID: "acct", Name: "x", Environment: keys.Test, Metadata: []byte("[]")},
		"[1].environment": {Key: keys.Secret("sk_" + strings.Repeat("b", 20)), AccountID: "acct", Name: "x"},
	} {
		_, err := f.m.Import(ctx, []keys.ImportKey{good, bad})
		var ve *keys.ValidationError
		if !errors.As(err, &ve) || ve.Param != name {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if l, _ := f.m.List(ctx, keys.ListFilter{AccountID: "acct"}); len(l.Data) != 0 {
		t.Fatalf("a refused import stored %d keys", len(l.Data))
	}
	for _, p := range [][]string{{"txc_x"}, {"tx"}, {"a"}, {"bad prefix"}} {
		if _, err := keys.New(memstore.New(), keys.WithForeignPrefixes(p...)); err == nil {
			t.Fatalf("WithForeignPrefixes(%q) accepted", p)
		}
	}
}

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
	d := store.Digest(sha256.Sum256([]byte("sk_" + strings.Repeat("d", 20))))
	for prefix, ok := range map[string]bool{"sk_12345678": true, "sk_123456789": false, "sk_1234567~": true, "sk_1234 ": false, "sk_": true} {
		dd := store.Digest(sha256.Sum256([]byte("digest for " + prefix))) // one of its own for each
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
