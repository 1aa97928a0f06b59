package httpadapter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/usage"
)

const okBody = `{"name":"ci","environment":"test","permissions":["identity:read"]}`

func TestCreateEndpoint(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	rec := serve(h, request{headers: jsonHeaders(e.admin), body: `{"name":"deploy bot","environment":"test","permissions":["identity:read","fraud:write"],"allowed_ips":["10.0.0.0/8"],"rate_limit":100,"expires_at":"2031-01-01T00:00:00Z"}`})
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", rec.Header())
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "name", "prefix", "environment", "permissions", "created_at", "key", "allowed_ips", "rate_limit", "expires_at"} {
		if _, ok := got[f]; !ok {
			t.Errorf("response lacks %q: %s", f, rec.Body)
		}
	}
	if _, ok := got["last_used"]; ok {
		t.Error("a new key has no last_used")
	}
	key := got["key"].(string)
	v, err := e.m.Verify(context.Background(), key, keys.FromIP(mustAddr("10.1.1.1")))
	if err != nil {
		t.Fatalf("the created key does not verify: %v", err)
	}
	if v.AccountID != "acct_a" {
		t.Fatalf("key belongs to %q, not the caller's account", v.AccountID)
	}
}

func TestCreateEndpointErrors(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	big := `{"name":"` + strings.Repeat("a", httpadapter.DefaultMaxBodyBytes) + `","environment":"test"}`
	exact := `{"environment":"test","name":"` + strings.Repeat("a", 10) + `"` + strings.Repeat(" ", httpadapter.DefaultMaxBodyBytes-len(`{"environment":"test","name":"aaaaaaaaaa"}`)) + `}`
	if len(exact) != httpadapter.DefaultMaxBodyBytes {
		t.Fatal("test body size wrong")
	}
	withIdem := func(k ...string) map[string][]string {
		hd := jsonHeaders(e.admin)
		hd["Idempotency-Key"] = k
		return hd
	}
	tests := []struct {
		name   string
		req    request
		status int
		typ    string
		code   string
		param  string
	}{
		{"no authorization", request{headers: map[string][]string{"Content-Type": {"application/json"}}, body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"key in the query string", request{path: "/developers/keys?api_key=" + e.admin, headers: map[string][]string{"Content-Type": {"application/json"}}, body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"basic auth", request{headers: map[string][]string{"Authorization": {"Basic dXNlcjpwYXNz"}, "Content-Type": {"application/json"}}, body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"two tokens", request{headers: map[string][]string{"Authorization": {"Bearer " + e.admin + " " + e.admin}, "Content-Type": {"application/json"}}, body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"two headers", request{headers: map[string][]string{"Authorization": {"Bearer " + e.admin, "Bearer " + e.admin}, "Content-Type": {"application/json"}}, body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"bearer without token", request{headers: map[string][]string{"Authorization": {"Bearer"}, "Content-Type": {"application/json"}}, body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"8 KiB token", request{headers: jsonHeaders(strings.Repeat("a", 8192)), body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"unknown key", request{headers: jsonHeaders(forgeKey("txc_test_" + strings.Repeat("A", 32))), body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"bad checksum", request{headers: jsonHeaders(changeLast(e.admin)), body: okBody}, 401, "authentication_error", "unauthorized", ""},
		{"revoked key", request{headers: jsonHeaders(e.revoked), body: okBody}, 401, "authentication_error", "key_revoked", ""},
		{"ip not allowed", request{headers: jsonHeaders(e.ipBound), body: okBody, remote: "198.51.100.1:5000"}, 401, "authentication_error", "ip_not_allowed", ""},
		{"no developers:write", request{headers: jsonHeaders(e.readOnly), body: okBody}, 403, "authorization_error", "forbidden", ""},
		{"grant unheld permission", request{headers: jsonHeaders(e.narrow), body: `{"name":"x","environment":"test","permissions":["identity:read","kyb:write"]}`}, 403, "authorization_error", "forbidden", "permissions[1]"},
		{"test key creates live", request{headers: jsonHeaders(e.admin), body: `{"name":"x","environment":"live"}`}, 403, "authorization_error", "forbidden", "environment"},
		{"no content type", request{headers: map[string][]string{"Authorization": bearer(e.admin)}, body: okBody}, 415, "validation_error", "invalid_request", ""},
		{"text/plain", request{headers: map[string][]string{"Authorization": bearer(e.admin), "Content-Type": {"text/plain"}}, body: okBody}, 415, "validation_error", "invalid_request", ""},
		{"form", request{headers: map[string][]string{"Authorization": bearer(e.admin), "Content-Type": {"application/x-www-form-urlencoded"}}, body: "name=x"}, 415, "validation_error", "invalid_request", ""},
		{"latin-1 JSON", request{headers: map[string][]string{"Authorization": bearer(e.admin), "Content-Type": {"application/json; charset=iso-8859-1"}}, body: okBody}, 415, "validation_error", "invalid_request", ""},
		{"empty body", request{headers: jsonHeaders(e.admin)}, 400, "validation_error", "invalid_request", ""},
		{"body over 64 KiB", request{headers: jsonHeaders(e.admin), body: big}, 413, "validation_error", "invalid_request", ""},
		{"array body", request{headers: jsonHeaders(e.admin), body: `[` + okBody + `]`}, 400, "validation_error", "invalid_request", ""},
		{"string body", request{headers: jsonHeaders(e.admin), body: `"hello"`}, 400, "validation_error", "invalid_request", ""},
		{"two objects", request{headers: jsonHeaders(e.admin), body: okBody + okBody}, 400, "validation_error", "invalid_request", ""},
		{"trailing garbage", request{headers: jsonHeaders(e.admin), body: okBody + "x"}, 400, "validation_error", "invalid_request", ""},
		{"truncated JSON", request{headers: jsonHeaders(e.admin), body: okBody[:20]}, 400, "validation_error", "invalid_request", ""},
		{"deeply nested", request{headers: jsonHeaders(e.admin), body: `{"name":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`}, 400, "validation_error", "invalid_request", ""},
		{"duplicate field", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","name":"b"}`}, 400, "validation_error", "invalid_parameter", "name"},
		{"unknown field", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","account_id":"acct_b"}`}, 400, "validation_error", "invalid_parameter", "account_id"},
		{"name null", request{headers: jsonHeaders(e.admin), body: `{"name":null,"environment":"test"}`}, 400, "validation_error", "invalid_parameter", "name"},
		{"null for an optional field", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","permissions":["identity:read"],"rate_limit":null}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"name of only white space", request{headers: jsonHeaders(e.admin), body: `{"name":" \t ","environment":"test"}`}, 400, "validation_error", "missing_parameter", "name"},
		{"name of 201 characters", request{headers: jsonHeaders(e.admin), body: `{"name":"` + strings.Repeat("é", 201) + `","environment":"test"}`}, 400, "validation_error", "invalid_parameter", "name"},
		{"name missing", request{headers: jsonHeaders(e.admin), body: `{"environment":"test"}`}, 400, "validation_error", "missing_parameter", "name"},
		{"name number", request{headers: jsonHeaders(e.admin), body: `{"name":5,"environment":"test"}`}, 400, "validation_error", "invalid_parameter", "name"},
		{"name with NUL", request{headers: jsonHeaders(e.admin), body: `{"name":"a\u0000b","environment":"test"}`}, 400, "validation_error", "invalid_parameter", "name"},
		{"name RTL override", request{headers: jsonHeaders(e.admin), body: `{"name":"a\u202eb","environment":"test"}`}, 400, "validation_error", "invalid_parameter", "name"},
		{"name 10,000 chars", request{headers: jsonHeaders(e.admin), body: `{"name":"` + strings.Repeat("n", 10000) + `","environment":"test"}`}, 400, "validation_error", "invalid_parameter", "name"},
		{"environment missing", request{headers: jsonHeaders(e.admin), body: `{"name":"a"}`}, 400, "validation_error", "missing_parameter", "environment"},
		{"environment bad", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"staging"}`}, 400, "validation_error", "invalid_parameter", "environment"},
		{"environment array", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":["test"]}`}, 400, "validation_error", "invalid_parameter", "environment"},
		{"permissions string", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","permissions":"identity:read"}`}, 400, "validation_error", "invalid_parameter", "permissions"},
		{"permissions non-string item", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","permissions":["identity:read",7]}`}, 400, "validation_error", "invalid_parameter", "permissions[1]"},
		{"permission wildcard", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","permissions":["identity:*"]}`}, 400, "validation_error", "invalid_parameter", "permissions[0]"},
		{"allowed_ips zone", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","allowed_ips":["10.0.0.1","fe80::1%eth0"]}`}, 400, "validation_error", "invalid_parameter", "allowed_ips[1]"},
		{"allowed_ips /0", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","allowed_ips":["0.0.0.0/0"]}`}, 400, "validation_error", "invalid_parameter", "allowed_ips[0]"},
		{"allowed_ips /129", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","allowed_ips":["::/129"]}`}, 400, "validation_error", "invalid_parameter", "allowed_ips[0]"},
		{"allowed_ips thousands", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","allowed_ips":[` + strings.TrimSuffix(strings.Repeat(`"10.0.0.1",`, 2000), ",") + `]}`}, 400, "validation_error", "invalid_parameter", "allowed_ips"},
		{"rate_limit as string", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","rate_limit":"60"}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"rate_limit fraction", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","rate_limit":1.5}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"rate_limit exponent", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","rate_limit":1e3}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"rate_limit huge", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","rate_limit":123456789012345678901234567890}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"rate_limit over max", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","rate_limit":9223372036854775807}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"rate_limit zero", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","rate_limit":0}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"rate_limit negative", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","rate_limit":-9223372036854775808}`}, 400, "validation_error", "invalid_parameter", "rate_limit"},
		{"expires_at date only", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","expires_at":"2031-01-01"}`}, 400, "validation_error", "invalid_parameter", "expires_at"},
		{"expires_at unix", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","expires_at":1924992000}`}, 400, "validation_error", "invalid_parameter", "expires_at"},
		{"expires_at no zone", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","expires_at":"2031-01-01T00:00:00"}`}, 400, "validation_error", "invalid_parameter", "expires_at"},
		{"expires_at year 10000", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","expires_at":"10000-01-01T00:00:00Z"}`}, 400, "validation_error", "invalid_parameter", "expires_at"},
		{"expires_at past", request{headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","expires_at":"2001-01-01T00:00:00Z"}`}, 400, "validation_error", "invalid_parameter", "expires_at"},
		{"idempotency key 9 chars", request{headers: withIdem("123456789"), body: okBody}, 400, "validation_error", "invalid_parameter", "Idempotency-Key"},
		{"idempotency key 256 chars", request{headers: withIdem(strings.Repeat("k", 256)), body: okBody}, 400, "validation_error", "invalid_parameter", "Idempotency-Key"},
		{"idempotency key bad chars", request{headers: withIdem("key with spaces!"), body: okBody}, 400, "validation_error", "invalid_parameter", "Idempotency-Key"},
		{"idempotency key empty", request{headers: withIdem(""), body: okBody}, 400, "validation_error", "invalid_parameter", "Idempotency-Key"},
		{"two idempotency keys", request{headers: withIdem("aaaaaaaaaa", "bbbbbbbbbb"), body: okBody}, 400, "validation_error", "invalid_parameter", "Idempotency-Key"},
		{"DELETE the collection", request{method: http.MethodDelete, headers: jsonHeaders(e.admin)}, 405, "validation_error", "invalid_request", ""},
		{"PUT", request{method: http.MethodPut, headers: jsonHeaders(e.admin), body: okBody}, 405, "validation_error", "invalid_request", ""},
		{"unknown path", request{path: "/developers/nothing", headers: jsonHeaders(e.admin), body: okBody}, 404, "not_found_error", "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.store.creates.Load()
			rec := serve(h, tt.req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			d := envelope(t, rec)
			if d.Type != tt.typ || d.Code != tt.code || d.Param != tt.param {
				t.Fatalf("got %s/%s param %q, want %s/%s param %q: %s", d.Type, d.Code, d.Param, tt.typ, tt.code, tt.param, d.Message)
			}
			if n := e.store.creates.Load() - before; n != 0 {
				t.Fatalf("a refused request stored %d keys", n)
			}
			for _, k := range []string{e.admin, e.live, e.readOnly, e.narrow, e.revoked, e.ipBound} {
				if strings.Contains(rec.Body.String(), k[9:]) {
					t.Fatal("the response echoes a key")
				}
			}
			if tt.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tt.status == 405 && rec.Header().Get("Allow") != "GET, POST" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// A body of exactly the limit is read (and then judged on its content).
	if rec := serve(h, request{headers: jsonHeaders(e.admin), body: exact}); rec.Code != http.StatusCreated {
		t.Fatalf("a body of exactly 64 KiB: %d %s", rec.Code, rec.Body)
	}
	// One byte more (a space, so the JSON stays valid) is over it.
	over := exact[:len(exact)-1] + " }"
	if rec := serve(h, request{headers: jsonHeaders(e.admin), body: over}); rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body of 64 KiB and one byte: %d %s", rec.Code, rec.Body)
	}
}

func TestCreateEndpointAccepts(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	for name, r := range map[string]request{
		"lowercase bearer":       {headers: map[string][]string{"Authorization": {"bearer " + e.admin}, "Content-Type": {"application/json"}}, body: okBody},
		"charset utf-8":          {headers: map[string][]string{"Authorization": bearer(e.admin), "Content-Type": {"application/json; charset=UTF-8"}}, body: okBody},
		"name of 200 characters": {headers: jsonHeaders(e.admin), body: `{"name":"` + strings.Repeat("é", 200) + `","environment":"test"}`},
		"live key creates live":  {headers: jsonHeaders(e.live), body: `{"name":"a","environment":"live"}`},
		"office key from office": {headers: jsonHeaders(e.ipBound), body: okBody, remote: "203.0.113.9:1234"},
		"fractional expiry":      {headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","expires_at":"2031-01-01T00:00:00.123456789+02:00"}`},
	} {
		t.Run(name, func(t *testing.T) {
			if rec := serve(h, r); rec.Code != http.StatusCreated {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestCreateEndpointIdempotency(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	hd := jsonHeaders(e.admin)
	hd["Idempotency-Key"] = []string{"order-7f3a-retry"}
	first := serve(h, request{headers: hd, body: okBody})
	second := serve(h, request{headers: hd, body: "\n" + okBody + "  "})
	if first.Code != 201 || second.Code != 201 {
		t.Fatalf("%d %d", first.Code, second.Code)
	}
	if first.Body.String() != second.Body.String() || second.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay differs:\n%s\n%s", first.Body, second.Body)
	}
	conflict := serve(h, request{headers: hd, body: `{"name":"other","environment":"test"}`})
	if conflict.Code != http.StatusConflict {
		t.Fatalf("status %d", conflict.Code)
	}
	if d := envelope(t, conflict); d.Type != "idempotency_error" {
		t.Fatalf("type %q", d.Type)
	}
	// Another caller with the same idempotency key gets its own key.
	hd2 := jsonHeaders(e.narrow)
	hd2["Idempotency-Key"] = hd["Idempotency-Key"]
	other := serve(h, request{headers: hd2, body: okBody})
	if other.Code != 201 || other.Body.String() == first.Body.String() {
		t.Fatalf("idempotency leaked across callers: %d", other.Code)
	}
}

func TestCreateEndpointRateLimitHeaders(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	for i := range 3 {
		rec := serve(h, request{headers: jsonHeaders(e.limited), body: okBody})
		if rec.Code != 201 || rec.Header().Get("X-RateLimit-Remaining") != string(rune('2'-i)) {
			t.Fatalf("request %d: %d remaining %q", i+1, rec.Code, rec.Header().Get("X-RateLimit-Remaining"))
		}
	}
	rec := serve(h, request{headers: jsonHeaders(e.limited), body: okBody})
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "20" {
		t.Fatalf("%d Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestCustomAuthenticator(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m, httpadapter.WithLogger(slog.New(slog.DiscardHandler)), httpadapter.WithAuthenticator(func(r *http.Request) (keys.Principal, error) {
		switch r.Header.Get("X-Session") {
		case "dash-admin":
			return keys.Principal{AccountID: "acct_dash", Subject: "user_1", Permissions: keys.DefaultVocabulary()}, nil
		case "db-down":
			return keys.Principal{}, keys.ErrUnavailable
		case "weird":
			return keys.Principal{}, errors.New("session backend said no")
		}
		return keys.Principal{}, keys.ErrInvalidKey
	}))
	rec := serve(h, request{headers: map[string][]string{"X-Session": {"dash-admin"}, "Content-Type": {"application/json"}}, body: `{"name":"a","environment":"live"}`})
	if rec.Code != 201 {
		t.Fatalf("dashboard user: %d %s", rec.Code, rec.Body)
	}
	var c keys.APIKeyCreated
	_ = json.Unmarshal(rec.Body.Bytes(), &c)
	if v, err := e.m.Verify(context.Background(), string(c.Key)); err != nil || v.AccountID != "acct_dash" {
		t.Fatalf("key not in the dashboard user's account: %v", err)
	}
	for session, status := range map[string]int{"": 401, "db-down": 503, "weird": 401} {
		rec := serve(h, request{headers: map[string][]string{"X-Session": {session}, "Content-Type": {"application/json"}, "Authorization": bearer(e.admin)}, body: okBody})
		if rec.Code != status {
			t.Fatalf("session %q: %d, want %d", session, rec.Code, status)
		}
		envelope(t, rec)
	}
}

func TestStoreOutageIs503(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	h := httpadapter.New(e.m, httpadapter.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	e.store.down.Store(true)
	rec := serve(h, request{headers: jsonHeaders(e.admin), body: okBody})
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d: an outage must not read as a bad key", rec.Code)
	}
	d := envelope(t, rec)
	if d.Type != "api_error" || strings.Contains(d.Message, "EOF") {
		t.Fatalf("internal detail leaked or wrong type: %+v", d)
	}
	// The cause is in the server log, under the request ID, without the key.
	if !strings.Contains(logs.String(), d.RequestID) || !strings.Contains(logs.String(), "EOF") || strings.Contains(logs.String(), e.admin[9:]) {
		t.Fatalf("server log: %s", logs.String())
	}
}

func TestDecodeCreate(t *testing.T) {
	req, err := httpadapter.DecodeCreate([]byte(`{"name":"n","environment":"live","permissions":["a:b"],"allowed_ips":["1.2.3.4"],"rate_limit":7,"expires_at":"2031-02-03T04:05:06Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if req.Name != "n" || req.Environment != keys.Live || req.Permissions[0] != "a:b" || req.AllowedIPs[0] != "1.2.3.4" || *req.RateLimit != 7 || !req.ExpiresAt.Equal(time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Fatalf("%+v", req)
	}
}

// FuzzDecodeCreate: the decoder never panics, and what it accepts
// re-encodes to an equivalent request.
func FuzzDecodeCreate(f *testing.F) {
	f.Add([]byte(okBody))
	f.Add([]byte(`{"name":"a","rate_limit":1e999,"expires_at":"2031-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"name":"a","name":"b"}`))
	f.Add([]byte(`[{}]`))
	f.Add([]byte(`{"name":"a","environment":"test","credits":{"remaining":5,"refill":{"interval":"daily","amount":9}}}`))
	f.Add([]byte(`{"credits":{}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := httpadapter.DecodeCreate(body)
		if err != nil {
			return
		}
		again, err := httpadapter.DecodeCreate(mustJSON(t, req))
		if err != nil {
			t.Fatalf("re-decoding an accepted request failed: %v", err)
		}
		if again.Name != req.Name || again.Environment != req.Environment || len(again.Permissions) != len(req.Permissions) ||
			string(mustJSON(t, again.Credits)) != string(mustJSON(t, req.Credits)) {
			t.Fatalf("round trip changed the request")
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A key without developers:write is refused before its rate limit is spent.
func TestForbiddenCreateDoesNotSpendRateLimit(t *testing.T) {
	e := newEnv(t)
	c, err := e.m.Create(context.Background(), keys.APIKeyCreate{Name: "r", Environment: keys.Test, AccountID: "acct_a", Permissions: []string{"identity:read"}, RateLimit: intp(1)})
	if err != nil {
		t.Fatal(err)
	}
	h := httpadapter.New(e.m)
	for i := range 3 {
		if rec := serve(h, request{headers: jsonHeaders(string(c.Key)), body: okBody}); rec.Code != http.StatusForbidden {
			t.Fatalf("attempt %d: %d", i+1, rec.Code)
		}
	}
	if _, err := e.m.Verify(context.Background(), string(c.Key)); err != nil {
		t.Fatalf("refused creates spent the limit: %v", err)
	}
}

// An account's requests to the key endpoints are limited, all its keys
// together, so that one account cannot create keys (or entries) as fast as
// the machine allows; other accounts are not affected.
func TestManagementLimitPerAccount(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m, httpadapter.WithManagementLimit(5))
	list := func(key string) *httptest.ResponseRecorder {
		return serve(h, request{method: "GET", path: "/developers/keys", headers: map[string][]string{"Authorization": bearer(key)}})
	}
	// Two keys of acct_a share the account's 5 a minute.
	for i, key := range []string{e.admin, e.live, e.admin, e.live, e.admin} {
		if rec := list(key); rec.Code != 200 {
			t.Fatalf("request %d: %d", i+1, rec.Code)
		}
	}
	rec := serve(h, request{headers: jsonHeaders(e.live), body: okBody})
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || envelope(t, rec).Code != "rate_limit_exceeded" {
		t.Fatalf("6th request of the account: %d %s", rec.Code, rec.Body)
	}
	if e.store.creates.Load() != e.created {
		t.Fatal("a refused create stored a key")
	}
	if rec := list(e.stranger); rec.Code != 200 {
		t.Fatalf("another account was limited too: %d", rec.Code)
	}
	// The limit is counted in the Manager's limiter, not the adapter's
	// memory: two adapters (as two instances on one redislimit) share it.
	other := httpadapter.New(e.m, httpadapter.WithManagementLimit(5))
	if rec := serve(other, request{method: "GET", path: "/developers/keys", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 429 {
		t.Fatalf("the account's 6th request, through another adapter: %d", rec.Code)
	}
	// The default is generous: scripted provisioning is never refused.
	fresh := newEnv(t)
	d := httpadapter.New(fresh.m)
	for i := range 300 {
		rec := serve(d, request{method: "GET", path: "/developers/keys", headers: map[string][]string{"Authorization": bearer(fresh.admin)}})
		if rec.Code != 200 {
			t.Fatalf("request %d under the default limit: %d", i+1, rec.Code)
		}
	}
}

// Over HTTP, a create beyond the account's active-key limit is a 403
// key_limit_reached in the envelope.
func TestKeyLimitOverHTTP(t *testing.T) {
	m, err := keys.New(memstoreNew(), keys.WithMaxKeysPerAccount(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	admin, err := m.Create(context.Background(), keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_full"})
	if err != nil {
		t.Fatal(err)
	}
	rec := serve(httpadapter.New(m), request{headers: jsonHeaders(string(admin.Key)), body: okBody})
	if d := envelope(t, rec); rec.Code != 403 || d.Type != "authorization_error" || d.Code != "key_limit_reached" {
		t.Fatalf("%d %+v", rec.Code, d)
	}
}

// The key endpoints are counted in usage, each under its own pattern,
// priced at zero (no price names them), and never refused by the plan's
// quotas or the key's credits, so that the owner of a leaked or spent key
// can always revoke it; usage reads have a lower limit of their own.
// (They were not counted at all, and a free-plan account read 2,879 usage
// series in 6 s.)
func TestKeyEndpointsAreCountedNotCharged(t *testing.T) {
	e := newEnv(t, keys.WithPlans(func(context.Context, string) (keys.Plan, error) {
		return keys.Plan{Name: "tiny", PerMinute: 3, PerDay: 3}, nil
	}, time.Minute), keys.WithPrices("USD", map[string]string{"GET /v1/ping": "0.01"}))
	ctx := context.Background()
	spent, err := e.m.Create(ctx, keys.APIKeyCreate{Name: "spent", Environment: keys.Test, AccountID: "acct_c",
		Permissions: keys.DefaultVocabulary(), Credits: &credits.Budget{Remaining: 0}})
	if err != nil {
		t.Fatal(err)
	}
	h := httpadapter.New(e.m, httpadapter.WithUsageReadLimit(3))
	get := func(path string) int {
		return serve(h, request{method: "GET", path: path, headers: map[string][]string{"Authorization": bearer(string(spent.Key))}}).Code
	}
	for i := range 5 { // over the plan's 3 a minute and 3 a day, with no credits
		if code := get("/developers/keys"); code != 200 {
			t.Fatalf("list %d: %d", i+1, code)
		}
	}
	for i := range 3 {
		if code := get("/developers/usage"); code != 200 {
			t.Fatalf("usage read %d: %d", i+1, code)
		}
	}
	rec := serve(h, request{method: "GET", path: "/developers/usage", headers: map[string][]string{"Authorization": bearer(string(spent.Key))}})
	if rec.Code != 429 || envelope(t, rec).Limit != "management" {
		t.Fatalf("a 4th usage read in the minute: %d %s", rec.Code, rec.Body)
	}
	if err := e.m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sum, err := e.m.UsageSummary(ctx, "acct_c", usage.Filter{Start: e.clock.Now().Truncate(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	lists, reads := sum.ByAPI["GET /developers/keys"], sum.ByAPI["GET /developers/usage"]
	if lists.Successful != 5 || reads.Successful != 3 || reads.RateLimitHits != 1 || sum.EstimatedCost.Amount != "0" {
		t.Fatalf("usage of the key endpoints: lists %+v, usage reads %+v, cost %v", lists, reads, sum.EstimatedCost)
	}
}
