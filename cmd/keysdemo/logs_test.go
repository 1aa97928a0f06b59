package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The HTTP guide's session: a key over its rate limit gets a 429 with a
// Request-Id, and GET /v1/developers/logs/{request_id} says what happened
// to it (status, limit, key); the list finds it by key and status.
func TestFindA429ByItsRequestID(t *testing.T) {
	base, line, _, stop := launch(t)
	defer stop()
	admin := strings.TrimPrefix(line, "bootstrap key: ")
	resp, created := call(t, "POST", base+"/v1/developers/keys", admin, `{"name":"tight","environment":"test","rate_limit":2}`)
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %v", resp.StatusCode, created)
	}
	key, id := created["key"].(string), created["id"].(string)
	var refused *http.Response
	for range 3 {
		refused, _ = call(t, "GET", base+"/v1/ping", key, "")
	}
	reqID := refused.Header.Get("Request-Id")
	if refused.StatusCode != 429 || !strings.HasPrefix(reqID, "req_") {
		t.Fatalf("the third ping: %d, Request-Id %q", refused.StatusCode, reqID)
	}
	resp, entry := call(t, "GET", base+"/v1/developers/logs/"+reqID, admin, "")
	if resp.StatusCode != 200 || entry["status"] != 429.0 || entry["limit"] != "key" || entry["key_id"] != id || entry["path"] != "GET /v1/ping" {
		t.Fatalf("the 429's entry: %d %v", resp.StatusCode, entry)
	}
	resp, page := call(t, "GET", base+"/v1/developers/logs?status=4xx&key_id="+id, admin, "")
	if data, _ := page["data"].([]any); resp.StatusCode != 200 || len(data) != 1 || data[0].(map[string]any)["request_id"] != reqID {
		t.Fatalf("the key's 4xx: %d %v", resp.StatusCode, page)
	}
}

// Killed with SIGKILL, the demo loses at most the last flush interval's
// entries (reqlog.FlushInterval, 1 s): every request answered more than
// 1.5 s before the kill is read back after a restart on the same file.
func TestKill9LosesOneFlushIntervalAtMost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo binary")
	}
	db := filepath.Join(t.TempDir(), "keys.db")
	bin := buildDemo(t)
	p := startBinary(t, bin, "--store", "sqlite", "--db", db)
	base := "http://" + p.addr
	var before, last []string
	for range 20 {
		resp, _ := call(t, "GET", base+"/v1/whoami", p.key, "")
		before = append(before, resp.Header.Get("Request-Id"))
	}
	time.Sleep(1500 * time.Millisecond)
	for range 5 {
		resp, _ := call(t, "GET", base+"/v1/whoami", p.key, "")
		last = append(last, resp.Header.Get("Request-Id"))
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	base, _, stop := startOnFile(t, db)
	defer stop()
	for _, id := range before {
		if resp, e := call(t, "GET", base+"/v1/developers/logs/"+id, p.key, ""); resp.StatusCode != 200 || e["status"] != 200.0 {
			t.Fatalf("%s, answered 1.5 s before the kill: %d %v", id, resp.StatusCode, e)
		}
	}
	kept := 0
	for _, id := range last {
		if resp, _ := call(t, "GET", base+"/v1/developers/logs/"+id, p.key, ""); resp.StatusCode == 200 {
			kept++
		}
	}
	t.Logf("of the 5 requests answered just before the kill, %d were flushed", kept)
}
