package keys_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
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
	fmt.Println(strings.HasPrefix(created.Key.Reveal(), "txc_live_"), len(created.Key.Reveal()))
	fmt.Println(created.Key) // a Secret prints redacted
	fmt.Println(created.Permissions)

	v, err := m.Verify(ctx, created.Key.Reveal(), keys.Require("transactions:read"))
	fmt.Println(v.Key.ID == created.ID, err)
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
		Name: "office only", Environment: keys.Test, AllowedIPs: []string{"203.0.113.0/24"},
	})

	for _, ip := range []string{"203.0.113.7", "198.51.100.1"} {
		_, err := m.Verify(ctx, created.Key.Reveal(), keys.FromIP(netip.MustParseAddr(ip)))
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

// Mount the key endpoint and the middleware in an existing mux.
func Example_mount() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	admin, _ := m.Create(ctx, keys.APIKeyCreate{
		Name: "admin", Environment: keys.Test, Permissions: keys.DefaultPermissions, AccountID: "acct_1",
	})

	mux := http.NewServeMux()
	mux.Handle("/v1/developers/", http.StripPrefix("/v1", httpadapter.New(m)))
	mux.Handle("GET /v1/whoami", httpadapter.Middleware(m)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := keys.FromContext(r.Context())
		fmt.Fprint(w, v.Key.Name)
	})))

	req := httptest.NewRequest("POST", "/v1/developers/keys", strings.NewReader(`{"name":"ci","environment":"test"}`))
	req.Header.Set("Authorization", "Bearer "+admin.Key.Reveal())
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	fmt.Println(rec.Code)

	req = httptest.NewRequest("GET", "/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+admin.Key.Reveal())
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body)
	// Output:
	// 201
	// 200 admin
}
