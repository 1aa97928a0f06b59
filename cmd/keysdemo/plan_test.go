package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// --plan free: the demo account gets 10 requests in flight (the 11th held
// at once is a 429 naming "concurrency"), 60 a minute (then a 429 naming
// "account_minute"), and ?sleep_ms is checked.
func TestDemoPlan(t *testing.T) {
	if err := run(context.Background(), []string{"--plan", "platinum"}, io.Discard, io.Discard, nil); err == nil {
		t.Fatal("an unknown plan accepted")
	}
	base, boot, _, stop := startDemo(t, "--plan", "free")
	defer stop()
	for _, q := range []string{"sleep_ms=-1", "sleep_ms=5001", "sleep_ms=x", "sleep_ms=1&sleep_ms=2", "other=1"} {
		if resp, body := call(t, "GET", base+"/v1/ping?"+q, boot, ""); resp.StatusCode != 400 {
			t.Fatalf("?%s: %d %v", q, resp.StatusCode, body)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	limits := map[any]int{}
	for range 11 {
		wg.Go(func() {
			resp, body := call(t, "GET", base+"/v1/ping?sleep_ms=1500", boot, "")
			mu.Lock()
			defer mu.Unlock()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusTooManyRequests {
				limits[body["error"].(map[string]any)["limit"]]++
			}
		})
		time.Sleep(20 * time.Millisecond) // the first ten are in flight before the last
	}
	wg.Wait()
	if codes[200] != 10 || codes[429] != 1 || limits["concurrency"] != 1 {
		t.Fatalf("11 held at once on free: %v, limits %v", codes, limits)
	}
	// 5 refused queries + 11 pings counted so far (a 400 passed the
	// middleware). The rest of the minute's 60, and a few the GCRA refills
	// meanwhile (one a second), then a 429.
	for i := 16; i < 80; i++ {
		resp, body := call(t, "GET", base+"/v1/ping", boot, "")
		if resp.StatusCode == 200 {
			continue
		}
		if i < 60 || resp.StatusCode != 429 || body["error"].(map[string]any)["limit"] != "account_minute" || resp.Header.Get("X-RateLimit-Limit") != "60" {
			t.Fatalf("request %d: %d %v %v", i+1, resp.StatusCode, body, resp.Header)
		}
		return
	}
	t.Fatal("80 requests within seconds on a plan of 60 a minute, none refused")
}
