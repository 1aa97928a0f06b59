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

// Credits over HTTP: a key created with credits shows them; each request
// through the middleware spends its API's cost (keys.WithCreditCosts, by
// the route's API name; 1 otherwise)
// and reports what is left; a request the credits cannot pay for is a 402
// credits_error (not a 429), with retry_after only when a refill is due;
// PATCH sets and clears them; usage counts the 402 as failed.
func TestCreditsOverHTTP(t *testing.T) {
	e := newEnv(t, keys.WithCreditCosts(map[string]int64{"POST /identity/verify": 3, "GET /free": 0}))
	a := httpadapter.New(e.m)
	create := serve(a, request{headers: jsonHeaders(e.admin), body: `{"name":"metered","environment":"test","permissions":["identity:read"],
		"credits":{"remaining":5,"refill":null}}`})
	var k keys.APIKeyCreated
	if err := json.Unmarshal(create.Body.Bytes(), &k); err != nil || create.Code != 201 || k.Credits == nil || k.Credits.Remaining != 5 ||
		k.Credits.Refill != nil || strings.Contains(create.Body.String(), "refills_at") {
		t.Fatalf("create: %d %s", create.Code, create.Body)
	}
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	mux.Handle("POST /identity/verify", a.Middleware()(ok))
	mux.Handle("GET /free", a.Middleware()(ok))
	mux.Handle("GET /other", a.Middleware()(ok))
	call := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+string(k.Key))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	for _, c := range []struct {
		method, path string
		code         int
		left         string
	}{
		{"POST", "/identity/verify", 200, "2"},
		{"GET", "/other", 200, "1"},
		{"POST", "/identity/verify", 402, "1"}, // costs 3, 1 left: refused, nothing spent
		{"GET", "/free", 200, ""},              // free: passes, spends nothing, reports nothing
		{"GET", "/other", 200, "0"},
		{"GET", "/other", 402, "0"},
	} {
		rec := call(c.method, c.path)
		if rec.Code != c.code || rec.Header().Get("X-Credits-Remaining") != c.left {
			t.Fatalf("%s %s: %d, X-Credits-Remaining %q; want %d, %q (%s)", c.method, c.path, rec.Code, rec.Header().Get("X-Credits-Remaining"), c.code, c.left, rec.Body)
		}
		if rec.Code == 402 {
			d := envelope(t, rec)
			if d.Type != "credits_error" || d.Code != "credits_exhausted" || d.RetryAfter != nil || rec.Header().Get("Retry-After") != "" {
				t.Fatalf("402 without a refill: %+v %v", d, rec.Header())
			}
		}
	}

	// PATCH: a daily refill; the 402 now says when to retry.
	patch := serve(a, request{method: "PATCH", path: "/developers/keys/" + k.ID, headers: jsonHeaders(e.admin),
		body: `{"credits":{"remaining":0,"refill":{"interval":"daily","amount":10}}}`})
	var got keys.APIKey
	if err := json.Unmarshal(patch.Body.Bytes(), &got); err != nil || patch.Code != 200 || got.Credits == nil || got.Credits.RefillsAt == nil ||
		!got.Credits.RefillsAt.Equal(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("patch: %d %s", patch.Code, patch.Body)
	}
	e.clock.Advance(23 * time.Hour)
	rec := call("GET", "/other")
	if d := envelope(t, rec); rec.Code != 402 || d.RetryAfter == nil || *d.RetryAfter != 3600 || rec.Header().Get("Retry-After") != "3600" {
		t.Fatalf("402 an hour before the refill: %d %+v", rec.Code, d)
	}
	e.clock.Advance(time.Hour)
	if rec := call("GET", "/other"); rec.Code != 200 || rec.Header().Get("X-Credits-Remaining") != "9" {
		t.Fatalf("after the refill: %d %v", rec.Code, rec.Header())
	}
	clear := serve(a, request{method: "PATCH", path: "/developers/keys/" + k.ID, headers: jsonHeaders(e.admin), body: `{"credits":null}`})
	if clear.Code != 200 || strings.Contains(clear.Body.String(), `"credits"`) {
		t.Fatalf("clearing: %d %s", clear.Code, clear.Body)
	}
	if rec := call("GET", "/other"); rec.Code != 200 || rec.Header().Get("X-Credits-Remaining") != "" {
		t.Fatalf("without credits: %d %v", rec.Code, rec.Header())
	}
}

// Bad credits objects are 400s naming the field, and create nothing.
func TestCreditsDecoding(t *testing.T) {
	e := newEnv(t)
	a := httpadapter.New(e.m)
	for body, param := range map[string]string{
		`{"name":"x","environment":"test","credits":5}`:                                                                              "credits",
		`{"name":"x","environment":"test","credits":null}`:                                                                           "credits",
		`{"name":"x","environment":"test","credits":{}}`:                                                                             "credits.remaining",
		`{"name":"x","environment":"test","credits":{"remaining":"5"}}`:                                                              "credits.remaining",
		`{"name":"x","environment":"test","credits":{"remaining":1.5}}`:                                                              "credits.remaining",
		`{"name":"x","environment":"test","credits":{"remaining":-1}}`:                                                               "credits.remaining",
		`{"name":"x","environment":"test","credits":{"remaining":1000000000000001}}`:                                                 "credits.remaining",
		`{"name":"x","environment":"test","credits":{"remaining":99999999999999999999}}`:                                             "credits.remaining",
		`{"name":"x","environment":"test","credits":{"remaining":5,"extra":1}}`:                                                      "credits.extra",
		`{"name":"x","environment":"test","credits":{"remaining":5,"remaining":6}}`:                                                  "credits.remaining",
		`{"name":"x","environment":"test","credits":{"remaining":5,"refill":{"amount":1,"amount":2}}}`:                               "credits.refill.amount",
		`{"name":"x","environment":"test","credits":{"remaining":5,"refill":{"interval":"weekly","amount":5}}}`:                      "credits.refill.interval",
		`{"name":"x","environment":"test","credits":{"remaining":5,"refill":{"amount":5}}}`:                                          "credits.refill.interval",
		`{"name":"x","environment":"test","credits":{"remaining":5,"refill":{"interval":"daily"}}}`:                                  "credits.refill.amount",
		`{"name":"x","environment":"test","credits":{"remaining":5,"refill":{"interval":"daily","amount":0}}}`:                       "credits.refill.amount",
		`{"name":"x","environment":"test","credits":{"remaining":5,"refill":[]}}`:                                                    "credits.refill",
		`{"name":"x","environment":"test","credits":{"remaining":5,"refill":{"interval":"daily","amount":1,"at":1}}}`:                "credits.refill.at",
		`{"name":"x","environment":"test","credits":` + strings.Repeat(`{"refill":`, 5_000) + `1` + strings.Repeat(`}`, 5_000) + `}`: "credits.refill.refill",
	} {
		rec := serve(a, request{headers: jsonHeaders(e.admin), body: body})
		if d := envelope(t, rec); rec.Code != 400 || d.Param != param {
			t.Errorf("%s: %d %+v, want 400 on %s", body, rec.Code, d, param)
		}
	}
	if n := e.store.creates.Load(); n != e.created {
		t.Fatalf("refused creates stored %d keys", n-e.created)
	}
}
