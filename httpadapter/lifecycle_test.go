package httpadapter_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
)

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	return v
}

func newKey(t *testing.T, h http.Handler, caller, body string) keys.APIKeyCreated {
	t.Helper()
	rec := serve(h, request{headers: jsonHeaders(caller), body: body})
	if rec.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	return decode[keys.APIKeyCreated](t, rec)
}

func authOnly(key string) map[string][]string {
	return map[string][]string{"Authorization": bearer(key)}
}

func TestLifecycleEndpoints(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	mw := httpadapter.New(e.m).Middleware()(whoami)
	k := newKey(t, h, e.admin, `{"name":"svc","environment":"test","permissions":["identity:read"],"rate_limit":10}`)
	path := "/developers/keys/" + k.ID

	// get
	rec := serve(h, request{method: "GET", path: path, headers: authOnly(e.readOnly)})
	if got := decode[map[string]any](t, rec); rec.Code != 200 || got["id"] != k.ID || got["key"] != nil {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	// list
	rec = serve(h, request{method: "GET", path: "/developers/keys?limit=2", headers: authOnly(e.readOnly)})
	page := decode[keys.KeyList](t, rec)
	if rec.Code != 200 || len(page.Data) != 2 || !page.HasMore || page.NextCursor == "" {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	seen := 0
	for cursor := ""; ; {
		rec := serve(h, request{method: "GET", path: "/developers/keys?limit=3&cursor=" + cursor, headers: authOnly(e.readOnly)})
		p := decode[keys.KeyList](t, rec)
		seen += len(p.Data)
		for _, item := range p.Data {
			if strings.Contains(rec.Body.String(), `"key"`) || item.ID == "" {
				t.Fatal("a list shows a secret")
			}
		}
		if !p.HasMore {
			break
		}
		cursor = p.NextCursor
	}
	// acct_a has 7 keys from setup and the new one; the reader is a test
	// key, so the live admin key is not its to see.
	if seen != 7 {
		t.Fatalf("paged through %d keys, want 7", seen)
	}
	// update
	rec = serve(h, request{method: "PATCH", path: path, headers: jsonHeaders(e.admin), body: `{"name":"renamed","rate_limit":null,"allowed_ips":["203.0.113.0/24"]}`})
	got := decode[map[string]any](t, rec)
	if rec.Code != 200 || got["name"] != "renamed" || got["rate_limit"] != nil || got["allowed_ips"].([]any)[0] != "203.0.113.0/24" {
		t.Fatalf("patch: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(mw, request{method: "GET", headers: authOnly(string(k.Key)), remote: "198.51.100.1:1"}); rec.Code != 401 {
		t.Fatalf("the new allowlist does not hold: %d", rec.Code)
	}
	// roll with grace, idempotently
	rollHdr := jsonHeaders(e.admin)
	rollHdr["Idempotency-Key"] = []string{"roll-http-0001"}
	rec = serve(h, request{path: path + "/roll", headers: rollHdr, body: `{"grace_period_seconds":3600}`})
	if rec.Code != http.StatusCreated {
		t.Fatalf("roll: %d %s", rec.Code, rec.Body)
	}
	rolled := decode[keys.APIKeyCreated](t, rec)
	if again := serve(h, request{path: path + "/roll", headers: rollHdr, body: `{"grace_period_seconds":3600}`}); again.Body.String() != rec.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("roll retry: %d %s", again.Code, again.Body)
	}
	office := "203.0.113.5:1"
	for _, key := range []string{string(k.Key), string(rolled.Key)} {
		if rec := serve(mw, request{method: "GET", headers: authOnly(key), remote: office}); rec.Code != 200 {
			t.Fatalf("during the grace period: %d", rec.Code)
		}
	}
	e.clock.Advance(time.Hour)
	if rec := serve(mw, request{method: "GET", headers: authOnly(string(k.Key)), remote: office}); rec.Code != 401 || envelope(t, rec).Code != "key_revoked" {
		t.Fatalf("old key after the grace period: %d", rec.Code)
	}
	// revoke: effective at once, idempotent
	rpath := "/developers/keys/" + rolled.ID
	rec = serve(h, request{method: "DELETE", path: rpath, headers: authOnly(e.admin)})
	if got := decode[map[string]any](t, rec); rec.Code != 200 || got["revoked_at"] == nil {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(mw, request{method: "GET", headers: authOnly(string(rolled.Key)), remote: office}); rec.Code != 401 || envelope(t, rec).Code != "key_revoked" {
		t.Fatalf("revoked key: %d", rec.Code)
	}
	if again := serve(h, request{method: "DELETE", path: rpath, headers: authOnly(e.admin)}); again.Code != 200 || again.Body.String() != rec.Body.String() {
		t.Fatalf("second delete: %d %s", again.Code, again.Body)
	}
	// an empty roll body is a grace period of 0
	k2 := newKey(t, h, e.admin, `{"name":"k2","environment":"test"}`)
	if rec := serve(h, request{path: "/developers/keys/" + k2.ID + "/roll", headers: authOnly(e.admin)}); rec.Code != 201 {
		t.Fatalf("roll without a body: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(mw, request{method: "GET", headers: authOnly(string(k2.Key))}); rec.Code != 401 {
		t.Fatalf("grace 0: the old key still works: %d", rec.Code)
	}
}

func TestLifecycleEndpointErrors(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	k := newKey(t, h, e.admin, `{"name":"svc","environment":"test","permissions":["identity:read"]}`)
	liveKey := newKey(t, h, e.live, `{"name":"live one","environment":"live"}`)
	path := "/developers/keys/" + k.ID
	tests := []struct {
		name   string
		req    request
		status int
		code   string
		param  string
	}{
		{"other account: get", request{method: "GET", path: path, headers: authOnly(e.stranger)}, 404, "not_found", ""},
		{"other account: patch", request{method: "PATCH", path: path, headers: jsonHeaders(e.stranger), body: `{"name":"x"}`}, 404, "not_found", ""},
		{"other account: delete", request{method: "DELETE", path: path, headers: authOnly(e.stranger)}, 404, "not_found", ""},
		{"other account: roll", request{path: path + "/roll", headers: authOnly(e.stranger)}, 404, "not_found", ""},
		{"test key: live key", request{method: "DELETE", path: "/developers/keys/" + liveKey.ID, headers: authOnly(e.admin)}, 404, "not_found", ""},
		{"unknown id", request{method: "GET", path: "/developers/keys/key_nope", headers: authOnly(e.admin)}, 404, "not_found", ""},
		{"list without developers:read", request{method: "GET", path: "/developers/keys", headers: authOnly(e.narrow)}, 403, "forbidden", ""},
		{"delete without developers:write", request{method: "DELETE", path: path, headers: authOnly(e.readOnly)}, 403, "forbidden", ""},
		{"no key", request{method: "GET", path: path}, 401, "unauthorized", ""},
		{"list limit 0", request{method: "GET", path: "/developers/keys?limit=0", headers: authOnly(e.admin)}, 400, "invalid_parameter", "limit"},
		{"list limit 101", request{method: "GET", path: "/developers/keys?limit=101", headers: authOnly(e.admin)}, 400, "invalid_parameter", "limit"},
		{"list limit word", request{method: "GET", path: "/developers/keys?limit=ten", headers: authOnly(e.admin)}, 400, "invalid_parameter", "limit"},
		{"list two limits", request{method: "GET", path: "/developers/keys?limit=1&limit=2", headers: authOnly(e.admin)}, 400, "invalid_parameter", "limit"},
		{"list bad cursor", request{method: "GET", path: "/developers/keys?cursor=%25%25", headers: authOnly(e.admin)}, 400, "invalid_parameter", "cursor"},
		{"list bad revoked", request{method: "GET", path: "/developers/keys?revoked=yes", headers: authOnly(e.admin)}, 400, "invalid_parameter", "revoked"},
		{"list bad environment", request{method: "GET", path: "/developers/keys?environment=prod", headers: authOnly(e.admin)}, 400, "invalid_parameter", "environment"},
		{"list unknown parameter", request{method: "GET", path: "/developers/keys?account=acct_b", headers: authOnly(e.admin)}, 400, "invalid_parameter", "account"},
		{"patch clears name", request{method: "PATCH", path: path, headers: jsonHeaders(e.admin), body: `{"name":null}`}, 400, "invalid_parameter", "name"},
		{"patch environment", request{method: "PATCH", path: path, headers: jsonHeaders(e.admin), body: `{"environment":"live"}`}, 400, "invalid_parameter", "environment"},
		{"patch unknown field", request{method: "PATCH", path: path, headers: jsonHeaders(e.admin), body: `{"key":"x"}`}, 400, "invalid_parameter", "key"},
		{"patch bad ip", request{method: "PATCH", path: path, headers: jsonHeaders(e.admin), body: `{"allowed_ips":["x"]}`}, 400, "invalid_parameter", "allowed_ips[0]"},
		{"patch not JSON", request{method: "PATCH", path: path, headers: authOnly(e.admin), body: `{"name":"x"}`}, 415, "invalid_request", ""},
		{"patch escalates", request{method: "PATCH", path: path, headers: jsonHeaders(e.narrow), body: `{"permissions":["kyb:write"]}`}, 403, "forbidden", "permissions[0]"},
		{"roll grace too long", request{path: path + "/roll", headers: jsonHeaders(e.admin), body: `{"grace_period_seconds":604801}`}, 400, "invalid_parameter", "grace_period_seconds"},
		{"roll grace negative", request{path: path + "/roll", headers: jsonHeaders(e.admin), body: `{"grace_period_seconds":-1}`}, 400, "invalid_parameter", "grace_period_seconds"},
		{"roll grace string", request{path: path + "/roll", headers: jsonHeaders(e.admin), body: `{"grace_period_seconds":"60"}`}, 400, "invalid_parameter", "grace_period_seconds"},
		{"roll unknown field", request{path: path + "/roll", headers: jsonHeaders(e.admin), body: `{"grace":60}`}, 400, "invalid_parameter", "grace"},
		{"roll bad idempotency key", request{path: path + "/roll", headers: map[string][]string{"Authorization": bearer(e.admin), "Idempotency-Key": {"x"}}}, 400, "invalid_parameter", "Idempotency-Key"},
		{"roll a revoked key", request{path: "/developers/keys/" + keyIDOf(t, e, e.revoked) + "/roll", headers: authOnly(e.admin)}, 400, "invalid_request", ""},
		{"PUT a key", request{method: "PUT", path: path, headers: jsonHeaders(e.admin), body: `{}`}, 405, "invalid_request", ""},
		{"GET a roll", request{method: "GET", path: path + "/roll", headers: authOnly(e.admin)}, 405, "invalid_request", ""},
		{"deeper path", request{method: "GET", path: path + "/roll/x", headers: authOnly(e.admin)}, 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(h, tt.req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if d := envelope(t, rec); d.Code != tt.code || d.Param != tt.param {
				t.Fatalf("code %q param %q, want %q %q: %s", d.Code, d.Param, tt.code, tt.param, d.Message)
			}
			if tt.status == 405 && rec.Header().Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// Nothing above changed the key.
	rec := serve(h, request{method: "GET", path: path, headers: authOnly(e.admin)})
	if got := decode[keys.APIKey](t, rec); got.Name != "svc" || got.RevokedAt != nil || len(got.Permissions) != 1 {
		t.Fatalf("a refused request changed the key: %s", rec.Body)
	}
}

// keyIDOf finds a key's ID through the whoami middleware.
func keyIDOf(t *testing.T, e *env, key string) string {
	t.Helper()
	v, err := e.m.Verify(t.Context(), key)
	if v.KeyID == "" {
		t.Fatalf("no record for key: %v", err)
	}
	return v.KeyID
}

// FuzzDecodeUpdate: the PATCH decoder never panics, and what it accepts is
// consistent: a cleared field carries no value.
func FuzzDecodeUpdate(f *testing.F) {
	f.Add([]byte(`{"name":"n","permissions":null,"allowed_ips":["10.0.0.0/8"],"rate_limit":null,"expires_at":"2031-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"environment":"live"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := httpadapter.DecodeUpdate(body)
		if err != nil {
			return
		}
		if (u.Name.Null && u.Name.Value != "") || (u.Permissions.Null && u.Permissions.Value != nil) ||
			(u.AllowedIPs.Null && u.AllowedIPs.Value != nil) || (u.RateLimit.Null && u.RateLimit.Value != 0) ||
			(u.ExpiresAt.Null && !u.ExpiresAt.Value.IsZero()) {
			t.Fatalf("a cleared field with a value: %+v", u)
		}
		if (u.Name.Null && !u.Name.Set) || (u.RateLimit.Null && !u.RateLimit.Set) {
			t.Fatal("null without set")
		}
	})
}
