package sqlitestore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/webhook"
)

// An idempotent endpoint create (the portal's form sends one every time)
// stores the endpoint with its entry, replays it with its secret, and
// still replays it after the file is opened again. The entry's foreign
// key to api_keys refused every such create before migration 6.
func TestWebhookCreateIdempotentAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	p := keys.Principal{AccountID: "acct_hooks", Subject: "key_admin", Permissions: []string{"developers:read", "developers:write"}}
	req := webhook.EndpointCreate{URL: "http://127.0.0.1:9/hook", Events: []string{"*"}}
	create := func() *webhook.Endpoint {
		t.Helper()
		s := open(t, path)
		m, err := keys.New(s, keys.WithWebhooks(webhook.Config{AllowLoopback: true}), keys.WithPepper([]byte(strings.Repeat("p", 32))))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = m.Close(ctx); _ = s.Close(ctx) }()
		ep, err := m.As(p).Webhooks().Create(ctx, req, keys.IdempotencyKey("portal_hook_0001"))
		if err != nil {
			t.Fatal(err)
		}
		if list, err := m.As(p).Webhooks().List(ctx); err != nil || len(list.Data) != 1 {
			t.Fatalf("endpoints: %v, %v", list, err)
		}
		return ep
	}
	first := create()
	again := create() // the file opened again: the entry is read back into the copy
	if first.Replayed || !again.Replayed || again.ID != first.ID || again.Secret != first.Secret || first.Secret == "" {
		t.Fatalf("first %s (replayed %v), then %s (replayed %v, same secret %v)", first.ID, first.Replayed, again.ID, again.Replayed, again.Secret == first.Secret)
	}
}
