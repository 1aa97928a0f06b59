package httpadapter_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/reqlog"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// whoami answers the verified key's ID, as the demo does.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	v, ok := keys.FromContext(r.Context())
	if !ok {
		http.Error(w, "no key in context", 500)
		return
	}
	w.Write([]byte(v.KeyID))
})

func TestMiddleware(t *testing.T) {
	e := newEnv(t)
	mw := httpadapter.New(e.m).Middleware()(whoami)
	get := func(hd map[string][]string, remote string) *httptest.ResponseRecorder {
		return serve(mw, request{method: http.MethodGet, path: "/whoami", headers: hd, remote: remote})
	}
	rec := get(map[string][]string{"Authorization": bearer(e.admin)}, "")
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "key_") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("X-RateLimit-Limit") != "" {
		t.Fatal("rate-limit headers for a key without a limit")
	}
	for name, tc := range map[string]struct {
		hd     map[string][]string
		remote string
		status int
		code   string
	}{
		"missing":     {nil, "", 401, "unauthorized"},
		"malformed":   {map[string][]string{"Authorization": bearer("txc_test_x")}, "", 401, "unauthorized"},
		"revoked":     {map[string][]string{"Authorization": bearer(e.revoked)}, "", 401, "key_revoked"},
		"ip":          {map[string][]string{"Authorization": bearer(e.ipBound)}, "192.0.2.1:1", 401, "ip_not_allowed"},
		"ip allowed":  {map[string][]string{"Authorization": bearer(e.ipBound)}, "203.0.113.4:1", 200, ""},
		"ipv6 peer":   {map[string][]string{"Authorization": bearer(e.ipBound)}, "[2001:db8::1]:443", 401, "ip_not_allowed"},
		"mapped peer": {map[string][]string{"Authorization": bearer(e.ipBound)}, "[::ffff:203.0.113.4]:443", 200, ""},
	} {
		t.Run(name, func(t *testing.T) {
			rec := get(tc.hd, tc.remote)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != 200 {
				if d := envelope(t, rec); d.Code != tc.code {
					t.Fatalf("code %q, want %q", d.Code, tc.code)
				}
			}
		})
	}
}

// Limit N: N successes with exact headers, then 429, then success once the
// interval has passed.
func TestMiddlewareRateLimitHeaders(t *testing.T) {
	e := newEnv(t)
	mw := httpadapter.New(e.m).Middleware()(whoami)
	start := e.clock.Now()
	call := func() *httptest.ResponseRecorder {
		return serve(mw, request{method: http.MethodGet, path: "/", headers: map[string][]string{"Authorization": bearer(e.limited)}})
	}
	for i := range 3 {
		rec := call()
		h := rec.Header()
		wantReset := strconv.FormatInt(start.Add(time.Duration(i+1)*20*time.Second).Unix(), 10)
		if rec.Code != 200 || h.Get("X-RateLimit-Limit") != "3" || h.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) ||
			h.Get("X-RateLimit-Window") != "60" || h.Get("X-RateLimit-Reset") != wantReset {
			t.Fatalf("request %d: %d %v (reset want %s)", i+1, rec.Code, h, wantReset)
		}
	}
	rec := call()
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("4th request: %d", rec.Code)
	}
	d := envelope(t, rec)
	if d.Type != "rate_limit_error" || d.Code != "rate_limit_exceeded" || d.RetryAfter == nil || *d.RetryAfter != 20 ||
		rec.Header().Get("Retry-After") != "20" || rec.Header().Get("X-RateLimit-Remaining") != "0" || rec.Header().Get("X-RateLimit-Limit") != "3" {
		t.Fatalf("429: %+v %v", d, rec.Header())
	}
	e.clock.Advance(20 * time.Second)
	if rec := call(); rec.Code != 200 || rec.Header().Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("after the interval: %d %v", rec.Code, rec.Header())
	}
	e.clock.Advance(time.Minute)
	if rec := call(); rec.Code != 200 || rec.Header().Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("after the window: %d %v", rec.Code, rec.Header())
	}
}

func TestMiddlewarePermissions(t *testing.T) {
	e := newEnv(t)
	a := httpadapter.New(e.m)
	guarded := a.Middleware("kyb:write")(whoami)
	if rec := serve(guarded, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.readOnly)}}); rec.Code != 403 || envelope(t, rec).Code != "forbidden" {
		t.Fatalf("%d", rec.Code)
	}
	if rec := serve(guarded, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 200 {
		t.Fatalf("%d", rec.Code)
	}
	// Nested behind a plain Middleware, the guard checks the key already
	// verified.
	route := a.Middleware()(a.Middleware("identity:read", "kyb:read")(whoami))
	if rec := serve(route, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.narrow)}}); rec.Code != 403 || envelope(t, rec).Code != "forbidden" {
		t.Fatalf("%d", rec.Code)
	}
	if rec := serve(route, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 200 {
		t.Fatalf("%d", rec.Code)
	}
	env := httpadapter.New(e.m, httpadapter.WithEnvironment(keys.Live)).Middleware()(whoami)
	if rec := serve(env, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 401 {
		t.Fatalf("test key on a live-only route: %d", rec.Code)
	}
	if rec := serve(env, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.live)}}); rec.Code != 200 {
		t.Fatalf("live key: %d", rec.Code)
	}
	// Nested on a live-only adapter: the inner guard holds the key the
	// outer one verified to the environment too.
	liveOnly := httpadapter.New(e.m, httpadapter.WithEnvironment(keys.Live))
	nestedEnv := liveOnly.Middleware()(liveOnly.Middleware()(whoami))
	if rec := serve(nestedEnv, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.live)}}); rec.Code != 200 {
		t.Fatalf("live key, nested on a live-only adapter: %d", rec.Code)
	}
	inner := liveOnly.Middleware()(whoami)
	outer := a.Middleware()(inner) // the outer adapter takes any environment
	if rec := serve(outer, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 401 {
		t.Fatalf("test key reaching a live-only guard behind another: %d", rec.Code)
	}
	// A permission no key can hold is a mistake found at construction.
	defer func() {
		if recover() == nil {
			t.Fatal("Middleware accepted a permission outside the vocabulary")
		}
	}()
	a.Middleware("nosuch:thing")
}

// A refused permission spends no rate limit, and a key behind two
// Middlewares is counted once.
func TestMiddlewareSpendsTheLimitOnce(t *testing.T) {
	e := newEnv(t)
	a := httpadapter.New(e.m)
	call := func(h http.Handler) *httptest.ResponseRecorder {
		return serve(h, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.limited)}})
	}
	nested := a.Middleware()(a.Middleware("identity:read")(whoami))
	for i := range 3 { // limited holds 3 a minute
		if rec := call(nested); rec.Code != 200 {
			t.Fatalf("request %d behind two middlewares: %d (the limit was spent twice?)", i+1, rec.Code)
		}
	}
	if rec := call(nested); rec.Code != 429 {
		t.Fatalf("4th request: %d, want 429", rec.Code)
	}
	e.clock.Advance(time.Minute)
	denied := httpadapter.New(e.m, httpadapter.WithEnvironment(keys.Live)).Middleware()(whoami)
	for range 5 {
		if rec := call(denied); rec.Code != 401 || rec.Header().Get("X-RateLimit-Limit") != "" {
			t.Fatalf("refused key: %d, headers %v", rec.Code, rec.Header())
		}
	}
	if rec := call(nested); rec.Code != 200 || rec.Header().Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("refusals spent the limit: %d, remaining %q", rec.Code, rec.Header().Get("X-RateLimit-Remaining"))
	}
}

// One Adapter, one configuration: the authenticator, the request IDs and
// the logger apply to the endpoints, the middleware and its guards alike.
func TestOptionsApplyEverywhere(t *testing.T) {
	e := newEnv(t)
	denyAll := func(*http.Request) (keys.Principal, error) { return keys.Principal{}, keys.ErrInvalidKey }
	a := httpadapter.New(e.m, httpadapter.WithAuthenticator(denyAll), httpadapter.WithRequestID(func(*http.Request) string { return "req_host" }))
	for name, h := range map[string]http.Handler{"middleware": a.Middleware()(whoami), "guard": a.Middleware("kyb:read")(whoami), "endpoint": a} {
		rec := serve(h, request{method: "GET", path: "/developers/keys", headers: map[string][]string{"Authorization": bearer(e.admin)}})
		if rec.Code != 401 || envelope(t, rec).RequestID != "req_host" {
			t.Fatalf("%s let a valid key past a deny-all authenticator, or lost the request ID: %d %s", name, rec.Code, rec.Body)
		}
	}
	// A guard nested behind another adapter's middleware writes its 403
	// with its own adapter's request IDs.
	b := httpadapter.New(e.m, httpadapter.WithRequestID(func(*http.Request) string { return "req_b" }))
	rec := serve(b.Middleware()(b.Middleware("kyb:write")(whoami)), request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.readOnly)}})
	if rec.Code != 403 || envelope(t, rec).RequestID != "req_b" {
		t.Fatalf("guard: %d %s", rec.Code, rec.Body)
	}
	// An authenticated principal reaches the handler as the caller.
	dash := httpadapter.New(e.m, httpadapter.WithAuthenticator(func(*http.Request) (keys.Principal, error) {
		return keys.Principal{AccountID: "acct_a", Subject: "user_1", Environment: keys.Test, Permissions: []string{"kyb:read"}}, nil
	}))
	var got keys.Principal
	h := dash.Middleware("kyb:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := keys.FromContext(r.Context())
		got = v.Principal()
	}))
	if rec := serve(h, request{method: "GET"}); rec.Code != 200 || got.Subject != "user_1" || got.AccountID != "acct_a" || !got.Has("kyb:read") {
		t.Fatalf("%d, principal %+v", rec.Code, got)
	}
	if rec := serve(dash.Middleware("kyb:write")(whoami), request{method: "GET"}); rec.Code != 403 {
		t.Fatalf("principal without the permission: %d", rec.Code)
	}
}

// Options refuse what they cannot use when the Adapter is built, not on
// the first request that needs them.
func TestNilOptionsRefusedAtConstruction(t *testing.T) {
	e := newEnv(t)
	for name, opt := range map[string]httpadapter.Option{
		"nil option":           nil,
		"WithLogger(nil)":      httpadapter.WithLogger(nil),
		"WithRequestID(nil)":   httpadapter.WithRequestID(nil),
		"WithAuthenticator":    httpadapter.WithAuthenticator(nil),
		"WithMaxBodyBytes(0)":  httpadapter.WithMaxBodyBytes(0),
		"WithEnvironment(bad)": httpadapter.WithEnvironment("staging"),
		"invalid proxy":        httpadapter.WithTrustedProxies(netip.Prefix{}),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: New accepted it", name)
				}
			}()
			httpadapter.New(e.m, opt)
		}()
	}
}

// A host answers its own errors in the same envelope, and reads the client
// IP the adapter worked out.
func TestHostUsesWriteErrorAndClientIP(t *testing.T) {
	e := newEnv(t)
	proxy := netip.MustParsePrefix("10.0.0.0/8")
	a := httpadapter.New(e.m, httpadapter.WithTrustedProxies(proxy), httpadapter.WithRequestID(func(*http.Request) string { return "req_x" }))
	var ip netip.Addr
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip = a.ClientIP(r)
		a.WriteError(w, r, &httpadapter.Error{Status: 404, Type: httpadapter.TypeNotFound, Code: "report_not_found", Message: "no such report"})
	})
	rec := serve(h, request{method: "GET", remote: "10.1.2.3:5555", headers: map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}})
	d := envelope(t, rec)
	if rec.Code != 404 || d.Code != "report_not_found" || d.RequestID != "req_x" || ip != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("%d %+v, client IP %v", rec.Code, d, ip)
	}
	rec = serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.WriteError(w, r, keys.ErrUnavailable) }), request{method: "GET"})
	if rec.Code != 503 || envelope(t, rec).Code != "service_unavailable" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// The office key is allowed from 203.0.113.0/24 only.
func TestClientIPAndProxies(t *testing.T) {
	e := newEnv(t)
	proxy := netip.MustParsePrefix("10.0.0.0/8")
	plain := httpadapter.New(e.m).Middleware()(whoami)
	xff := httpadapter.New(e.m, httpadapter.WithTrustedProxies(proxy)).Middleware()(whoami)
	fwd := httpadapter.New(e.m, httpadapter.WithTrustedProxies(proxy), httpadapter.WithForwardedHeader()).Middleware()(whoami)
	auth := func(extra map[string]string) map[string][]string {
		hd := map[string][]string{"Authorization": bearer(e.ipBound)}
		for k, v := range extra {
			hd[k] = []string{v}
		}
		return hd
	}
	tests := []struct {
		name   string
		h      http.Handler
		remote string
		hd     map[string]string
		want   int
	}{
		{"spoofed XFF, no trusted proxies", plain, "192.0.2.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5"}, 401},
		{"spoofed XFF from an untrusted peer", xff, "192.0.2.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5"}, 401},
		{"spoofed Forwarded from an untrusted peer", fwd, "192.0.2.1:1", map[string]string{"Forwarded": "for=203.0.113.5"}, 401},
		{"trusted proxy forwards office client", xff, "10.1.1.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5"}, 200},
		{"trusted proxy forwards outside client", xff, "10.1.1.1:1", map[string]string{"X-Forwarded-For": "192.0.2.9"}, 401},
		{"client prepends a spoof; proxy appends the truth", xff, "10.1.1.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5, 192.0.2.9"}, 401},
		{"two trusted hops", xff, "10.1.1.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5, 10.2.2.2"}, 200},
		{"spoof behind two hops", xff, "10.1.1.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5, 192.0.2.9, 10.2.2.2"}, 401},
		{"garbage in the trusted part fails closed", xff, "10.1.1.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5, not-an-ip"}, 401},
		{"proxy with no header is the client", xff, "10.1.1.1:1", nil, 401},
		{"Forwarded mode ignores XFF", fwd, "10.1.1.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5"}, 401},
		{"Forwarded with port", fwd, "10.1.1.1:1", map[string]string{"Forwarded": `for="203.0.113.5:4711";proto=https`}, 200},
		{"Forwarded IPv6", fwd, "10.1.1.1:1", map[string]string{"Forwarded": `for="[2001:db8::1]:4711"`}, 401},
		{"Forwarded spoof then truth", fwd, "10.1.1.1:1", map[string]string{"Forwarded": "for=203.0.113.5, for=192.0.2.9"}, 401},
		{"Forwarded unknown", fwd, "10.1.1.1:1", map[string]string{"Forwarded": "for=unknown"}, 401},
		{"XFF mode ignores Forwarded", xff, "10.1.1.1:1", map[string]string{"Forwarded": "for=203.0.113.5"}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(tt.h, request{method: "GET", remote: tt.remote, headers: auth(tt.hd)})
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc":        "abc",
		"bearer abc":        "abc",
		"BEARER abc":        "abc",
		"Bearer   abc":      "abc",
		"Bearer a.b-c_~+/=": "a.b-c_~+/=",
		"Bearer":            "",
		"Bearer ":           "",
		"Basic abc":         "",
		"Bearerabc":         "",
		"Bearer a b":        "",
		"Bearer a\tb":       "",
		"Bearer a\x00b":     "",
		"Bearer é":          "",
		"Token abc":         "",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{header}
		got, err := httpadapter.BearerToken(r)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("%q: got %q, %v", header, got, err)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["Authorization"] = []string{"Bearer " + strings.Repeat("a", 257)}
	if _, err := httpadapter.BearerToken(r); err == nil {
		t.Error("an over-long token was accepted")
	}
}

func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer txc_live_abc")
	f.Add("bearer  x")
	f.Add("Basic Zm9vOmJhcg==")
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Authorization"] = []string{header}
		tok, err := httpadapter.BearerToken(r)
		if err != nil {
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") || len(tok) > 256 || !strings.HasSuffix(header, tok) {
			t.Fatalf("accepted %q from %q", tok, header)
		}
		if !strings.EqualFold(header[:7], "Bearer ") {
			t.Fatalf("accepted scheme of %q", header)
		}
	})
}

// BenchmarkMiddleware compares an empty handler behind the middleware with
// the bare handler, both through httptest: "bare" writes no header,
// "bare-header" one (as a handler that answers anything does, so the
// response's header map exists); "middleware-nolog" is the middleware
// with the request log off (it still gives every response a Request-Id).
func BenchmarkMiddleware(b *testing.B) {
	newManager := func(opts ...keys.Option) (*keys.Manager, string) {
		m, err := keys.New(memstoreNew(), opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = m.Close(context.Background()) })
		c, err := m.Create(context.Background(), keys.APIKeyCreate{Name: "bench", Environment: keys.Live, AccountID: "acct_bench"})
		if err != nil {
			b.Fatal(err)
		}
		return m, string(c.Key)
	}
	empty := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	header := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Header()["Content-Type"] = []string{"text/plain"} })
	run := func(b *testing.B, h http.Handler, key string) {
		req := httptest.NewRequest("GET", "/ping", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, empty, "") })
	b.Run("bare-header", func(b *testing.B) { run(b, header, "") })
	b.Run("middleware", func(b *testing.B) {
		m, key := newManager()
		run(b, httpadapter.New(m).Middleware()(empty), key)
	})
	b.Run("middleware-nolog", func(b *testing.B) {
		m, key := newManager(keys.WithRequestLogs(reqlog.Config{Disabled: true}))
		run(b, httpadapter.New(m).Middleware()(empty), key)
	})
}

// A bearer token is at most 256 characters: one of exactly 256 is read
// (and then refused as an unknown key), one of 257 is a malformed header.
func TestBearerTokenLengthBoundary(t *testing.T) {
	e := newEnv(t)
	route := httpadapter.New(e.m).Middleware()(whoami)
	for n, want := range map[int]string{256: "invalid API key", 257: "malformed Authorization header"} {
		rec := serve(route, request{method: "GET", headers: map[string][]string{"Authorization": bearer(strings.Repeat("a", n))}})
		if d := envelope(t, rec); rec.Code != 401 || !strings.HasPrefix(d.Message, want) {
			t.Errorf("a token of %d characters: %d %q, want %q", n, rec.Code, d.Message, want)
		}
	}
}
