package event_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/memstore"
)

// Hear every change to a key: here, print it; a host forwards it to its
// audit log or to the key's holder. Data is the key as the API shows it,
// never its secret.
func Example() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New(), keys.WithEventHook(func(_ context.Context, e event.Event) {
		var k keys.APIKey
		_ = json.Unmarshal(e.Data, &k)
		actor := e.Actor
		if actor == "" {
			actor = "the host"
		}
		fmt.Println(e.Type, e.AccountID, k.Name, k.Enabled, "by", actor)
	}))
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1"})
	caller := keys.Principal{AccountID: "acct_1", Subject: "user_42", Permissions: []string{"developers:write"}}
	_, _ = m.As(caller).Update(ctx, k.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)})
	_, _ = m.Revoke(ctx, k.ID)
	// Output:
	// key.created acct_1 svc true by the host
	// key.disabled acct_1 svc false by user_42
	// key.revoked acct_1 svc false by the host
}
