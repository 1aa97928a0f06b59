package spectest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
		"reflect"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/memstore"
)

// seedPath is the contract this library implements: the TXCloud seed
// document, committed in api/ so that a clone with nothing beside it
// tests against it. TestSeedIsTheSharedSpec keeps it byte-identical to
// ../shared/spec/devex-create-key.yaml.
const seedPath = "../api/txcloud-devex-create-key.yaml"

func specPath(*testing.T) string { return seedPath }

// The committed seed must be the shared spec, byte for byte. Without
// ../shared beside the repository (a plain clone) there is nothing to
// compare, and the test skips; KEYS_REQUIRE_SHARED_SPEC=1 (set by .ci/run,
// which has ../shared) makes that a failure instead.
func TestSeedIsTheSharedSpec(t *testing.T) {
	shared, err := os.ReadFile("../../shared/spec/devex-create-key.yaml")
	if errors.Is(err, fs.ErrNotExist) && os.Getenv("KEYS_REQUIRE_SHARED_SPEC") == "" {
		t.Skip("../shared/spec/devex-create-key.yaml is not beside the repository: nothing to compare the committed seed with")
	}
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, shared) {
		t.Fatalf("%s differs from ../shared/spec/devex-create-key.yaml: copy the shared file over it", seedPath)
	}
}

func load(t *testing.T, path string) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", path, err)
	}
	return doc
}

type contract struct {
	router   routers.Router // the shared seed spec
	own      routers.Router // api/openapi.yaml
	errorDoc *openapi3.Schema
}

func newContract(t *testing.T) *contract {
	router, err := gorillamux.NewRouter(load(t, specPath(t)))
	if err != nil {
		t.Fatal(err)
	}
	ownDoc := load(t, "../api/openapi.yaml")
	own, err := gorillamux.NewRouter(ownDoc)
	if err != nil {
		t.Fatal(err)
	}
	return &contract{router: router, own: own, errorDoc: ownDoc.Components.Schemas["Error"].Value}
}

// check validates one exchange: the request against the spec, then the
// response, a 201 against the spec's own schema (undocumented statuses
// refused) and an error against the envelope schema.
func (c *contract) check(t *testing.T, req *http.Request, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if err := c.validate(req, body, rec); err != nil {
		t.Fatal(err)
	}
}

func (c *contract) validate(req *http.Request, body []byte, rec *httptest.ResponseRecorder) error {
	ctx := context.Background()
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	// The spec's servers end in /v1; the adapter is mounted there.
	routed := req.Clone(ctx)
	routed.URL.Scheme, routed.URL.Host, routed.URL.Path = "https", "api.txcloud.io", "/v1"+req.URL.Path
	routed.Body = io.NopCloser(bytes.NewReader(body))
	if route, params, err := c.own.FindRoute(routed); err == nil && route.Operation.OperationID != "createAPIKey" {
		// A lifecycle operation: the project's file documents its errors
		// too (default: the envelope), so it checks every exchange; the
		// requests of error cases are invalid on purpose.
		return exchange(ctx, "api/openapi.yaml", route, params, routed, rec, rec.Code < 400, opts)
	}
	// The seed operation (or no operation at all).
	if rec.Code >= 400 {
		var v any
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			return fmt.Errorf("error body is not JSON: %s", rec.Body)
		}
		if err := c.errorDoc.VisitJSON(v); err != nil {
			return fmt.Errorf("%d body does not match the error envelope: %v\n%s", rec.Code, err, rec.Body)
		}
		return nil
	}
	route, params, err := c.router.FindRoute(routed)
	if err != nil {
		return fmt.Errorf("route: %v", err)
	}
	return exchange(ctx, "the shared spec", route, params, routed, rec, true, opts)
}

// exchange validates a response (and, if checkRequest, its request)
// against one route of one document.
func exchange(ctx context.Context, doc string, route *routers.Route, params map[string]string, req *http.Request, rec *httptest.ResponseRecorder, checkRequest bool, opts *openapi3filter.Options) error {
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	if checkRequest {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			return fmt.Errorf("the test sent a request %s does not allow: %v", doc, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Options: opts}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return fmt.Errorf("%d response breaks %s: %v\n%s", rec.Code, doc, err, rec.Body)
	}
	return nil
}

func setup(t *testing.T) (http.Handler, *keys.Manager, string) {
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	admin, err := m.Create(context.Background(), keys.APIKeyCreate{Name: "admin", Environment: keys.Live, Permissions: keys.DefaultVocabulary(), AccountID: "acct_spec"})
	if err != nil {
		t.Fatal(err)
	}
	return httpadapter.New(m), m, string(admin.Key)
}

func TestResponsesMatchSpec(t *testing.T) {
	c := newContract(t)
	h, m, admin := setup(t)
	limited, err := m.Create(context.Background(), keys.APIKeyCreate{Name: "limited", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), RateLimit: ptr(1), AccountID: "acct_spec"})
	if err != nil {
		t.Fatal(err)
	}
	type exchange struct {
		name, key, contentType, body, idem string
		status                             int
	}
	cases := []exchange{
		{"minimal", admin, "application/json", `{"name":"minimal","environment":"test"}`, "", 201},
		{"everything", admin, "application/json", `{"name":"all","environment":"live","permissions":["identity:read","fraud:write"],"allowed_ips":["192.0.2.0/24","2001:db8::1"],"rate_limit":60,"expires_at":"2040-01-02T03:04:05Z"}`, "", 201},
		{"idempotent", admin, "application/json", `{"name":"idem","environment":"test"}`, "spec-idem-0001", 201},
		{"idempotent replay", admin, "application/json", `{"name":"idem","environment":"test"}`, "spec-idem-0001", 201},
		{"idempotency conflict", admin, "application/json", `{"name":"other","environment":"test"}`, "spec-idem-0001", 409},
		{"rate limited key", string(limited.Key), "application/json", `{"name":"x","environment":"test"}`, "", 201},
		{"rate limit exceeded", string(limited.Key), "application/json", `{"name":"x","environment":"test"}`, "", 429},
		{"no key", "", "application/json", `{"name":"x","environment":"test"}`, "", 401},
		{"unknown key", "txc_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000", "application/json", `{"name":"x","environment":"test"}`, "", 401},
		{"missing name", admin, "application/json", `{"environment":"test"}`, "", 400},
		{"bad ip", admin, "application/json", `{"name":"x","environment":"test","allowed_ips":["nope"]}`, "", 400},
		{"malformed", admin, "application/json", `{"name":`, "", 400},
		{"wrong type", admin, "text/plain", `{}`, "", 415},
		{"too big", admin, "application/json", `{"name":"` + strings.Repeat("x", 70000) + `"}`, "", 413},
		{"bad idempotency key", admin, "application/json", `{"name":"x","environment":"test"}`, "short", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/developers/keys", strings.NewReader(tc.body))
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			req.Header.Set("Content-Type", tc.contentType)
			if tc.idem != "" {
				req.Header.Set("Idempotency-Key", tc.idem)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			c.check(t, req, []byte(tc.body), rec)
		})
	}
	// Other methods and paths answer in the envelope too.
	for _, r := range []*http.Request{httptest.NewRequest("GET", "/developers/keys", nil), httptest.NewRequest("POST", "/nowhere", nil)} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		c.check(t, r, nil, rec)
	}
}

// The project's OpenAPI file must carry the seed operation and its schemas
// unchanged.
func TestProjectSpecKeepsSeedOperation(t *testing.T) {
	seed := load(t, specPath(t))
	own := load(t, "../api/openapi.yaml")
	seedOp := seed.Paths.Find("/developers/keys").Post
	ownOp := own.Paths.Find("/developers/keys").Post
	if ownOp == nil || !sameJSON(t, seedOp, ownOp) {
		t.Fatal("api/openapi.yaml changed the createAPIKey operation")
	}
	for _, name := range []string{"APIKeyCreate", "APIKeyCreated", "APIKey"} {
		if !sameJSON(t, seed.Components.Schemas[name], own.Components.Schemas[name]) {
			t.Fatalf("api/openapi.yaml changed schema %s", name)
		}
	}
	if !sameJSON(t, seed.Servers, own.Servers) || !sameJSON(t, seed.Components.SecuritySchemes, own.Components.SecuritySchemes) {
		t.Fatal("api/openapi.yaml changed the servers or security schemes")
	}
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var va, vb any
	_ = json.Unmarshal(ja, &va)
	_ = json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}

func ptr[T any](v T) *T { return &v }

// The checks above must be able to fail: broken responses are refused.
func TestContractRejectsBrokenResponses(t *testing.T) {
	c := newContract(t)
	good := `{"id":"key_1","name":"n","prefix":"txc_test_abcd","environment":"test","permissions":[],"created_at":"2030-01-01T00:00:00Z","key":"k"}`
	req := func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/developers/keys", strings.NewReader(`{"name":"n","environment":"test"}`))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	respond := func(status int, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(status)
		rec.WriteString(body)
		return rec
	}
	body := []byte(`{"name":"n","environment":"test"}`)
	if err := c.validate(req(), body, respond(201, good)); err != nil {
		t.Fatalf("a good response was refused: %v", err)
	}
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"bad environment":             respond(201, strings.Replace(good, `"test"`, `"staging"`, 1)),
		"created_at not a date":       respond(201, strings.Replace(good, `"2030-01-01T00:00:00Z"`, `"yesterday"`, 1)),
		"permissions not array":       respond(201, strings.Replace(good, `[]`, `"all"`, 1)),
		"undocumented status":         respond(200, good),
		"envelope without request_id": respond(400, `{"error":{"type":"validation_error","code":"x","message":"m"}}`),
		"envelope with unknown type":  respond(400, `{"error":{"type":"oops","code":"x","message":"m","request_id":"req_1"}}`),
		"bare error string":           respond(500, `{"error":"boom"}`),
	} {
		if err := c.validate(req(), body, rec); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	list := httptest.NewRequest(http.MethodGet, "/developers/keys", nil)
	if err := c.validate(list, nil, respond(200, `{"data":[],"has_more":false}`)); err != nil {
		t.Fatalf("a good list was refused: %v", err)
	}
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"has_more not boolean":   respond(200, `{"data":[],"has_more":"no"}`),
		"revoked_at not a date":  respond(200, `{"data":[{"id":"k","revoked_at":"yesterday"}],"has_more":false}`),
		"data missing":           respond(200, `{"has_more":false}`),
		"undocumented status":    respond(202, `{"data":[],"has_more":false}`),
		"error outside envelope": respond(404, `{"message":"not found"}`),
	} {
		if err := c.validate(list, nil, rec); err == nil {
			t.Errorf("list, %s: accepted", name)
		}
	}
}

func TestLifecycleResponsesMatchSpec(t *testing.T) {
	c := newContract(t)
	h, m, admin := setup(t)
	other, err := m.Create(context.Background(), keys.APIKeyCreate{Name: "other", Environment: keys.Live, Permissions: keys.DefaultVocabulary(), AccountID: "acct_other"})
	if err != nil {
		t.Fatal(err)
	}
	do := func(t *testing.T, method, path, key, body string, hdr map[string]string, want int) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, rec.Code, want, rec.Body)
		}
		c.check(t, req, []byte(body), rec)
		return rec
	}
	rec := do(t, "POST", "/developers/keys", admin, `{"name":"svc","environment":"live","permissions":["kyb:read"],"allowed_ips":["10.0.0.0/8"],"rate_limit":5,"expires_at":"2040-01-01T00:00:00Z"}`, nil, 201)
	var k keys.APIKeyCreated
	if err := json.Unmarshal(rec.Body.Bytes(), &k); err != nil {
		t.Fatal(err)
	}
	path := "/developers/keys/" + k.ID
	do(t, "GET", "/developers/keys", admin, "", nil, 200)
	rec = do(t, "GET", "/developers/keys?limit=1&environment=live&revoked=false", admin, "", nil, 200)
	var page keys.KeyList
	_ = json.Unmarshal(rec.Body.Bytes(), &page)
	do(t, "GET", "/developers/keys?limit=1&cursor="+page.NextCursor, admin, "", nil, 200)
	do(t, "GET", path, admin, "", nil, 200)
	do(t, "PATCH", path, admin, `{"name":"renamed","rate_limit":null,"expires_at":null,"allowed_ips":null,"permissions":["kyb:read","fraud:read"]}`, nil, 200)
	do(t, "PATCH", path, admin, `{}`, nil, 200)
	rec = do(t, "POST", path+"/roll", admin, `{"grace_period_seconds":60}`, map[string]string{"Idempotency-Key": "spec-roll-0001"}, 201)
	var rolled keys.APIKeyCreated
	_ = json.Unmarshal(rec.Body.Bytes(), &rolled)
	do(t, "POST", path+"/roll", admin, `{"grace_period_seconds":60}`, map[string]string{"Idempotency-Key": "spec-roll-0001"}, 201)
	do(t, "POST", "/developers/keys/"+rolled.ID+"/roll", admin, "", nil, 201)
	do(t, "DELETE", path, admin, "", nil, 200)
	do(t, "DELETE", path, admin, "", nil, 200)
	do(t, "GET", "/developers/keys?revoked=true", admin, "", nil, 200)
	// Errors of the lifecycle operations, validated as their default response.
	do(t, "GET", "/developers/keys/"+other.ID, admin, "", nil, 404)
	do(t, "GET", "/developers/keys?limit=500", admin, "", nil, 400)
	do(t, "PATCH", path, admin, `{"environment":"test"}`, nil, 400)
	do(t, "POST", path+"/roll", admin, `{"grace_period_seconds":999999999}`, nil, 400)
	do(t, "DELETE", path, "txc_live_nope", "", nil, 401)
	do(t, "PUT", path, admin, `{}`, nil, 405)
}
