package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/store"
)

// events records what the event hook saw.
type events struct {
	mu  sync.Mutex
	all []event.Event
}

func (e *events) hook(_ context.Context, ev event.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) types() []event.Type {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []event.Type
	for _, ev := range e.all {
		out = append(out, ev.Type)
	}
	return out
}

func (e *events) reset() {
	e.mu.Lock()
	e.all = nil
	e.mu.Unlock()
}

// Owner and metadata go in on create and come back, as stored, from
// Verify (no second lookup), get, list, PATCH and roll; list filters by
// owner.
func TestOwnerAndMetadataEverywhere(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.create(t, keys.APIKeyCreate{Name: "a", Environment: keys.Test, OwnerID: "user-7",
		Metadata: json.RawMessage("{ \"tier\" : \"gold\",\n \"limits\": [1, 2.5e3] }")})
	const compact = `{"tier":"gold","limits":[1,2.5e3]}`
	if c.OwnerID != "user-7" || string(c.Metadata) != compact || !c.Enabled {
		t.Fatalf("created: owner %q, metadata %s, enabled %t", c.OwnerID, c.Metadata, c.Enabled)
	}
	v, err := f.m.Verify(ctx, string(c.Key))
	if err != nil || v.OwnerID != "user-7" || string(v.Metadata) != compact {
		t.Fatalf("Verify: %v, %+v", err, v)
	}
	other := f.create(t, keys.APIKeyCreate{Name: "b", Environment: keys.Test, OwnerID: "user-8"})
	l, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_test", OwnerID: "user-7"})
	if err != nil || len(l.Data) != 1 || l.Data[0].ID != c.ID || string(l.Data[0].Metadata) != compact {
		t.Fatalf("List by owner: %v %+v", err, l)
	}
	k, err := f.m.Update(ctx, other.ID, keys.APIKeyUpdate{OwnerID: keys.Clear[string](), Metadata: keys.Change(json.RawMessage(`{"x":1}`))})
	if err != nil || k.OwnerID != "" || string(k.Metadata) != `{"x":1}` {
		t.Fatalf("Update: %v %+v", err, k)
	}
	k, err = f.m.Update(ctx, other.ID, keys.APIKeyUpdate{Metadata: keys.Clear[json.RawMessage]()})
	if err != nil || k.Metadata != nil {
		t.Fatalf("Update clearing metadata: %v %s", err, k.Metadata)
	}
	rolled, err := f.m.Roll(ctx, c.ID, 0)
	if err != nil || rolled.OwnerID != "user-7" || string(rolled.Metadata) != compact {
		t.Fatalf("Roll keeps owner and metadata: %v %+v", err, rolled.APIKey)
	}
	if _, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_test", OwnerID: "has space"}); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("List with a bad owner_id: %v", err)
	}
}

// Metadata's rules, each at its edge.
func TestMetadataRules(t *testing.T) {
	f := newFixture(t)
	nest := func(depth int) string {
		return strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat("}", depth-1)
	}
	// 4096 bytes once compacted: {"b":"xxx…"} is 8 bytes around the x's.
	exact := `{"b":"` + strings.Repeat("x", 4096-8) + `"}`
	for _, c := range []struct {
		name, meta string
		ok         bool
	}{
		{"empty object", `{}`, true},
		{"8 deep", nest(8), true},
		{"9 deep", nest(9), false},
		{"9 deep through an array", `{"a":[` + nest(8) + `]}`, false},
		{"4096 bytes", exact, true},
		{"4097 bytes", `{"b":"` + strings.Repeat("x", 4096-7) + `"}`, false},
		{"4096 compacted from more", "{ \"b\" :\n \"" + strings.Repeat("x", 4096-8) + "\" }", true},
		{"a name twice", `{"a":1,"a":2}`, false},
		{"a name twice, nested", `{"a":{"b":1,"b":1}}`, false},
		{"the same name in two objects", `{"a":{"b":1},"c":{"b":1}}`, true},
		{"an array", `[1]`, false},
		{"a string", `"x"`, false},
		{"null", `null`, false},
		{"two objects", `{}{}`, false},
		{"truncated", `{"a":`, false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"a value that is a name-like string", `{"a":"a","b":"a"}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "m", Environment: keys.Test, AccountID: "acct_m", Metadata: json.RawMessage(c.meta)})
			var ve *keys.ValidationError
			switch {
			case c.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !c.ok && (!errors.As(err, &ve) || ve.Param != "metadata"):
				t.Fatalf("got %v, want a validation error on metadata", err)
			}
		})
	}
}

func TestOwnerIDRules(t *testing.T) {
	f := newFixture(t)
	for id, ok := range map[string]bool{
		strings.Repeat("~", 128): true, strings.Repeat("~", 129): false, "!": true,
		"a b": false, "a\tb": false, "é": false, "a\x7f": false, "user@example.com|42": true,
	} {
		_, err := f.m.Create(context.Background(), keys.APIKeyCreate{Name: "o", Environment: keys.Test, AccountID: "acct_o", OwnerID: id})
		if (err == nil) != ok {
			t.Errorf("owner_id %q: %v, want ok=%t", id, err, ok)
		}
	}
}

// A disabled key is refused with its own error until enabled; an update
// that flips the state emits key.disabled or key.enabled, and one that
// changes nothing emits nothing.
func TestDisableIsReversible(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	c := f.create(t, keys.APIKeyCreate{Name: "d", Environment: keys.Test})
	ev.reset()
	k, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)})
	if err != nil || k.Enabled {
		t.Fatalf("disable: %v %+v", err, k)
	}
	if _, err := f.m.Verify(ctx, string(c.Key)); !errors.Is(err, keys.ErrKeyDisabled) {
		t.Fatalf("Verify of a disabled key: %v", err)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(true), Name: keys.Change("back")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Verify(ctx, string(c.Key)); err != nil {
		t.Fatalf("Verify after enabling: %v", err)
	}
	got := ev.types()
	want := []event.Type{event.KeyDisabled, event.KeyUpdated, event.KeyEnabled}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("events %v, want %v", got, want)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Clear[bool]()}); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("clearing enabled: %v", err)
	}
	// Revoked beats disabled, and a revoked key cannot be re-enabled.
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Revoke(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Verify(ctx, string(c.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("a revoked, disabled key: %v", err)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(true)}); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("enabling a revoked key: %v", err)
	}
	// Created disabled; rolled disabled.
	d := f.create(t, keys.APIKeyCreate{Name: "off", Environment: keys.Test, Disabled: true})
	if _, err := f.m.Verify(ctx, string(d.Key)); !errors.Is(err, keys.ErrKeyDisabled) {
		t.Fatalf("created disabled: %v", err)
	}
	r, err := f.m.Roll(ctx, d.ID, 0)
	if err != nil || r.Enabled {
		t.Fatalf("a disabled key's successor is disabled too: %v %+v", err, r)
	}
}

// The maximum lifetime at its edges, on an injected clock.
func TestMaxKeyLifetime(t *testing.T) {
	const life = 366 * 24 * time.Hour
	f := newFixture(t, keys.WithMaxKeyLifetime(life))
	ctx := context.Background()
	now := f.clock.Now()
	c := f.create(t, keys.APIKeyCreate{Name: "default", Environment: keys.Test})
	if c.ExpiresAt == nil || !c.ExpiresAt.Equal(now.Add(life)) {
		t.Fatalf("no expires_at: got %v, want creation + %v", c.ExpiresAt, life)
	}
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	if _, err := f.m.Create(ctx, keys.APIKeyCreate{Name: "edge", Environment: keys.Test, AccountID: "a", ExpiresAt: at(life)}); err != nil {
		t.Fatalf("exactly the lifetime: %v", err)
	}
	var ve *keys.ValidationError
	if _, err := f.m.Create(ctx, keys.APIKeyCreate{Name: "over", Environment: keys.Test, AccountID: "a", ExpiresAt: at(life + time.Microsecond)}); !errors.As(err, &ve) || ve.Param != "expires_at" {
		t.Fatalf("a microsecond over: %v", err)
	}
	f.clock.Advance(24 * time.Hour) // the bound counts from creation, not from the update
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{ExpiresAt: keys.Change(now.Add(life))}); err != nil {
		t.Fatalf("update to creation + lifetime: %v", err)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{ExpiresAt: keys.Change(now.Add(life + time.Hour))}); !errors.As(err, &ve) || ve.Param != "expires_at" {
		t.Fatalf("update past creation + lifetime: %v", err)
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{ExpiresAt: keys.Clear[time.Time]()}); !errors.As(err, &ve) || ve.Param != "expires_at" {
		t.Fatalf("update to never: %v", err)
	}
	// A roll's successor keeps its predecessor's expiry (within the
	// bound from now).
	r, err := f.m.Roll(ctx, c.ID, 0)
	if err != nil || !r.ExpiresAt.Equal(now.Add(life)) {
		t.Fatalf("roll: %v, expires %v", err, r.ExpiresAt)
	}
	// A key from before the policy (no expiry) rolls into one that has it.
	free := newFixture(t)
	old := free.create(t, keys.APIKeyCreate{Name: "old", Environment: keys.Test})
	strict, err := keys.New(free.store, keys.WithClock(free.clock.Now), keys.WithMaxKeyLifetime(life))
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close(ctx)
	r, err = strict.Roll(ctx, old.ID, 0)
	if err != nil || r.ExpiresAt == nil || !r.ExpiresAt.Equal(free.clock.Now().Add(life)) {
		t.Fatalf("rolling a key without expiry under the policy: %v %v", err, r)
	}
	for _, d := range []time.Duration{-time.Hour, time.Second} {
		if _, err := keys.New(free.store, keys.WithMaxKeyLifetime(d)); err == nil {
			t.Fatalf("WithMaxKeyLifetime(%v) accepted", d)
		}
	}
}

// Keys expiring in a window: the list filter (one account) and
// NotifyExpiring (every account) with its window's edges.
func TestExpiring(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	now := f.clock.Now()
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	in1 := f.create(t, keys.APIKeyCreate{Name: "soon", Environment: keys.Test, ExpiresAt: at(time.Hour)})
	f.create(t, keys.APIKeyCreate{Name: "later", Environment: keys.Test, ExpiresAt: at(48 * time.Hour)})
	f.create(t, keys.APIKeyCreate{Name: "never", Environment: keys.Test})
	in2 := f.create(t, keys.APIKeyCreate{Name: "other account", Environment: keys.Test, AccountID: "acct_2", ExpiresAt: at(24*time.Hour - time.Microsecond)})
	edge := f.create(t, keys.APIKeyCreate{Name: "at the end", Environment: keys.Test, AccountID: "acct_2", ExpiresAt: at(24 * time.Hour)})
	revoked := f.create(t, keys.APIKeyCreate{Name: "revoked", Environment: keys.Test, ExpiresAt: at(time.Hour)})
	if _, err := f.m.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	l, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_test", ExpiringWithin: 24 * time.Hour, Revoked: new(bool)})
	if err != nil || len(l.Data) != 1 || l.Data[0].ID != in1.ID {
		t.Fatalf("expiring within a day in acct_test: %v %+v", err, l)
	}
	if _, err := f.m.List(ctx, keys.ListFilter{AccountID: "acct_test", ExpiringWithin: (366 * 24 * time.Hour) + time.Second}); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("a window over the maximum: %v", err)
	}
	ev.reset()
	n, err := f.m.NotifyExpiring(ctx, now, now.Add(24*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("NotifyExpiring = %d, %v; want 2", n, err)
	}
	seen := map[string]bool{}
	for _, e := range ev.all {
		if e.Type != event.KeyExpiring {
			t.Fatalf("event %s", e.Type)
		}
		seen[e.KeyID] = true
	}
	if !seen[in1.ID] || !seen[in2.ID] || seen[edge.ID] || seen[revoked.ID] {
		t.Fatalf("announced %v", seen)
	}
	if _, err := f.m.NotifyExpiring(ctx, now, now); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("an empty window: %v", err)
	}
}

// Who disabled a key decides who may enable it: the account its own
// disable, the host only its own (non-payment, an incident, a leak).
func TestDisabledByDecidesWhoEnables(t *testing.T) {
	var ev events
	f := newFixture(t, keys.WithEventHook(ev.hook))
	ctx := context.Background()
	owner := keys.Principal{AccountID: "acct_test", Subject: "user", Permissions: keys.DefaultVocabulary()}
	as := f.m.As(owner)
	c := f.create(t, keys.APIKeyCreate{Name: "k", Environment: keys.Test})
	state := func() store.DisabledBy {
		t.Helper()
		r, err := f.store.Get(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return r.Disabled
	}
	// The account disables and enables its own key.
	if _, err := as.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil || state() != store.DisabledByAccount {
		t.Fatalf("the account's disable: %v, %d", err, state())
	}
	if _, err := as.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(true)}); err != nil || state() != store.NotDisabled {
		t.Fatalf("the account's enable: %v, %d", err, state())
	}
	// The host disables: the account cannot enable, and nothing changes.
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil || state() != store.DisabledByHost {
		t.Fatalf("the host's disable: %v, %d", err, state())
	}
	var pe *keys.PermissionError
	if _, err := as.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(true), Name: keys.Change("sneaky")}); !errors.As(err, &pe) || pe.Param != "enabled" {
		t.Fatalf("the account enabling the host's disable: %v", err)
	}
	if k, _ := f.m.Get(ctx, c.ID); k.Name != "k" || state() != store.DisabledByHost {
		t.Fatal("a refused update changed the key")
	}
	// The account's own disable of a host-disabled key keeps the host's hold.
	if _, err := as.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil || state() != store.DisabledByHost {
		t.Fatalf("the account disabling again: %v, %d", err, state())
	}
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(true)}); err != nil || state() != store.NotDisabled {
		t.Fatalf("the host's enable: %v, %d", err, state())
	}
	// The host disabling a key the account disabled takes the hold over,
	// with no event: the key was disabled and still is.
	if _, err := as.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil {
		t.Fatal(err)
	}
	ev.reset()
	if _, err := f.m.Update(ctx, c.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil || state() != store.DisabledByHost || len(ev.all) != 0 {
		t.Fatalf("the host taking over the hold: %v, %d, events %v", err, state(), ev.types())
	}
	// A leak report disabling a key is the host's: the account cannot
	// switch a leaked key back on.
	l := f.create(t, keys.APIKeyCreate{Name: "leaky", Environment: keys.Test})
	if _, err := as.Update(ctx, l.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil {
		t.Fatal(err)
	}
	if rep, err := f.m.ReportLeak(ctx, string(l.Key), event.Leak{}, keys.LeakDisable); err != nil || !rep.Acted {
		t.Fatalf("ReportLeak of an account-disabled key: %+v, %v", rep, err)
	}
	if _, err := as.Update(ctx, l.ID, keys.APIKeyUpdate{Enabled: keys.Change(true)}); !errors.As(err, &pe) {
		t.Fatalf("the account enabling a leaked key: %v", err)
	}
	// Created disabled: by the host through the Manager, by the account
	// through Scoped.
	hc := f.create(t, keys.APIKeyCreate{Name: "h", Environment: keys.Test, Disabled: true})
	ac, err := as.Create(ctx, keys.APIKeyCreate{Name: "a", Environment: keys.Test, Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.Update(ctx, hc.ID, keys.APIKeyUpdate{Enabled: keys.Change(true)}); !errors.As(err, &pe) {
		t.Fatalf("enabling a key the host created disabled: %v", err)
	}
	if _, err := as.Update(ctx, ac.ID, keys.APIKeyUpdate{Enabled: keys.Change(true)}); err != nil {
		t.Fatalf("enabling a key the account created disabled: %v", err)
	}
}
