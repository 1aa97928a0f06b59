package spectest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/internal/hostile"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/usage"
	"github.com/txcloud/keys/webhook"
)

type env struct {
	t     *testing.T
	c     *contract
	h     http.Handler
	m     *keys.Manager
	admin string
}

func setup(t *testing.T) *env {
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	e := &env{t: t, c: newContract(t), h: httpadapter.New(m), m: m}
	e.admin = e.key(keys.APIKeyCreate{Name: "admin", Environment: keys.Live, Permissions: keys.DefaultVocabulary(), AccountID: "acct_spec"})
	return e
}

func (e *env) key(req keys.APIKeyCreate) string {
	e.t.Helper()
	c, err := e.m.Create(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(c.Key)
}

// do sends one request and checks the exchange in both directions.
func (e *env) do(t *testing.T, method, path, key, body string, hdr map[string][]string, want int) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if want != 0 && rec.Code != want {
		t.Fatalf("%s %s: %d, want %d: %.300s", method, path, rec.Code, want, rec.Body)
	}
	e.c.check(t, req, []byte(body), rec)
	return rec
}

func idem(k string) map[string][]string { return map[string][]string{"Idempotency-Key": {k}} }

func TestCreateExchanges(t *testing.T) {
	e := setup(t)
	limited := e.key(keys.APIKeyCreate{Name: "limited", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), RateLimit: ptr(1), AccountID: "acct_spec"})
	cases := []struct {
		name, key, contentType, body, idem string
		status                             int
	}{
		{"minimal", e.admin, "application/json", `{"name":"minimal","environment":"test"}`, "", 201},
		{"everything", e.admin, "application/json", `{"name":"all","environment":"live","permissions":["identity:read","fraud:write"],"allowed_ips":["192.0.2.0/24","2001:db8::1"],"rate_limit":60,"expires_at":"2040-01-02T03:04:05Z"}`, "", 201},
		{"idempotent", e.admin, "application/json", `{"name":"idem","environment":"test"}`, "spec-idem-0001", 201},
		{"idempotent replay", e.admin, "application/json", `{"name":"idem","environment":"test"}`, "spec-idem-0001", 201},
		{"idempotency conflict", e.admin, "application/json", `{"name":"other","environment":"test"}`, "spec-idem-0001", 409},
		{"rate limited key", limited, "application/json", `{"name":"x","environment":"test"}`, "", 201},
		{"rate limit exceeded", limited, "application/json", `{"name":"x","environment":"test"}`, "", 429},
		{"no key", "", "application/json", `{"name":"x","environment":"test"}`, "", 401},
		{"unknown key", "txc_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000", "application/json", `{"name":"x","environment":"test"}`, "", 401},
		{"missing name", e.admin, "application/json", `{"environment":"test"}`, "", 400},
		{"bad ip", e.admin, "application/json", `{"name":"x","environment":"test","allowed_ips":["nope"]}`, "", 400},
		{"an address the pattern admits", e.admin, "application/json", `{"name":"x","environment":"test","allowed_ips":["1.2.3"]}`, "", 400},
		{"malformed", e.admin, "application/json", `{"name":`, "", 400},
		{"wrong type", e.admin, "text/plain", `{}`, "", 415},
		{"too big", e.admin, "application/json", `{"name":"` + strings.Repeat("x", 70000) + `"}`, "", 413},
		{"bad idempotency key", e.admin, "application/json", `{"name":"x","environment":"test"}`, "short", 400},
		{"expiry in the past", e.admin, "application/json", `{"name":"x","environment":"test","expires_at":"2001-01-01T00:00:00Z"}`, "", 400},
		{"a field twice", e.admin, "application/json", `{"name":"x","name":"y","environment":"test"}`, "", 400},
		{"valid, but over 64 KiB", e.admin, "application/json", `{"name":"x","environment":"test","permissions":[` + strings.Repeat(`"identity:read",`, 5000) + `"identity:read"]}`, "", 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string][]string{"Content-Type": {tc.contentType}}
			if tc.idem != "" {
				hdr["Idempotency-Key"] = []string{tc.idem}
			}
			e.do(t, "POST", "/developers/keys", tc.key, tc.body, hdr, tc.status)
		})
	}
	hdr := map[string][]string{"Idempotency-Key": {"spec-idem-0002", "spec-idem-0003"}}
	e.do(t, "POST", "/developers/keys", e.admin, `{"name":"x","environment":"test"}`, hdr, 400)
	// Other methods and paths answer in the envelope too.
	e.do(t, "PUT", "/developers/keys", e.admin, "", nil, 405)
	e.do(t, "POST", "/nowhere", e.admin, "", nil, 404)
}

func TestLifecycleExchanges(t *testing.T) {
	e := setup(t)
	other := e.key(keys.APIKeyCreate{Name: "other", Environment: keys.Live, Permissions: keys.DefaultVocabulary(), AccountID: "acct_other"})
	rec := e.do(t, "POST", "/developers/keys", e.admin, `{"name":"svc","environment":"live","permissions":["kyb:read"],"allowed_ips":["10.0.0.0/8"],"rate_limit":5,"expires_at":"2040-01-01T00:00:00Z"}`, nil, 201)
	var k keys.APIKeyCreated
	if err := json.Unmarshal(rec.Body.Bytes(), &k); err != nil {
		t.Fatal(err)
	}
	path := "/developers/keys/" + k.ID
	e.do(t, "GET", "/developers/keys", e.admin, "", nil, 200)
	rec = e.do(t, "GET", "/developers/keys?limit=1&environment=live&revoked=false", e.admin, "", nil, 200)
	var page keys.KeyList
	_ = json.Unmarshal(rec.Body.Bytes(), &page)
	e.do(t, "GET", "/developers/keys?limit=1&cursor="+page.NextCursor, e.admin, "", nil, 200)
	e.do(t, "GET", path, e.admin, "", nil, 200)
	e.do(t, "PATCH", path, e.admin, `{"name":"renamed","rate_limit":null,"expires_at":null,"allowed_ips":null,"permissions":["kyb:read","fraud:read"]}`, nil, 200)
	e.do(t, "PATCH", path, e.admin, `{}`, nil, 200)
	rec = e.do(t, "POST", path+"/roll", e.admin, `{"grace_period_seconds":60}`, idem("spec-roll-0001"), 201)
	var rolled keys.APIKeyCreated
	_ = json.Unmarshal(rec.Body.Bytes(), &rolled)
	e.do(t, "POST", path+"/roll", e.admin, `{"grace_period_seconds":60}`, idem("spec-roll-0001"), 201)
	e.do(t, "POST", "/developers/keys/"+rolled.ID+"/roll", e.admin, "", nil, 201)
	// The rolled key, in its grace period, cannot change or roll again.
	e.do(t, "PATCH", path, e.admin, `{"name":"too late"}`, nil, 400)
	e.do(t, "POST", path+"/roll", e.admin, "", nil, 400)
	e.do(t, "DELETE", path, e.admin, "", nil, 200)
	e.do(t, "DELETE", path, e.admin, "", nil, 200)
	e.do(t, "GET", "/developers/keys?revoked=true", e.admin, "", nil, 200)
	// Errors of the lifecycle operations.
	otherID := keyID(t, e, other)
	e.do(t, "GET", "/developers/keys/"+otherID, e.admin, "", nil, 404)
	e.do(t, "GET", "/developers/keys?limit=500", e.admin, "", nil, 400)
	e.do(t, "GET", "/developers/keys?limit=1&limit=2", e.admin, "", nil, 400)
	e.do(t, "GET", "/developers/keys?colour=blue", e.admin, "", nil, 400)
	e.do(t, "GET", "/developers/keys?cursor=bm90LWEtY3Vyc29y", e.admin, "", nil, 400)
	e.do(t, "PATCH", path, e.admin, `{"environment":"test"}`, nil, 400)
	e.do(t, "POST", path+"/roll", e.admin, `{"grace_period_seconds":999999999}`, nil, 400)
	e.do(t, "POST", path+"/roll", e.admin, `{"grace_period_seconds":null}`, nil, 400)
	e.do(t, "DELETE", path, "txc_live_nope", "", nil, 401)
	e.do(t, "PUT", path, e.admin, `{}`, nil, 405)

	// Owner, metadata and disable.
	rec = e.do(t, "POST", "/developers/keys", e.admin, `{"name":"owned","environment":"live","permissions":["developers:read"],"owner_id":"cust_9","metadata":{"plan":"pro","n":[1,{"x":null}]}}`, nil, 201)
	var owned keys.APIKeyCreated
	_ = json.Unmarshal(rec.Body.Bytes(), &owned)
	if owned.OwnerID != "cust_9" || string(owned.Metadata) != `{"plan":"pro","n":[1,{"x":null}]}` || !owned.Enabled {
		t.Fatalf("created %+v", owned.APIKey)
	}
	e.do(t, "GET", "/developers/keys?owner_id=cust_9&expiring_within=86400", e.admin, "", nil, 200)
	e.do(t, "PATCH", "/developers/keys/"+owned.ID, e.admin, `{"enabled":false}`, nil, 200)
	rec = e.do(t, "GET", "/developers/keys", string(owned.Key), "", nil, 401)
	if !strings.Contains(rec.Body.String(), `"key_disabled"`) {
		t.Fatalf("a disabled key: %s", rec.Body)
	}
	e.do(t, "PATCH", "/developers/keys/"+owned.ID, e.admin, `{"enabled":true,"metadata":null,"owner_id":null}`, nil, 200)
	e.do(t, "GET", "/developers/keys", string(owned.Key), "", nil, 200)
	e.do(t, "PATCH", "/developers/keys/"+owned.ID, e.admin, `{"enabled":null}`, nil, 400)
	// Disabled by the host (the Manager's own Update): the account cannot
	// switch it back on.
	if _, err := e.m.Update(context.Background(), owned.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)}); err != nil {
		t.Fatal(err)
	}
	rec = e.do(t, "PATCH", "/developers/keys/"+owned.ID, e.admin, `{"enabled":true}`, nil, 403)
	if !strings.Contains(rec.Body.String(), `"param":"enabled"`) {
		t.Fatalf("enabling a key the host disabled: %s", rec.Body)
	}
	e.do(t, "PATCH", "/developers/keys/"+owned.ID, e.admin, `{"metadata":{"big":"`+strings.Repeat("x", 4100)+`"}}`, nil, 400)
	e.do(t, "PATCH", "/developers/keys/"+owned.ID, e.admin, `{"metadata":{"a":1,"a":2}}`, nil, 400)
	e.do(t, "PATCH", "/developers/keys/"+owned.ID, e.admin, `{"metadata":`+strings.Repeat(`{"a":`, 9)+`1`+strings.Repeat("}", 9)+`}`, nil, 400)
	e.do(t, "POST", "/developers/keys", e.admin, `{"name":"x","environment":"live","metadata":[1]}`, nil, 400)
	e.do(t, "POST", "/developers/keys", e.admin, `{"name":"x","environment":"live","owner_id":"has space"}`, nil, 400)
	e.do(t, "GET", "/developers/keys?expiring_within=0", e.admin, "", nil, 400)

	// Credits: shown on create, get, list, update and roll; bad ones are
	// 400s the document also calls invalid.
	rec = e.do(t, "POST", "/developers/keys", e.admin, `{"name":"metered","environment":"live","credits":{"remaining":3,"refill":{"interval":"daily","amount":3}}}`, nil, 201)
	var metered keys.APIKeyCreated
	_ = json.Unmarshal(rec.Body.Bytes(), &metered)
	if metered.Credits == nil || metered.Credits.Remaining != 3 || metered.Credits.RefillsAt == nil {
		t.Fatalf("created with credits: %s", rec.Body)
	}
	e.do(t, "GET", "/developers/keys/"+metered.ID, e.admin, "", nil, 200)
	e.do(t, "GET", "/developers/keys", e.admin, "", nil, 200)
	e.do(t, "PATCH", "/developers/keys/"+metered.ID, e.admin, `{"credits":{"remaining":9}}`, nil, 200)
	e.do(t, "POST", "/developers/keys/"+metered.ID+"/roll", e.admin, "", nil, 201)
	for _, bad := range []string{`{"remaining":-1}`, `{}`, `{"remaining":1,"refill":{"interval":"weekly","amount":1}}`,
		`{"remaining":1,"refill":{"interval":"daily","amount":0}}`, `{"remaining":1,"extra":true}`, `{"remaining":1000000000000001}`, `7`} {
		e.do(t, "POST", "/developers/keys", e.admin, `{"name":"x","environment":"live","credits":`+bad+`}`, nil, 400)
	}
}

func keyID(t *testing.T, e *env, key string) string {
	t.Helper()
	v, err := e.m.Verify(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return v.KeyID
}

// The hostile corpus of httpadapter's TestHostileInput, each exchange held
// to the document in both directions.
func TestHostileExchanges(t *testing.T) {
	e := setup(t)
	admin := e.key(keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_a"})
	stranger := e.key(keys.APIKeyCreate{Name: "stranger", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_b"})
	revoked := e.key(keys.APIKeyCreate{Name: "revoked", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_a"})
	if _, err := e.m.Revoke(context.Background(), keyID(t, e, revoked)); err != nil {
		t.Fatal(err)
	}
	target, err := e.m.Create(context.Background(), keys.APIKeyCreate{Name: "target", Environment: keys.Test, Permissions: []string{"identity:read"}, AccountID: "acct_a"})
	if err != nil {
		t.Fatal(err)
	}
	rows := hostile.Requests(hostile.Keys{Admin: admin, Revoked: revoked, Stranger: stranger, StrangerKeyID: keyID(t, e, stranger), TargetID: target.ID})
	for _, r := range rows {
		t.Run(r.Name, func(t *testing.T) {
			req := httptest.NewRequest(r.Method, r.Path, strings.NewReader(r.Body))
			for k, vs := range r.Headers {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if rec.Code != r.Status {
				t.Fatalf("status %d, want %d", rec.Code, r.Status)
			}
			e.c.check(t, req, []byte(r.Body), rec)
		})
	}
	t.Logf("%d hostile exchanges checked against api/openapi.yaml", len(rows))
}

// Rate-limited keys: the documented headers on every counted response, a
// 429 with Retry-After, and none on requests refused before the limiter.
func TestRateLimitExchanges(t *testing.T) {
	e := setup(t)
	limited := e.key(keys.APIKeyCreate{Name: "limited", Environment: keys.Test, Permissions: []string{"developers:read", "developers:write"}, RateLimit: ptr(3), AccountID: "acct_spec"})
	for i := range 3 {
		rec := e.do(t, "GET", "/developers/keys", limited, "", nil, 200)
		if rec.Header().Get("X-RateLimit-Limit") != "3" || rec.Header().Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) || rec.Header().Get("X-RateLimit-Window") != "60" {
			t.Fatalf("request %d: %v", i+1, rec.Header())
		}
	}
	rec := e.do(t, "GET", "/developers/keys", limited, "", nil, 429)
	if rec.Header().Get("Retry-After") == "" || rec.Header().Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("429 headers: %v", rec.Header())
	}
	// Refused before the limiter (the endpoint's permission is checked
	// inside Verify): no headers, and nothing spent.
	reader := e.key(keys.APIKeyCreate{Name: "reader", Environment: keys.Test, Permissions: []string{"developers:read"}, RateLimit: ptr(3), AccountID: "acct_spec"})
	for range 5 {
		rec = e.do(t, "POST", "/developers/keys", reader, `{"name":"x","environment":"test"}`, nil, 403)
		if rec.Header().Get("X-RateLimit-Limit") != "" {
			t.Fatal("a 403 refused before the limiter carries rate-limit headers")
		}
	}
	if rec = e.do(t, "GET", "/developers/keys", reader, "", nil, 200); rec.Header().Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("refusals spent the limit: remaining %q", rec.Header().Get("X-RateLimit-Remaining"))
	}
}

// Requests the document calls valid, at the edges of every rule it states,
// are accepted.
func TestDocumentValidRequestsAreAccepted(t *testing.T) {
	e := setup(t)
	ips := make([]string, 100)
	for i := range ips {
		ips[i] = `"10.0.` + strconv.Itoa(i) + `.0/24"`
	}
	for name, body := range map[string]string{
		"name of 1 character":     `{"name":"a","environment":"test"}`,
		"name of 200 characters":  `{"name":"` + strings.Repeat("é", 200) + `","environment":"test"}`,
		"name with spaces around": `{"name":"  padded  ","environment":"test"}`,
		"rate_limit 1":            `{"name":"a","environment":"test","rate_limit":1}`,
		"rate_limit 10,000,000":   `{"name":"a","environment":"test","rate_limit":10000000}`,
		"100 allowed_ips":         `{"name":"a","environment":"test","allowed_ips":[` + strings.Join(ips, ",") + `]}`,
		"every permission":        `{"name":"a","environment":"live","permissions":["` + strings.Join(keys.DefaultVocabulary(), `","`) + `"]}`,
		"empty arrays":            `{"name":"a","environment":"test","permissions":[],"allowed_ips":[]}`,
		"IPv6 and mapped":         `{"name":"a","environment":"test","allowed_ips":["2001:db8::/32","::ffff:192.0.2.1"]}`,
		"owner_id of 128":         `{"name":"a","environment":"test","owner_id":"` + strings.Repeat("~", 128) + `"}`,
		"metadata 8 deep, 4096 B": `{"name":"a","environment":"test","enabled":false,"metadata":` + strings.Repeat(`{"a":`, 7) + `{"b":"` + strings.Repeat("x", 4096-7*5-8-7) + `"}` + strings.Repeat("}", 7) + `}`,
		"empty metadata":          `{"name":"a","environment":"test","metadata":{}}`,
		"credits 0, no refill":    `{"name":"a","environment":"test","credits":{"remaining":0}}`,
		"credits, null refill":    `{"name":"a","environment":"test","credits":{"remaining":1000000000000000,"refill":null}}`,
		"credits, daily refill":   `{"name":"a","environment":"test","credits":{"remaining":5,"refill":{"interval":"daily","amount":1}}}`,
		"credits, monthly refill": `{"name":"a","environment":"test","credits":{"remaining":5,"refill":{"interval":"monthly","amount":1000000000000000}}}`,
	} {
		t.Run("create: "+name, func(t *testing.T) { e.do(t, "POST", "/developers/keys", e.admin, body, nil, 201) })
	}
	for name, k := range map[string]string{"10 characters": strings.Repeat("k", 10), "255 characters": strings.Repeat("K", 255), "dashes and underscores": "a-b_c-d_e-f"} {
		t.Run("create: Idempotency-Key of "+name, func(t *testing.T) {
			e.do(t, "POST", "/developers/keys", e.admin, `{"name":"a","environment":"test"}`, idem(k), 201)
		})
	}
	for _, q := range []string{"limit=1", "limit=100", "environment=test", "revoked=true", "revoked=false", "owner_id=!", "expiring_within=1", "expiring_within=31622400"} {
		t.Run("list: "+q, func(t *testing.T) { e.do(t, "GET", "/developers/keys?"+q, e.admin, "", nil, 200) })
	}
	for name, body := range map[string]string{
		"every field null": `{"permissions":null,"allowed_ips":null,"rate_limit":null,"expires_at":null,"owner_id":null,"metadata":null,"credits":null}`,
		"credits":          `{"credits":{"remaining":7,"refill":{"interval":"monthly","amount":7}}}`,
		"enable":           `{"enabled":true}`,
		"name only":        `{"name":"b"}`,
		"every field":      `{"name":"c","permissions":["kyb:read"],"allowed_ips":["192.0.2.1"],"rate_limit":10000000,"expires_at":"2040-01-01T00:00:00Z"}`,
	} {
		t.Run("update: "+name, func(t *testing.T) {
			rec := e.do(t, "POST", "/developers/keys", e.admin, `{"name":"a","environment":"live"}`, nil, 201)
			var k keys.APIKeyCreated
			_ = json.Unmarshal(rec.Body.Bytes(), &k)
			e.do(t, "PATCH", "/developers/keys/"+k.ID, e.admin, body, nil, 200)
		})
	}
	for _, body := range []string{"", `{}`, `{"grace_period_seconds":0}`, `{"grace_period_seconds":604800}`} {
		t.Run("roll: "+body, func(t *testing.T) {
			rec := e.do(t, "POST", "/developers/keys", e.admin, `{"name":"a","environment":"live"}`, nil, 201)
			var k keys.APIKeyCreated
			_ = json.Unmarshal(rec.Body.Bytes(), &k)
			e.do(t, "POST", "/developers/keys/"+k.ID+"/roll", e.admin, body, nil, 201)
		})
	}
}

// The project's document carries the seed unchanged: its servers,
// security and tags, its schemas, and createAPIKey's request (APIKeyCreate,
// with the server's rules beside it in allOf) and 201 (APIKeyCreated).
func TestProjectSpecKeepsTheSeed(t *testing.T) {
	seed := load(t, seedPath)
	own := load(t, ownPath)
	for _, name := range []string{"APIKeyCreate", "APIKeyCreated", "APIKey"} {
		if !sameJSON(t, seed.Components.Schemas[name], own.Components.Schemas[name]) {
			t.Fatalf("api/openapi.yaml changed schema %s", name)
		}
	}
	if !sameJSON(t, seed.Servers, own.Servers) || !sameJSON(t, seed.Components.SecuritySchemes, own.Components.SecuritySchemes) ||
		!sameJSON(t, seed.Security, own.Security) || !sameJSON(t, seed.Tags, own.Tags) {
		t.Fatal("api/openapi.yaml changed the servers, security or tags")
	}
	seedOp, ownOp := seed.Paths.Find("/developers/keys").Post, own.Paths.Find("/developers/keys").Post
	if ownOp.OperationID != seedOp.OperationID || !sameJSON(t, seedOp.Tags, ownOp.Tags) || ownOp.Summary != seedOp.Summary {
		t.Fatal("api/openapi.yaml changed createAPIKey's id, tags or summary")
	}
	seedCreated := seedOp.Responses.Value("201").Value.Content.Get("application/json").Schema
	ownCreated := ownOp.Responses.Value("201").Value.Content.Get("application/json").Schema
	if seedCreated.Ref != ownCreated.Ref {
		t.Fatalf("createAPIKey's 201 is %s, want the seed's %s", ownCreated.Ref, seedCreated.Ref)
	}
	seedReq := seedOp.RequestBody.Value.Content.Get("application/json").Schema
	ownReq := ownOp.RequestBody.Value.Content.Get("application/json").Schema
	if !ownOp.RequestBody.Value.Required || !hasRef(ownReq.Value.AllOf, seedReq.Ref) {
		t.Fatalf("createAPIKey's request no longer requires the seed's %s", seedReq.Ref)
	}
}

func hasRef(refs openapi3.SchemaRefs, ref string) bool {
	for _, r := range refs {
		if r.Ref == ref {
			return true
		}
	}
	return false
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

// The checks above must be able to fail: broken responses, and requests
// the two sides disagree on, are refused.
func TestContractRejectsDisagreement(t *testing.T) {
	c := newContract(t)
	good := `{"id":"key_1","name":"n","prefix":"txc_test_abcd","environment":"test","permissions":[],"created_at":"2030-01-01T00:00:00Z","key":"k"}`
	req := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/developers/keys", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	respond := func(status int, body string, hdr ...string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			rec.Header().Set(hdr[i], hdr[i+1])
		}
		rec.WriteHeader(status)
		rec.WriteString(body)
		return rec
	}
	okBody := `{"name":"n","environment":"test"}`
	envelope := func(typ string) string {
		return `{"error":{"type":"` + typ + `","code":"x","message":"m","request_id":"req_1"}}`
	}
	if err := c.validate(req(okBody), []byte(okBody), respond(201, good, "Request-Id", "req_1")); err != nil {
		t.Fatalf("a good response was refused: %v", err)
	}
	if err := c.validate(req(okBody), []byte(okBody), respond(201, good)); err == nil {
		t.Fatal("a success without its Request-Id passed")
	}
	if err := c.validate(req(`{"name":"n","environment":"test","rate_limit":0}`), []byte(`{"name":"n","environment":"test","rate_limit":0}`), respond(400, envelope("validation_error"), "Request-Id", "req_1")); err != nil {
		t.Fatalf("a refusal of an invalid request was refused: %v", err)
	}
	for name, tc := range map[string]struct {
		body string
		rec  *httptest.ResponseRecorder
	}{
		"bad environment":                 {okBody, respond(201, strings.Replace(good, `"test"`, `"staging"`, 1), "Request-Id", "req_1")},
		"created_at not a date":           {okBody, respond(201, strings.Replace(good, `"2030-01-01T00:00:00Z"`, `"yesterday"`, 1), "Request-Id", "req_1")},
		"permissions not array":           {okBody, respond(201, strings.Replace(good, `[]`, `"all"`, 1), "Request-Id", "req_1")},
		"undocumented status":             {okBody, respond(202, good, "Request-Id", "req_1")},
		"envelope without request_id":     {okBody, respond(401, `{"error":{"type":"authentication_error","code":"x","message":"m"}}`, "Request-Id", "req_1", "WWW-Authenticate", "Bearer")},
		"envelope with unknown type":      {okBody, respond(401, envelope("oops"), "Request-Id", "req_1", "WWW-Authenticate", "Bearer")},
		"bare error string":               {okBody, respond(500, `{"error":"boom"}`, "Request-Id", "req_1")},
		"error without Request-Id header": {okBody, respond(401, envelope("authentication_error"), "WWW-Authenticate", "Bearer")},
		"429 without Retry-After":         {okBody, respond(429, envelope("rate_limit_error"), "Request-Id", "req_1")},
		"accepted an unknown field":       {`{"name":"n","environment":"test","colour":"red"}`, respond(201, good, "Request-Id", "req_1")},
		"accepted a null":                 {`{"name":"n","environment":"test","rate_limit":null}`, respond(201, good, "Request-Id", "req_1")},
		"accepted rate_limit 0":           {`{"name":"n","environment":"test","rate_limit":0}`, respond(201, good, "Request-Id", "req_1")},
		"refused a valid request":         {okBody, respond(400, envelope("validation_error"), "Request-Id", "req_1")},
	} {
		if err := c.validate(req(tc.body), []byte(tc.body), tc.rec); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	list := httptest.NewRequest(http.MethodGet, "/developers/keys", nil)
	if err := c.validate(list, nil, respond(200, `{"data":[],"has_more":false}`, "Request-Id", "req_1")); err != nil {
		t.Fatalf("a good list was refused: %v", err)
	}
	for name, rec := range map[string]*httptest.ResponseRecorder{
		"has_more not boolean":   respond(200, `{"data":[],"has_more":"no"}`, "Request-Id", "req_1"),
		"revoked_at not a date":  respond(200, `{"data":[{"id":"k","revoked_at":"yesterday"}],"has_more":false}`, "Request-Id", "req_1"),
		"data missing":           respond(200, `{"has_more":false}`, "Request-Id", "req_1"),
		"undocumented status":    respond(202, `{"data":[],"has_more":false}`, "Request-Id", "req_1"),
		"no Request-Id":          respond(200, `{"data":[],"has_more":false}`),
		"error outside envelope": respond(400, `{"message":"bad"}`, "Request-Id", "req_1"),
	} {
		if err := c.validate(list, nil, rec); err == nil {
			t.Errorf("list, %s: accepted", name)
		}
	}
}

// Under an account plan: a rate_limit above the plan is a 400 on
// rate_limit; the key endpoints stay outside the plan, so an account that
// spent its day's quota still lists and revokes its keys; a key's own
// limit still holds there, and its 429 names it.
func TestPlanExchanges(t *testing.T) {
	plans := func(context.Context, string) (keys.Plan, error) { return keys.Plan{PerMinute: 100, PerDay: 4}, nil }
	m, err := keys.New(memstore.New(), keys.WithPlans(plans, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	e := &env{t: t, c: newContract(t), h: httpadapter.New(m), m: m}
	admin := e.key(keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_plan"})
	rec := e.do(t, "POST", "/developers/keys", admin, `{"name":"over","environment":"test","rate_limit":101}`, nil, 400)
	var body httpadapter.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Param != "rate_limit" || body.Error.Code != "invalid_parameter" {
		t.Fatalf("%v %+v", err, body)
	}
	for range 4 {
		if _, err := m.Verify(context.Background(), admin); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Verify(context.Background(), admin); !errors.Is(err, keys.ErrRateLimited) {
		t.Fatalf("the day's quota is not spent: %v", err)
	}
	rec = e.do(t, "GET", "/developers/keys", admin, "", nil, 200)
	if rec.Header().Get("X-RateLimit-Limit") != "" {
		t.Fatalf("the key endpoints reported the plan's limits: %v", rec.Header())
	}
	limited := e.key(keys.APIKeyCreate{Name: "limited", Environment: keys.Test, Permissions: []string{"developers:read"}, RateLimit: ptr(1), AccountID: "acct_plan"})
	e.do(t, "GET", "/developers/keys", limited, "", nil, 200)
	rec = e.do(t, "GET", "/developers/keys", limited, "", nil, 429)
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Limit != "key" || body.Error.RetryAfter == nil || rec.Header().Get("X-RateLimit-Window") != "60" {
		t.Fatalf("%v %s %v", err, rec.Body, rec.Header())
	}
}

// The usage endpoints' answers match their schemas, with and without
// counts, prices and filters.
func TestUsageExchanges(t *testing.T) {
	m, err := keys.New(memstore.New(), keys.WithPrices("EUR", map[string]string{"identity": "0.0025"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	e := &env{t: t, c: newContract(t), h: httpadapter.New(m), m: m}
	admin := e.key(keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_usage"})
	v, err := m.Verify(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	e.do(t, "GET", "/developers/usage", admin, "", nil, 200) // nothing counted yet
	for i := range 9 {
		m.CountUsage(&v, []string{"identity", "fraud", "identity"}[i%3], []int{200, 404, 429}[i%3])
	}
	rec := e.do(t, "GET", "/developers/usage", admin, "", nil, 200)
	var s usage.Summary
	// The first read counts too, under its own pattern, priced at zero.
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil || s.TotalRequests != 10 || s.Successful != 4 || s.Failed != 6 || s.RateLimitHits != 3 ||
		s.ByAPI["GET /developers/usage"].Successful != 1 || s.EstimatedCost.Amount != "0.0075" {
		t.Fatalf("%v %s", err, rec.Body)
	}
	hour := time.Now().UTC().Truncate(time.Hour)
	q := "?start=" + hour.Add(-24*time.Hour).Format(time.RFC3339) + "&end=" + hour.Add(time.Hour).Format(time.RFC3339)
	e.do(t, "GET", "/developers/usage"+q+"&api=fraud&key_id="+v.KeyID, admin, "", nil, 200)
	rec = e.do(t, "GET", "/developers/keys/"+v.KeyID+"/usage"+q+"&granularity=hour", admin, "", nil, 200)
	var series usage.Series
	if err := json.Unmarshal(rec.Body.Bytes(), &series); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range series.Data {
		total += b.TotalRequests
	}
	if len(series.Data) != 25 || total != 12 { // the 9 counted, and the three usage reads before this one
		t.Fatalf("%d buckets holding %d requests: %s", len(series.Data), total, rec.Body)
	}
	for _, g := range []string{"minute", "hour", "day"} {
		e.do(t, "GET", "/developers/keys/"+v.KeyID+"/usage?granularity="+g, admin, "", nil, 200)
	}
}

// GET /developers/account matches its schema with a plan and credits, and
// with neither; a 402 of the account's credits names them.
func TestAccountExchanges(t *testing.T) {
	plans := func(_ context.Context, account string) (keys.Plan, error) {
		if account == "acct_planned" {
			return keys.Plan{Name: "starter", PerMinute: 300, PerDay: 10_000, Concurrent: 50}, nil
		}
		return keys.Plan{}, nil
	}
	m, err := keys.New(memstore.New(), keys.WithPlans(plans, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	e := &env{t: t, c: newContract(t), h: httpadapter.New(m), m: m}
	planned := e.key(keys.APIKeyCreate{Name: "p", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_planned"})
	bare := e.key(keys.APIKeyCreate{Name: "b", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_bare"})
	if err := m.SetAccountCredits(context.Background(), "acct_planned", &credits.Budget{Remaining: 1, Refill: &credits.Refill{Interval: credits.Monthly, Amount: 1}}); err != nil {
		t.Fatal(err)
	}
	rec := e.do(t, "GET", "/developers/account", planned, "", nil, 200)
	var a struct {
		ID   string
		Plan *struct {
			Name      string
			PerMinute int `json:"per_minute"`
		}
		Credits *credits.Budget
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil || a.ID != "acct_planned" || a.Plan == nil || a.Plan.PerMinute != 300 ||
		a.Credits == nil || a.Credits.Remaining != 1 || a.Credits.RefillsAt == nil {
		t.Fatalf("%v %s", err, rec.Body)
	}
	rec = e.do(t, "GET", "/developers/account", bare, "", nil, 200)
	if rec.Body.String() != `{"id":"acct_bare","plan":null,"credits":null}`+"\n" {
		t.Fatalf("an account with neither: %s", rec.Body)
	}
	e.do(t, "GET", "/developers/account?x=1", bare, "", nil, 400)
}

// The request log: every response carries a Request-Id, the list and
// the entry match their schemas, each documented filter is accepted, and
// another account's request is a 404.
func TestLogExchanges(t *testing.T) {
	e := setup(t)
	admin := e.key(keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_logs"})
	other := e.key(keys.APIKeyCreate{Name: "other", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_else"})
	rec := e.do(t, "GET", "/developers/keys/key_nosuch", admin, "", nil, 404)
	failed := rec.Header().Get("Request-Id")
	rec = e.do(t, "GET", "/developers/keys", admin, "", nil, 200)
	ok := rec.Header().Get("Request-Id")
	if !strings.HasPrefix(ok, "req_") || !strings.HasPrefix(failed, "req_") {
		t.Fatalf("Request-Id %q and %q", ok, failed)
	}
	rec = e.do(t, "GET", "/developers/logs/"+failed, admin, "", nil, 200)
	var got struct {
		RequestID string `json:"request_id"`
		Status    int
		ErrorCode *string `json:"error_code"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.RequestID != failed || got.Status != 404 || got.ErrorCode == nil || *got.ErrorCode != "not_found" {
		t.Fatalf("%v %s", err, rec.Body)
	}
	e.do(t, "GET", "/developers/logs/"+ok, admin, "", nil, 200)
	e.do(t, "GET", "/developers/logs/"+ok, other, "", nil, 404)
	id := keyID(t, e, admin)
	start := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, q := range []string{"", "limit=1", "limit=100", "status=404", "status=4xx", "status=2XX", "status=599", "method=GET", "api=GET+%2Fdevelopers%2Fkeys",
		"key_id=" + id, "request_id=" + ok, "start=" + start, "end=2099-01-01T00:00:00Z", "start=" + start + "&end=2099-01-01T00:00:00Z"} {
		t.Run("logs?"+q, func(t *testing.T) { e.do(t, "GET", "/developers/logs?"+q, admin, "", nil, 200) })
	}
	rec = e.do(t, "GET", "/developers/logs?limit=1", admin, "", nil, 200)
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || page.NextCursor == "" {
		t.Fatalf("no next_cursor on a page of one: %s", rec.Body)
	}
	e.do(t, "GET", "/developers/logs?limit=1&cursor="+page.NextCursor, admin, "", nil, 200)
}

// webhookEnv is setup with webhooks that may reach loopback, and a
// receiver answering 204.
func webhookEnv(t *testing.T) (*env, string) {
	m, err := keys.New(memstore.New(), keys.WithWebhooks(webhook.Config{AllowLoopback: true, Poll: 10 * time.Millisecond}),
		keys.WithPepper([]byte(strings.Repeat("p", 32))))
	if err != nil {
		t.Fatal(err)
	}
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(rv.Close)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	e := &env{t: t, c: newContract(t), h: httpadapter.New(m), m: m}
	e.admin = e.key(keys.APIKeyCreate{Name: "admin", Environment: keys.Live, Permissions: keys.DefaultVocabulary(), AccountID: "acct_hooks"})
	return e, rv.URL
}

func TestWebhookExchanges(t *testing.T) {
	e, url := webhookEnv(t)
	other := e.key(keys.APIKeyCreate{Name: "other", Environment: keys.Live, Permissions: keys.DefaultVocabulary(), AccountID: "acct_else"})
	reader := e.key(keys.APIKeyCreate{Name: "reader", Environment: keys.Live, Permissions: []string{"developers:read"}, AccountID: "acct_hooks"})
	body := `{"url":"` + url + `/hook","events":["key.created","key.revoked"],"description":"billing"}`
	rec := e.do(t, "POST", "/developers/webhooks", e.admin, body, idem("hook-create-1"), 201)
	var ep struct {
		ID     string
		Secret string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ep); err != nil || !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("%v %s", err, rec.Body)
	}
	rec = e.do(t, "POST", "/developers/webhooks", e.admin, body, idem("hook-create-1"), 201)
	if rec.Header().Get("Idempotent-Replayed") != "true" || !strings.Contains(rec.Body.String(), ep.Secret) {
		t.Fatalf("a replay: %s", rec.Body)
	}
	e.do(t, "POST", "/developers/webhooks", e.admin, `{"url":"`+url+`/other","events":["*"]}`, idem("hook-create-1"), 409)
	for name, bad := range map[string]string{
		"no url":         `{"events":["*"]}`,
		"no events":      `{"url":"` + url + `"}`,
		"empty events":   `{"url":"` + url + `","events":[]}`,
		"unknown type":   `{"url":"` + url + `","events":["key.exploded"]}`,
		"private url":    `{"url":"https://10.0.0.1/","events":["*"]}`,
		"metadata url":   `{"url":"https://169.254.169.254/latest/meta-data","events":["*"]}`,
		"ftp url":        `{"url":"ftp://127.0.0.1/","events":["*"]}`,
		"null url":       `{"url":null,"events":["*"]}`,
		"unknown field":  `{"url":"` + url + `","events":["*"],"secret":"whsec_x"}`,
		"bad enabled":    `{"url":"` + url + `","events":["*"],"enabled":"yes"}`,
		"bad env":        `{"url":"` + url + `","events":["*"],"environment":"prod"}`,
		"control in des": `{"url":"` + url + `","events":["*"],"description":"a\u0007b"}`,
	} {
		t.Run("create: "+name, func(t *testing.T) { e.do(t, "POST", "/developers/webhooks", e.admin, bad, nil, 400) })
	}
	e.do(t, "POST", "/developers/webhooks", reader, body, nil, 403)
	rec = e.do(t, "GET", "/developers/webhooks", reader, "", nil, 200)
	if strings.Contains(rec.Body.String(), "whsec_") {
		t.Fatalf("a list shows a secret: %s", rec.Body)
	}
	e.do(t, "GET", "/developers/webhooks/"+ep.ID, reader, "", nil, 200)
	e.do(t, "GET", "/developers/webhooks/"+ep.ID, other, "", nil, 404)
	e.do(t, "GET", "/developers/webhooks/we_nosuch", e.admin, "", nil, 404)
	e.do(t, "PATCH", "/developers/webhooks/"+ep.ID, e.admin, `{"events":["*"],"description":"all","enabled":true}`, nil, 200)
	e.do(t, "PATCH", "/developers/webhooks/"+ep.ID, e.admin, `{"url":"http://192.168.0.1/"}`, nil, 400)
	e.do(t, "PATCH", "/developers/webhooks/"+ep.ID, e.admin, `{"enabled":null}`, nil, 400)
	e.do(t, "PATCH", "/developers/webhooks/"+ep.ID, other, `{"enabled":false}`, nil, 404)
	for _, b := range []string{"", `{}`, `{"grace_period_seconds":0}`, `{"grace_period_seconds":86400}`} {
		rec := e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/roll-secret", e.admin, b, nil, 200)
		if !strings.Contains(rec.Body.String(), `"secret":"whsec_`) {
			t.Fatalf("roll-secret: %s", rec.Body)
		}
	}
	e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/roll-secret", e.admin, `{"grace_period_seconds":86401}`, nil, 400)
	// Idempotent: the retry replays the first secret and says so; another
	// body under the same key is a 409.
	first := e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/roll-secret", e.admin, `{"grace_period_seconds":60}`, idem("spec-roll-secret-1"), 200)
	again := e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/roll-secret", e.admin, `{"grace_period_seconds":60}`, idem("spec-roll-secret-1"), 200)
	if again.Body.String() != first.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" || first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("roll-secret retried: %s, then %s (Idempotent-Replayed %q)", first.Body, again.Body, again.Header().Get("Idempotent-Replayed"))
	}
	e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/roll-secret", e.admin, `{"grace_period_seconds":0}`, idem("spec-roll-secret-1"), 409)
	e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/roll-secret", e.admin, "", idem("short"), 400)
	rec = e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/test", e.admin, "", nil, 202)
	var d struct{ ID, Status string }
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.Status != "pending" {
		t.Fatalf("test: %s", rec.Body)
	}
	e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/test", other, "", nil, 404)
	e.key(keys.APIKeyCreate{Name: "evented", Environment: keys.Live, AccountID: "acct_hooks"})
	deadline := time.Now().Add(3 * time.Second)
	for {
		rec = e.do(t, "GET", "/developers/webhooks/"+ep.ID+"/deliveries", reader, "", nil, 200)
		if strings.Count(rec.Body.String(), `"status":"succeeded"`) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Count(rec.Body.String(), `"status":"succeeded"`) < 2 {
		t.Fatalf("deliveries: %s", rec.Body)
	}
	rec = e.do(t, "GET", "/developers/webhooks/"+ep.ID+"/deliveries?limit=1", reader, "", nil, 200)
	var page struct {
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || page.NextCursor == "" {
		t.Fatalf("a page of one: %s", rec.Body)
	}
	e.do(t, "GET", "/developers/webhooks/"+ep.ID+"/deliveries?limit=1&cursor="+page.NextCursor, reader, "", nil, 200)
	e.do(t, "GET", "/developers/webhooks/"+ep.ID+"/deliveries?limit=0", reader, "", nil, 400)
	e.do(t, "GET", "/developers/webhooks/"+ep.ID+"/deliveries", other, "", nil, 404)
	// The test event's delivery, once attempted, retried by hand.
	for deadline := time.Now().Add(3 * time.Second); ; {
		rec := e.do(t, "GET", "/developers/webhooks/"+ep.ID+"/deliveries?limit=100", reader, "", nil, 200)
		var l struct{ Data []struct{ ID, Status string } }
		_ = json.Unmarshal(rec.Body.Bytes(), &l)
		settled := false
		for _, x := range l.Data {
			settled = settled || x.ID == d.ID && x.Status == "succeeded"
		}
		if settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test event was not delivered: %s", rec.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/deliveries/"+d.ID+"/retry", e.admin, "", nil, 202)
	// Retried by hand until refused: while being attempted, or past the
	// bound of 10 beyond the schedule.
	for i := 0; ; i++ {
		if rec := e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/deliveries/"+d.ID+"/retry", e.admin, "", nil, 0); rec.Code == 400 {
			break
		} else if rec.Code != 202 || i == 200 {
			t.Fatalf("retry %d: %d %s", i, rec.Code, rec.Body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/deliveries/"+d.ID+"/retry", other, "", nil, 404)
	e.do(t, "POST", "/developers/webhooks/"+ep.ID+"/deliveries/dlv_nosuch/retry", e.admin, "", nil, 404)
	// The event log.
	rec = e.do(t, "GET", "/developers/events", reader, "", nil, 200)
	var evs struct {
		Data []struct {
			ID   string
			Type string
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &evs); err != nil || len(evs.Data) < 3 {
		t.Fatalf("events: %s", rec.Body)
	}
	start := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, q := range []string{"limit=1", "limit=100", "type=key.created", "type=webhook.test", "key_id=key_x", "start=" + start, "end=2099-01-01T00:00:00Z"} {
		t.Run("events?"+q, func(t *testing.T) { e.do(t, "GET", "/developers/events?"+q, reader, "", nil, 200) })
	}
	for _, q := range []string{"type=key.exploded", "limit=0", "limit=101", "cursor=nope", "start=yesterday", "type=key.created&type=key.revoked", "unknown=1"} {
		t.Run("events?"+q, func(t *testing.T) { e.do(t, "GET", "/developers/events?"+q, reader, "", nil, 400) })
	}
	e.do(t, "GET", "/developers/events/"+evs.Data[0].ID, reader, "", nil, 200)
	e.do(t, "GET", "/developers/events/"+evs.Data[0].ID, other, "", nil, 404)
	e.do(t, "GET", "/developers/events/evt_nosuch", reader, "", nil, 404)
	// Delete, then the 11th endpoint is refused.
	e.do(t, "DELETE", "/developers/webhooks/"+ep.ID, other, "", nil, 404)
	e.do(t, "DELETE", "/developers/webhooks/"+ep.ID, e.admin, "", nil, 204)
	e.do(t, "GET", "/developers/webhooks/"+ep.ID, e.admin, "", nil, 404)
	for i := range 10 {
		e.do(t, "POST", "/developers/webhooks", e.admin, `{"url":"`+url+`/`+strconv.Itoa(i)+`","events":["*"],"enabled":false}`, nil, 201)
	}
	rec = e.do(t, "POST", "/developers/webhooks", e.admin, `{"url":"`+url+`/11","events":["*"]}`, nil, 403)
	if !strings.Contains(rec.Body.String(), "webhook_limit_reached") {
		t.Fatalf("the 11th: %s", rec.Body)
	}
}

// Requests the document calls valid are accepted.
func TestDocumentValidWebhookRequestsAreAccepted(t *testing.T) {
	e, url := webhookEnv(t)
	long := url + "/" + strings.Repeat("p", 2048-len(url)-1)
	for name, body := range map[string]string{
		"every type":          `{"url":"` + url + `","events":["key.created","key.updated","key.revoked","key.rolled","key.disabled","key.enabled","key.expiring","key.leaked","usage.quota_threshold","credits.low","credits.exhausted","webhook_endpoint.created","webhook_endpoint.updated","webhook_endpoint.deleted","webhook_endpoint.disabled","webhook.test"]}`,
		"star and a type":     `{"url":"` + url + `","events":["*","key.created"]}`,
		"url of 2048":         `{"url":"` + long + `","events":["*"]}`,
		"description of 256":  `{"url":"` + url + `","events":["*"],"description":"` + strings.Repeat("d", 256) + `","enabled":false}`,
		"a type twice":        `{"url":"` + url + `","events":["key.created","key.created"],"environment":"live"}`,
		"32 types":            `{"url":"` + url + `","events":[` + strings.TrimSuffix(strings.Repeat(`"key.created",`, 32), ",") + `]}`,
		"description empty":   `{"url":"` + url + `","events":["*"],"description":""}`,
		"url with port/query": `{"url":"` + url + `/x?y=1","events":["*"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			rec := e.do(t, "POST", "/developers/webhooks", e.admin, body, nil, 201)
			var ep struct{ ID string }
			_ = json.Unmarshal(rec.Body.Bytes(), &ep)
			e.do(t, "DELETE", "/developers/webhooks/"+ep.ID, e.admin, "", nil, 204)
		})
	}
}
