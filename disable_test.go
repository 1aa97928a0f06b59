package keys_test

import (
	"context"
	"errors"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/store"
)

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
