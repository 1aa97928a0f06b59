package keys_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

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
