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
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// whoami answers the verified key's ID, as the demo does.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	v, ok := keys.FromContext(r.Context())
	if !ok {
		http.Error(w, "no key in context", 500)
		return
	}
	w.Write([]byte(v.Key.ID))
})

func TestMiddleware(t *testing.T) {
	e := newEnv(t)
	mw := httpadapter.Middleware(e.m)(whoami)
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
	mw := httpadapter.Middleware(e.m)(whoami)
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

func TestRequirePermissions(t *testing.T) {
	e := newEnv(t)
	guarded := httpadapter.Middleware(e.m, httpadapter.RequirePermissions("kyb:write"))(whoami)
	if rec := serve(guarded, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.readOnly)}}); rec.Code != 403 {
		t.Fatalf("%d", rec.Code)
	}
	if rec := serve(guarded, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 200 {
		t.Fatalf("%d", rec.Code)
	}
	route := httpadapter.Middleware(e.m)(httpadapter.RequirePermission("identity:read", "kyb:read")(whoami))
	if rec := serve(route, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.narrow)}}); rec.Code != 403 || envelope(t, rec).Code != "forbidden" {
		t.Fatalf("%d", rec.Code)
	}
	if rec := serve(route, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 200 {
		t.Fatalf("%d", rec.Code)
	}
	bare := httpadapter.RequirePermission("identity:read")(whoami)
	if rec := serve(bare, request{method: "GET"}); rec.Code != 401 {
		t.Fatalf("RequirePermission without Middleware: %d", rec.Code)
	}
	env := httpadapter.Middleware(e.m, httpadapter.RequireEnvironment(keys.Live))(whoami)
	if rec := serve(env, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.admin)}}); rec.Code != 401 {
		t.Fatalf("test key on a live-only route: %d", rec.Code)
	}
	if rec := serve(env, request{method: "GET", headers: map[string][]string{"Authorization": bearer(e.live)}}); rec.Code != 200 {
		t.Fatalf("live key: %d", rec.Code)
	}
}

// The office key is allowed from 203.0.113.0/24 only.
func TestClientIPAndProxies(t *testing.T) {
	e := newEnv(t)
	proxy := netip.MustParsePrefix("10.0.0.0/8")
	plain := httpadapter.Middleware(e.m)(whoami)
	xff := httpadapter.Middleware(e.m, httpadapter.WithTrustedProxies(proxy))(whoami)
	fwd := httpadapter.Middleware(e.m, httpadapter.WithTrustedProxies(proxy), httpadapter.WithForwardedHeader())(whoami)
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
// the bare handler, both through httptest.
func BenchmarkMiddleware(b *testing.B) {
	m, err := keys.New(memstoreNew())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	c, err := m.Create(context.Background(), keys.APIKeyCreate{Name: "bench", Environment: keys.Live})
	if err != nil {
		b.Fatal(err)
	}
	empty := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	run := func(b *testing.B, h http.Handler) {
		req := httptest.NewRequest("GET", "/ping", nil)
		req.Header.Set("Authorization", "Bearer "+c.Key.Reveal())
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatal(rec.Code)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, empty) })
	b.Run("middleware", func(b *testing.B) { run(b, httpadapter.Middleware(m)(empty)) })
}
