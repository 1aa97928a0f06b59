package keys_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/memstore"
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
	if raceEnabled || mutation {
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
			d := [32]byte(sha256.Sum256([]byte(k)))
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
	d := [32]byte{}
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

// A leaked key is revoked (or disabled) and reported with where it was
// found; a revoked one is found but not acted on; an unknown one is not
// found and changes nothing.
func TestReportLeak(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	a := f.create(t, keys.APIKeyCreate{Name: "a", Environment: keys.Live})
	b := f.create(t, keys.APIKeyCreate{Name: "b", Environment: keys.Live})
	leak := event.Leak{URL: "https://github.com/o/r/blob/x/f.txt", Source: "content", Type: "txcloud_api_key"}
	ev.reset()
	rep, err := f.m.ReportLeak(ctx, string(a.Key), leak, keys.LeakRevoke)
	if err != nil || !rep.Found || !rep.Acted || rep.KeyID != a.ID {
		t.Fatalf("ReportLeak = %+v, %v", rep, err)
	}
	if _, err := f.m.Verify(ctx, string(a.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("a leaked key still works: %v", err)
	}
	types := ev.types()
	if len(types) != 2 || types[0] != event.KeyRevoked || types[1] != event.KeyLeaked || ev.all[1].Leak.URL != leak.URL {
		t.Fatalf("events %v", types)
	}
	if strings.Contains(fmt.Sprintf("%+v", ev.all), string(a.Key)) {
		t.Fatal("an event holds the key")
	}
	rep, err = f.m.ReportLeak(ctx, string(a.Key), leak, keys.LeakRevoke)
	if err != nil || !rep.Found || rep.Acted {
		t.Fatalf("reporting a revoked key again = %+v, %v", rep, err)
	}
	rep, err = f.m.ReportLeak(ctx, string(b.Key), leak, keys.LeakDisable)
	if err != nil || !rep.Acted {
		t.Fatalf("disable = %+v, %v", rep, err)
	}
	if _, err := f.m.Verify(ctx, string(b.Key)); !errors.Is(err, keys.ErrKeyDisabled) {
		t.Fatalf("a leaked key, disabled: %v", err)
	}
	ev.reset()
	for _, k := range []string{changeLast(string(b.Key)), "txc_live_" + strings.Repeat("A", 38), "anything"} {
		if rep, err := f.m.ReportLeak(ctx, k, leak, keys.LeakRevoke); err != nil || rep.Found {
			t.Fatalf("ReportLeak(unknown) = %+v, %v", rep, err)
		}
	}
	if len(ev.all) != 0 {
		t.Fatalf("unknown keys emitted %v", ev.types())
	}
}
