package portal_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/portal"
)

// A host mounts the portal beside its API. Here the host's own session
// names the customer (Config.Principal); without it, customers sign in
// with an API key.
func Example() {
	m, _ := keys.New(memstore.New())
	defer m.Close(context.Background())
	_, _ = m.Create(context.Background(), keys.APIKeyCreate{AccountID: "acct_42", Name: "billing job", Environment: keys.Live})

	p, err := portal.New(m, portal.Config{
		Secret: []byte("a 32-byte secret from the host's vault"),
		Principal: func(r *http.Request) (keys.Principal, error) {
			// The host's session lookup; every customer of acct_42 here.
			return keys.Principal{AccountID: "acct_42", Subject: "user_7", Permissions: []string{"developers:read", "developers:write"}}, nil
		},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/portal/", p)

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/portal/keys", nil))
	fmt.Println(rec.Code, strings.Contains(rec.Body.String(), "billing job"))
	fmt.Println(rec.Header().Get("Content-Security-Policy") != "", rec.Header().Get("Cache-Control"))
	// Output:
	// 200 true
	// true no-store
}
