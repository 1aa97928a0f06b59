package pgstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/portalwalk"
	"github.com/txcloud/keys/webhook"
)

// Many instances, one delivery: two Managers on one database, each
// creating keys, deliver every event exactly once between them (claims
// are leases no two instances hold at once), from whichever instance.
func TestDeliveriesAcrossInstances(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]int{}
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}))
	defer rv.Close()
	schema := freshSchema(t, newPool(t))
	cfg := webhook.Config{AllowLoopback: true, Poll: 5 * time.Millisecond, Timeout: 2 * time.Second, Schedule: []time.Duration{50 * time.Millisecond}}
	var ms []*keys.Manager
	for range 2 {
		m, err := keys.New(newStore(t, newPool(t), schema), keys.WithWebhooks(cfg), keys.WithPepper([]byte(strings.Repeat("p", 32))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
		ms = append(ms, m)
	}
	p := keys.Principal{AccountID: "acct_two", Subject: "key_admin", Permissions: []string{"developers:read", "developers:write"}}
	if _, err := ms[0].As(p).Webhooks().Create(ctx, webhook.EndpointCreate{URL: rv.URL, Events: []string{"key.created"}}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / 2 {
				if _, err := ms[i].As(p).Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Live}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // time for a second send, if one were coming
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d of %d events delivered", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Fatalf("%s delivered %d times", id, c)
		}
	}
}

// An idempotent endpoint create and roll of its secret (the portal's
// forms send a key every time) go in, and replay on another instance with
// the secret. The entry's
// foreign key to api_keys refused every such create before migration 14.
func TestWebhookCreateIdempotentAcrossInstances(t *testing.T) {
	ctx := context.Background()
	schema := freshSchema(t, newPool(t))
	p := keys.Principal{AccountID: "acct_hooks", Subject: "key_admin", Permissions: []string{"developers:read", "developers:write"}}
	req := webhook.EndpointCreate{URL: "http://127.0.0.1:9/hook", Events: []string{"*"}}
	var got [][2]*webhook.Endpoint
	for range 2 {
		m, err := keys.New(newStore(t, newPool(t), schema), keys.WithWebhooks(webhook.Config{AllowLoopback: true}), keys.WithPepper([]byte(strings.Repeat("p", 32))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close(context.Background()) })
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
		got = append(got, [2]*webhook.Endpoint{ep, rolled})
	}
	for i, what := range []string{"create", "roll"} {
		a, b := got[0][i], got[1][i]
		if a.Replayed || !b.Replayed || b.ID != a.ID || b.Secret != a.Secret || a.Secret == "" {
			t.Fatalf("%s: first %s (replayed %v), then %s (replayed %v, same secret %v)", what, a.ID, a.Replayed, b.ID, b.Replayed, b.Secret == a.Secret)
		}
	}
	if got[0][1].Secret == got[0][0].Secret {
		t.Fatal("the roll kept the secret")
	}
}

// The portal's pages and forms, on PostgreSQL (portalwalk: what memstore's
// run of it could not show).
func TestPortalWalk(t *testing.T) {
	m, err := keys.New(newStore(t, newPool(t), ""), keys.WithWebhooks(webhook.Config{AllowLoopback: true, AllowHTTP: true}), keys.WithPepper([]byte(strings.Repeat("p", 32))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	portalwalk.Walk(t, m)
}
