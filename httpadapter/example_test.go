package httpadapter_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/memstore"
)

// One Adapter serves the key endpoints, guards the host's own routes, and
// answers the host's own errors in the same envelope.
func ExampleAdapter_Middleware() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	reader, _ := m.Create(ctx, keys.APIKeyCreate{Name: "reports", Environment: keys.Live, Permissions: []string{"transactions:read"}, AccountID: "acct_1"})

	a := httpadapter.New(m, httpadapter.WithRequestID(func(*http.Request) string { return "req_example" }))
	mux := http.NewServeMux()
	mux.Handle("/v1/developers/", http.StripPrefix("/v1", a))
	mux.Handle("GET /v1/reports/{id}", a.Middleware("transactions:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "2026" {
			a.WriteError(w, r, &httpadapter.Error{Status: http.StatusNotFound, Type: httpadapter.TypeNotFound, Code: "not_found", Message: "no such report"})
			return
		}
		v, _ := keys.FromContext(r.Context())
		fmt.Fprintf(w, "report 2026 for %s", v.AccountID)
	})))

	for _, path := range []string{"/v1/reports/2026", "/v1/reports/1999", "/v1/developers/keys"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+string(reader.Key))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	// Output:
	// 200 report 2026 for acct_1
	// 404 {"error":{"type":"not_found_error","code":"not_found","message":"no such report","request_id":"req_example"}}
	// 403 {"error":{"type":"authorization_error","code":"forbidden","message":"the key lacks \"developers:read\"","request_id":"req_example"}}
}

// Mount the key endpoint and the middleware in an existing mux.
func Example_mount() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	admin, _ := m.Create(ctx, keys.APIKeyCreate{
		Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_1",
	})

	a := httpadapter.New(m)
	mux := http.NewServeMux()
	mux.Handle("/v1/developers/", http.StripPrefix("/v1", a))
	mux.Handle("GET /v1/whoami", a.Middleware("developers:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := keys.FromContext(r.Context())
		fmt.Fprint(w, v.AccountID, " ", v.Environment)
	})))

	req := httptest.NewRequest("POST", "/v1/developers/keys", strings.NewReader(`{"name":"ci","environment":"test"}`))
	req.Header.Set("Authorization", "Bearer "+string(admin.Key))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	fmt.Println(rec.Code)

	req = httptest.NewRequest("GET", "/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+string(admin.Key))
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body)
	// Output:
	// 201
	// 200 acct_1 test
}
