package sqlitestore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/portalwalk"
	"github.com/txcloud/keys/webhook"
)

// An idempotent endpoint create and roll of its secret (the portal's
// forms send a key every time) store their entries, replay with the
// secret, and still replay after the file is opened again. The entry's foreign
// key to api_keys refused every such create before migration 6.
func TestWebhookCreateIdempotentAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	p := keys.Principal{AccountID: "acct_hooks", Subject: "key_admin", Permissions: []string{"developers:read", "developers:write"}}
	req := webhook.EndpointCreate{URL: "http://127.0.0.1:9/hook", Events: []string{"*"}}
	create := func() [2]*webhook.Endpoint {
		t.Helper()
		s := open(t, path)
		m, err := keys.New(s, keys.WithWebhooks(webhook.Config{AllowLoopback: true}), keys.WithPepper([]byte(strings.Repeat("p", 32))))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close(ctx); _ = s.Close(ctx) }()
		hooks := m.As(p).Webhooks()
		ep, err := hooks.Create(ctx, req, keys.IdempotencyKey("portal_hook_0001"))
		if err != nil {
			t.Fatal(err)
		}
		if list, err := hooks.List(ctx); err != nil || len(list.Data) != 1 {
			t.Fatalf("endpoints: %v, %v", list, err)
		}
		rolled, err := hooks.RollSecret(ctx, ep.ID, time.Hour, keys.IdempotencyKey("portal_roll_0001"))
		if err != nil {
			t.Fatal(err)
		}
		return [2]*webhook.Endpoint{ep, rolled}
	}
	first := create()
	again := create() // the file opened again: the entries are read back into the copy
	for i, what := range []string{"create", "roll"} {
		a, b := first[i], again[i]
		if a.Replayed || !b.Replayed || b.ID != a.ID || b.Secret != a.Secret || a.Secret == "" {
			t.Fatalf("%s: first %s (replayed %v), then %s (replayed %v, same secret %v)", what, a.ID, a.Replayed, b.ID, b.Replayed, b.Secret == a.Secret)
		}
	}
	if first[1].Secret == first[0].Secret {
		t.Fatal("the roll kept the secret")
	}
}

// The portal's pages and forms, on a file (portalwalk: what memstore's
// run of it could not show).
func TestPortalWalk(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "keys.db"))
	m, err := keys.New(s, keys.WithWebhooks(webhook.Config{AllowLoopback: true, AllowHTTP: true}), keys.WithPepper([]byte(strings.Repeat("p", 32))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	portalwalk.Walk(t, m)
}
