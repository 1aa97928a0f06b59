package portal_test

import (
	"context"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/portalwalk"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/webhook"
)

// The walk pgstore's and sqlitestore's tests take too, on memstore.
func TestWalk(t *testing.T) {
	m, err := keys.New(memstore.New(), keys.WithWebhooks(webhook.Config{AllowLoopback: true, AllowHTTP: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	portalwalk.Walk(t, m)
}
