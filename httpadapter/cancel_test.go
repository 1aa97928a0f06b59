package httpadapter_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/usage"
)

// A request whose client leaves before the answer is counted in usage as
// failed (499), never as a success or a server failure, and writes no
// ERROR line; one whose verification the departure cut short is a 499
// too, not a 503.
func TestClientThatLeavesIsCountedAs499(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) }), &slog.HandlerOptions{Level: slog.LevelError}))
	a := httpadapter.New(e.m, httpadapter.WithLogger(logger))
	entered := make(chan struct{})
	handlerDone := make(chan int, 1)
	srv := httptest.NewServer(a.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // the client leaves while the handler works
		w.WriteHeader(http.StatusOK)
		handlerDone <- 1
	})))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/thing", nil)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	go func() { <-entered; cancel() }()
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("the request: %v", err)
	}
	<-handlerDone
	time.Sleep(20 * time.Millisecond) // the middleware counts after the handler returns
	if err := e.m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	admin, err := e.m.Verify(context.Background(), e.admin)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := e.m.UsageSummary(context.Background(), "acct_a", usage.Filter{KeyID: admin.KeyID, Start: e.clock.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Successful != 0 || sum.Failed != 1 {
		t.Fatalf("usage of a request whose client left: %d successful, %d failed; want 0 and 1", sum.Successful, sum.Failed)
	}

	// The departure cuts the store's work short: 499, no ERROR line.
	e.store.cancels.Store(true)
	rec := httptest.NewRecorder()
	gone, stop := context.WithCancel(context.Background())
	stop()
	r := httptest.NewRequestWithContext(gone, "GET", "/v1/thing", nil)
	r.Header.Set("Authorization", "Bearer "+e.admin)
	a.Middleware()(whoami).ServeHTTP(rec, r)
	if rec.Code != httpadapter.StatusClientClosedRequest {
		t.Fatalf("a request whose client left during verification: %d, want 499", rec.Code)
	}
	rec = httptest.NewRecorder()
	r = httptest.NewRequestWithContext(gone, "GET", "/developers/keys", nil)
	r.Header.Set("Authorization", "Bearer "+e.admin)
	a.ServeHTTP(rec, r)
	if rec.Code != httpadapter.StatusClientClosedRequest {
		t.Fatalf("a list whose client left: %d, want 499", rec.Code)
	}
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() > 0 {
		t.Fatalf("clients leaving wrote ERROR lines:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
