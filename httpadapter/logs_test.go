package httpadapter_test

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/reqlog"
)

// exported keeps what an exporter is given.
type exported struct {
	mu      sync.Mutex
	entries []reqlog.Entry
}

func (x *exported) Export(_ context.Context, es []reqlog.Entry) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.entries = append(x.entries, es...)
	return nil
}

func (x *exported) byID() map[string]reqlog.Entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := map[string]reqlog.Entry{}
	for _, e := range x.entries {
		out[e.RequestID] = e
	}
	return out
}

// readLog reads GET /developers/logs/{id} as key.
func readLog(t *testing.T, h http.Handler, key, id string) (reqlog.Entry, int) {
	t.Helper()
	rec := serve(h, request{method: http.MethodGet, path: "/developers/logs/" + url.PathEscape(id), headers: map[string][]string{"Authorization": bearer(key)}})
	var e reqlog.Entry
	if rec.Code == 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
	}
	return e, rec.Code
}

// TestEveryRequestIsLoggedOnce: N requests of mixed outcomes, through the
// middleware and the key endpoints, each carry a Request-Id, and each is
// found by it with its status, key, error code and limit; the requests of
// keys no record matches reach only the exporter.
func TestEveryRequestIsLoggedOnce(t *testing.T) {
	x := &exported{}
	e := newEnv(t, keys.WithRequestLogs(reqlog.Config{Exporter: x}))
	a := httpadapter.New(e.m)
	mux := http.NewServeMux()
	mux.Handle("GET /v1/whoami", a.Middleware("kyb:read")(whoami))
	mux.Handle("/developers/", a)
	type want struct {
		status             int
		code, limit        string
		keyed, owned       bool // a stored key was found; of acct_a
		reqBytes, resBytes int
	}
	cases := []struct {
		r request
		w want
	}{
		{request{method: "GET", path: "/v1/whoami?token=secret", headers: map[string][]string{"Authorization": bearer(e.admin), "User-Agent": {"curl/8.5\x01ü"}}}, want{status: 200, code: "", limit: "", keyed: true, owned: true}},
		{request{method: "GET", path: "/v1/whoami", headers: map[string][]string{"Authorization": bearer(e.revoked)}}, want{status: 401, code: "key_revoked", limit: "", keyed: true, owned: true}},
		{request{method: "GET", path: "/v1/whoami", headers: map[string][]string{"Authorization": bearer(e.narrow)}}, want{status: 403, code: "forbidden", limit: "", keyed: true, owned: true}},
		{request{method: "GET", path: "/v1/whoami", headers: map[string][]string{"Authorization": bearer(forgeKey("txc_test_" + strings.Repeat("Q", 32)))}}, want{status: 401, code: "unauthorized", limit: "", keyed: false, owned: false}},
		{request{method: "GET", path: "/v1/whoami"}, want{status: 401, code: "unauthorized", limit: "", keyed: false, owned: false}},
		{request{method: "GET", path: "/developers/keys", headers: map[string][]string{"Authorization": bearer(e.readOnly)}}, want{status: 200, code: "", limit: "", keyed: true, owned: true}},
		{request{method: "POST", path: "/developers/keys", headers: jsonHeaders(e.admin), body: `{"name":"x","environment":"test","bogus":1}`}, want{status: 400, code: "invalid_parameter", limit: "", keyed: true, owned: true}},
		{request{method: "GET", path: "/developers/keys/key_nosuch", headers: map[string][]string{"Authorization": bearer(e.admin)}}, want{status: 404, code: "not_found", limit: "", keyed: true, owned: true}},
		{request{method: "GET", path: "/developers/keys", headers: map[string][]string{"Authorization": bearer(e.stranger)}}, want{status: 200, code: "", limit: "", keyed: true, owned: false}},
	}
	for range 4 { // the limited key: 3 a minute, then a 429
		cases = append(cases, struct {
			r request
			w want
		}{request{method: "GET", path: "/v1/whoami", headers: map[string][]string{"Authorization": bearer(e.limited)}}, want{status: 200, code: "", limit: "", keyed: true, owned: true}})
	}
	cases[len(cases)-1].w = want{status: 429, code: "rate_limit_exceeded", limit: "key", keyed: true, owned: true}
	ids := map[string]want{}
	var first string
	for _, c := range cases {
		rec := serve(mux, c.r)
		id := rec.Header().Get("Request-Id")
		if !strings.HasPrefix(id, "req_") || len(id) != 30 {
			t.Fatalf("%s %s: Request-Id %q", c.r.method, c.r.path, id)
		}
		if rec.Code != c.w.status {
			t.Fatalf("%s %s: %d, want %d", c.r.method, c.r.path, rec.Code, c.w.status)
		}
		if _, dup := ids[id]; dup {
			t.Fatal("a request ID twice")
		}
		c.w.reqBytes, c.w.resBytes = len(c.r.body), rec.Body.Len()
		ids[id] = c.w
		first = cmp.Or(first, id)
	}
	// Read back by the account's admin: every acct_a request, by its ID.
	for id, w := range ids {
		got, status := readLog(t, mux, e.admin, id)
		if !w.owned {
			if status != 404 {
				t.Errorf("%s (%d, not acct_a's): %d, want 404", id, w.status, status)
			}
			continue
		}
		if status != 200 {
			t.Fatalf("%s: read %d", id, status)
		}
		if got.RequestID != id || got.Status != w.status || got.ErrorCode != w.code || got.Limit != w.limit || (got.KeyID != "") != w.keyed ||
			got.RequestBytes != int64(w.reqBytes) || got.ResponseBytes != int64(w.resBytes) {
			t.Errorf("%s: entry %+v, want %+v", id, got, w)
		}
		if strings.Contains(got.Path, "?") || strings.Contains(got.Path, "secret") {
			t.Errorf("the query string reached the log: %q", got.Path)
		}
		if id == first && got.UserAgent != "curl/8.5???" {
			t.Errorf("user agent %q, want it cleaned", got.UserAgent)
		}
	}
	// The exporter got every request, and the requests that read the
	// log: N + the reads of acct_a's entries.
	if err := e.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := x.byID()
	for id, w := range ids {
		if got, ok := all[id]; !ok || got.Status != w.status {
			t.Errorf("exporter: %s: %+v, want status %d", id, got, w.status)
		}
	}
	// Another account sees none of acct_a's: its key ID and its request
	// IDs are a 404.
	for id, w := range ids {
		if w.owned {
			if _, status := readLog(t, mux, e.stranger, id); status != 404 {
				t.Errorf("acct_b read acct_a's %s: %d", id, status)
			}
			break
		}
	}
	admin, err := e.m.Verify(context.Background(), e.admin)
	if err != nil {
		t.Fatal(err)
	}
	rec := serve(mux, request{method: "GET", path: "/developers/logs?key_id=" + admin.KeyID, headers: map[string][]string{"Authorization": bearer(e.stranger)}})
	if rec.Code != 404 {
		t.Fatalf("acct_b filtered by acct_a's key: %d %s", rec.Code, rec.Body)
	}
}

// TestLogListFilters: the list filters by status (code and class), key
// and method, newest first, in pages.
func TestLogListFilters(t *testing.T) {
	e := newEnv(t)
	a := httpadapter.New(e.m)
	mux := http.NewServeMux()
	mux.Handle("GET /v1/whoami", a.Middleware()(whoami))
	mux.Handle("/developers/", a)
	for range 5 {
		serve(mux, request{method: "GET", path: "/v1/whoami", headers: map[string][]string{"Authorization": bearer(e.limited)}})
		e.clock.Advance(1)
	}
	list := func(q string) reqlog.Page {
		t.Helper()
		rec := serve(mux, request{method: "GET", path: "/developers/logs?" + q, headers: map[string][]string{"Authorization": bearer(e.admin)}})
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", q, rec.Code, rec.Body)
		}
		var p reqlog.Page
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := list("status=429"); len(p.Data) != 2 || p.Data[0].Limit != "key" {
		t.Fatalf("status=429: %+v", p.Data)
	}
	if p := list("status=4xx&method=GET"); len(p.Data) != 2 {
		t.Fatalf("status=4xx: %d entries", len(p.Data))
	}
	// The limited key's three, and the two reads before this one (each is
	// logged after its answer).
	if p := list("status=2xx"); len(p.Data) != 5 {
		t.Fatalf("status=2xx: %d entries, want 5", len(p.Data))
	}
	// Pages of 2 walk every entry once, newest first.
	seen := map[string]bool{}
	q := "limit=2&api=GET+%2Fv1%2Fwhoami"
	var last reqlog.Entry
	for pages := 0; ; pages++ {
		p := list(q)
		for _, en := range p.Data {
			if seen[en.RequestID] {
				t.Fatal("an entry on two pages")
			}
			if last.RequestID != "" && en.Timestamp.After(last.Timestamp) {
				t.Fatal("not newest first")
			}
			seen[en.RequestID], last = true, en
		}
		if !p.HasMore {
			break
		}
		q = "limit=2&api=GET+%2Fv1%2Fwhoami&cursor=" + url.QueryEscape(p.NextCursor)
	}
	if len(seen) != 5 {
		t.Fatalf("pages gave %d entries, want 5", len(seen))
	}
	for _, bad := range []string{"status=600", "status=4xy", "limit=0", "limit=101", "cursor=%21", "start=yesterday", "bogus=1", "key_id=", "status=429&status=500"} {
		rec := serve(mux, request{method: "GET", path: "/developers/logs?" + bad, headers: map[string][]string{"Authorization": bearer(e.admin)}})
		if rec.Code != 400 {
			t.Errorf("%s: %d, want 400", bad, rec.Code)
		}
		envelope(t, rec)
	}
}

// TestLogsNeedAStoreThatKeepsThem: without a store.LogStore (and no
// exporter) nothing is recorded, and the log endpoints are a 404.
func TestLogsNeedAStoreThatKeepsThem(t *testing.T) {
	e := newEnv(t, keys.WithRequestLogs(reqlog.Config{Disabled: true}))
	a := httpadapter.New(e.m)
	rec := serve(a, request{method: "GET", path: "/developers/logs", headers: map[string][]string{"Authorization": bearer(e.admin)}})
	if rec.Code != 404 || envelope(t, rec).Message != "this server keeps no request log" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if e.m.LogsDropped() != nil {
		t.Fatal("a Manager keeping no log counts drops")
	}
}

// TestRequestIDsAreUnique: the library's IDs are "req_" and 26 base-32
// characters, all distinct.
func TestRequestIDsAreUnique(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m).Middleware()(whoami)
	seen := map[string]bool{}
	for range 2000 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		h.ServeHTTP(rec, req)
		id := rec.Header().Get("Request-Id")
		if len(id) != 30 || strings.Trim(id[4:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" || seen[id] {
			t.Fatalf("request ID %q", id)
		}
		seen[id] = true
	}
}

// An anonymous flood (no key, malformed keys, well-formed keys no record
// matches) costs the request log nothing: no entry reaches the store, and
// no account's log holds one; only an exporter would see them.
func TestAnonymousFloodCostsTheLogNothing(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m).Middleware()(whoami)
	forged := forgeKey("txc_test_" + strings.Repeat("F", 32))
	for i := range 3000 {
		hd := map[string][]string{}
		switch i % 3 {
		case 1:
			hd["Authorization"] = bearer("txc_test_nonsense")
		case 2:
			hd["Authorization"] = bearer(forged)
		}
		if rec := serve(h, request{method: "GET", path: "/v1/whoami", headers: hd, remote: "127.0.0.2:1"}); rec.Code != 401 {
			t.Fatalf("%d", rec.Code)
		}
	}
	if err := e.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, b := e.store.logEntries.Load(), e.store.logBatches.Load(); n != 0 || b != 0 {
		t.Fatalf("an anonymous flood wrote %d entries in %d batches", n, b)
	}
	if d := e.m.LogsDropped(); d["buffer_full"] != 0 {
		t.Fatalf("an anonymous flood filled the buffer: %v", d)
	}
	// One request of a real key is written, alone.
	serve(h, request{method: "GET", path: "/v1/whoami", headers: map[string][]string{"Authorization": bearer(e.admin)}})
	if err := e.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.store.logEntries.Load(); n != 1 {
		t.Fatalf("%d entries written for one request of a key", n)
	}
}

// A client sending 256 KB User-Agents and paths keeps none of them in
// memory through the log: an entry keeps copies of its 256 bytes, not
// slices of the headers (which would pin every header of a window).
func TestLongHeadersAreNotKeptByTheLog(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m).Middleware()(whoami)
	const n, size = 400, 256 << 10
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		req := httptest.NewRequest("GET", "/v1/"+strings.Repeat("p", size)+strconv.Itoa(i), nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		req.Header.Set("User-Agent", strings.Repeat("u", size)+strconv.Itoa(i))
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	if err := e.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.GC() // a second cycle frees what the first found only unreachable
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after %d requests of 2 × %d KB headers, logged and flushed: %+d KB (the headers: %d MB)", n, size>>10, grew>>10, 2*n*size>>20)
	if grew > 20<<20 {
		t.Fatalf("the heap grew %d MB: the log keeps the clients' headers", grew>>20)
	}
	p, err := e.m.Logs(context.Background(), "acct_a", reqlog.Filter{Limit: 1})
	if err != nil || len(p.Data) != 1 || len(p.Data[0].UserAgent) != reqlog.MaxUserAgentLen || len(p.Data[0].Path) > reqlog.MaxPathLen {
		t.Fatalf("%v %+v", err, p)
	}
}

// A client that pastes its key into a URL does not find it stored: the
// path (kept when no route pattern names the request) has it redacted.
func TestKeysInPathsAreNotLogged(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m).Middleware()(whoami) // no ServeMux: the path is kept
	rec := serve(h, request{method: "GET", path: "/v1/keys/" + e.admin + "/usage?key=" + e.admin, headers: map[string][]string{"Authorization": bearer(e.admin), "User-Agent": {"script " + e.admin}}})
	got, err := e.m.Log(context.Background(), "acct_a", rec.Header().Get("Request-Id"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != "/v1/keys/[key redacted]/usage" || got.UserAgent != "[key redacted]" {
		t.Fatalf("path %q, user agent %q", got.Path, got.UserAgent)
	}
}
