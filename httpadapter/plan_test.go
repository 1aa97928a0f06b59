package httpadapter_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
)

func planEnv(t *testing.T, plan keys.Plan) (*env, *httpadapter.Adapter) {
	t.Helper()
	plans := func(_ context.Context, account string) (keys.Plan, error) {
		if account == "acct_a" {
			return plan, nil
		}
		return keys.Plan{}, nil
	}
	e := newEnv(t, keys.WithPlans(plans, time.Minute))
	return e, httpadapter.New(e.m)
}

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) httpadapter.ErrorDetail {
	t.Helper()
	var body httpadapter.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	return body.Error
}

// Requests in flight through the middleware never exceed the plan's
// burst; a handler that panics, and a request whose client went away,
// give their slot back.
func TestMiddlewareHoldsConcurrency(t *testing.T) {
	const burst = 3
	e, a := planEnv(t, keys.Plan{Concurrent: burst})
	release := make(chan struct{})
	var inFlight, peak atomic.Int64
	h := a.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		switch r.URL.Path {
		case "/panic":
			panic("handler bug")
		case "/wait":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	serve := func(path string, ctx context.Context) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(ctx, "GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		rec := httptest.NewRecorder()
		func() {
			defer func() { _ = recover() }() // as net/http's server does
			h.ServeHTTP(rec, req)
		}()
		return rec
	}
	// Fill the burst with waiting requests, from many goroutines at once.
	var wg sync.WaitGroup
	var ok, refused atomic.Int64
	for range 10 {
		wg.Go(func() {
			rec := serve("/wait", context.Background())
			switch rec.Code {
			case 200:
				ok.Add(1)
			case 429:
				if d := decodeError(t, rec); d.Limit != "concurrency" || rec.Header().Get("Retry-After") == "" {
					t.Errorf("429 %+v", d)
				}
				refused.Add(1)
			default:
				t.Errorf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	waitFor(t, func() bool { return refused.Load() >= 10-burst }, "the requests over the burst to be refused")
	close(release)
	wg.Wait()
	if ok.Load() != burst || peak.Load() != burst {
		t.Fatalf("%d served, peak %d in flight; want the burst, %d", ok.Load(), peak.Load(), burst)
	}
	// Panics and cancelled requests give their slots back: afterwards
	// the whole burst is free again.
	for range 2 * burst {
		serve("/panic", context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		serve("/wait", ctx)
	}
	release = make(chan struct{})
	var held sync.WaitGroup
	for range burst {
		held.Go(func() {
			if rec := serve("/wait", context.Background()); rec.Code != 200 {
				t.Errorf("after panics and cancellations: %d %s", rec.Code, rec.Body)
			}
		})
	}
	waitFor(t, func() bool { return inFlight.Load() >= burst }, "the burst to be in flight again")
	if rec := serve("/", context.Background()); rec.Code != 429 {
		t.Fatalf("over the burst: %d", rec.Code)
	}
	close(release)
	held.Wait()
}

// An endpoint limit applies to the routes its pattern matches, through the
// middleware, and its 429 names it; the headers of a request to another
// route report the account's limit.
func TestMiddlewareEndpointLimit(t *testing.T) {
	e, a := planEnv(t, keys.Plan{PerMinute: 100, Endpoints: []keys.EndpointLimit{{Pattern: "POST /identity/verify", PerMinute: 2}}})
	mux := http.NewServeMux()
	mux.Handle("/", a.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	call := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(""))
		req.Header.Set("Authorization", "Bearer "+e.admin)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	for i := range 2 {
		rec := call("POST", "/identity/verify")
		if rec.Code != 200 || rec.Header().Get("X-RateLimit-Limit") != "2" || rec.Header().Get("X-RateLimit-Remaining") != string(rune('1'-i)) {
			t.Fatalf("request %d: %d %v", i, rec.Code, rec.Header())
		}
	}
	rec := call("POST", "/identity/verify")
	if d := decodeError(t, rec); rec.Code != 429 || d.Limit != "endpoint" || !strings.Contains(d.Message, "endpoint") {
		t.Fatalf("%d %+v", rec.Code, d)
	}
	rec = call("GET", "/transactions")
	if rec.Code != 200 || rec.Header().Get("X-RateLimit-Limit") != "100" || rec.Header().Get("X-RateLimit-Remaining") != "97" { // the refused request spent nothing
		t.Fatalf("another route: %d %v", rec.Code, rec.Header())
	}
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5 s for %s", what)
		}
	}
}

// A leaked key floods the account's plan (its day's quota spent): the
// account's other key can still list keys, read usage and revoke the
// leaked one, since the key endpoints are outside the plan.
func TestKeyEndpointsOutsideThePlan(t *testing.T) {
	e, a := planEnv(t, keys.Plan{PerMinute: 1000, PerDay: 50})
	guarded := a.Middleware()(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	leaked := e.narrow
	refused := 0
	for range 80 {
		req := httptest.NewRequest("GET", "/v1/ping", nil)
		req.Header.Set("Authorization", "Bearer "+leaked)
		rec := httptest.NewRecorder()
		guarded.ServeHTTP(rec, req)
		if rec.Code == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused != 30 {
		t.Fatalf("%d of 80 refused, want the 30 past the day's 50", refused)
	}
	serve := func(method, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer "+e.admin)
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		return rec
	}
	list := serve("GET", "/developers/keys?limit=100")
	var page keys.KeyList
	if err := json.Unmarshal(list.Body.Bytes(), &page); err != nil || list.Code != 200 {
		t.Fatalf("list with the plan spent: %d %s", list.Code, list.Body)
	}
	var id string
	for _, k := range page.Data {
		if k.Name == "narrow" {
			id = k.ID
		}
	}
	if rec := serve("GET", "/developers/usage"); rec.Code != 200 {
		t.Fatalf("usage with the plan spent: %d %s", rec.Code, rec.Body)
	}
	if rec := serve("DELETE", "/developers/keys/"+id); rec.Code != 200 {
		t.Fatalf("revoking the leaked key with the plan spent: %d %s", rec.Code, rec.Body)
	}
}
