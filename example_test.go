package keys_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

// Create a key, show it once, and verify it.
func ExampleManager_Create() {
	ctx := context.Background()
	m, err := keys.New(memstore.New())
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)

	created, err := m.Create(ctx, keys.APIKeyCreate{
		Name:        "billing service",
		Environment: keys.Live,
		Permissions: []string{"transactions:read"},
		AccountID:   "acct_123",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.HasPrefix(string(created.Key), "txc_live_"), len(string(created.Key)))
	fmt.Println(created.Key) // a Secret prints redacted
	fmt.Println(created.Permissions)

	v, err := m.Verify(ctx, string(created.Key), keys.Require("transactions:read"))
	fmt.Println(v.KeyID == created.ID, err)
	// Output:
	// true 47
	// [key redacted]
	// [transactions:read]
	// true <nil>
}

// Branch on why verification failed.
func ExampleManager_Verify() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	created, _ := m.Create(ctx, keys.APIKeyCreate{
		Name: "office only", Environment: keys.Test, AllowedIPs: []string{"203.0.113.0/24"}, AccountID: "acct_123",
	})

	for _, ip := range []string{"203.0.113.7", "198.51.100.1"} {
		_, err := m.Verify(ctx, string(created.Key), keys.FromIP(netip.MustParseAddr(ip)))
		switch {
		case err == nil:
			fmt.Println(ip, "ok")
		case errors.Is(err, keys.ErrIPNotAllowed):
			fmt.Println(ip, "refused: address not allowed")
		case errors.Is(err, keys.ErrInvalidKey):
			fmt.Println(ip, "refused: bad key")
		}
	}
	_, err := m.Verify(ctx, "txc_test_not-a-key")
	fmt.Println(errors.Is(err, keys.ErrInvalidKey))
	// Output:
	// 203.0.113.7 ok
	// 198.51.100.1 refused: address not allowed
	// true
}

// Act for a principal, as the HTTP endpoints do: only its account's keys,
// no permission it lacks; a retried idempotent create returns the first
// result.
func ExampleManager_As() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	caller := keys.Principal{AccountID: "acct_1", Subject: "user_42", Permissions: []string{"developers:write", "kyb:read"}}

	req := keys.APIKeyCreate{Name: "kyb worker", Environment: keys.Live, Permissions: []string{"kyb:read"}}
	first, _ := m.As(caller).Create(ctx, req, keys.IdempotencyKey("create-kyb-worker-1"))
	retry, _ := m.As(caller).Create(ctx, req, keys.IdempotencyKey("create-kyb-worker-1"))
	fmt.Println(retry.ID == first.ID, retry.Replayed)

	_, err := m.As(caller).Create(ctx, keys.APIKeyCreate{Name: "too much", Environment: keys.Live, Permissions: []string{"kyb:write"}})
	fmt.Println(errors.Is(err, keys.ErrPermissionDenied))

	stranger := keys.Principal{AccountID: "acct_2", Subject: "user_7", Permissions: []string{"developers:read"}}
	_, err = m.As(stranger).Get(ctx, first.ID)
	fmt.Println(errors.Is(err, keys.ErrNotFound))
	// Output:
	// true true
	// true
	// true
}
