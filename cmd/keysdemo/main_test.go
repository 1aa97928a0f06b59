package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDemo(t *testing.T, args ...string) (base, bootstrap string, logs *syncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	addrCh := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, args...), stdout, stderr, func(a net.Addr) { addrCh <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrCh:
	case err := <-done:
		t.Fatalf("demo exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not start")
	}
	line := strings.TrimSpace(stdout.String())
	bootstrap, ok := strings.CutPrefix(line, "bootstrap key: ")
	if !ok || strings.Contains(bootstrap, "\n") {
		t.Fatalf("stdout must be one line 'bootstrap key: <key>', got %q", line)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("demo did not stop")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + addr.String(), bootstrap, stderr, stop
}

func call(t *testing.T, method, url, key, body string, hdr ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp, out
}

// The README's curl session, over a real socket.
func TestDemoSession(t *testing.T) {
	base, bootstrap, logs, stop := startDemo(t)

	resp, who := call(t, "GET", base+"/v1/whoami", bootstrap, "")
	if resp.StatusCode != 200 || who["environment"] != "test" || who["account_id"] != "acct_demo" || len(who["permissions"].([]any)) != 14 {
		t.Fatalf("whoami with the bootstrap key: %d %v", resp.StatusCode, who)
	}

	resp, created := call(t, "POST", base+"/v1/developers/keys", bootstrap,
		`{"name":"my service","environment":"test","permissions":["identity:read"],"rate_limit":2}`, "Idempotency-Key", "demo-test-0001")
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %v", resp.StatusCode, created)
	}
	key := created["key"].(string)

	resp, who = call(t, "GET", base+"/v1/whoami", key, "")
	if resp.StatusCode != 200 || who["id"] != created["id"] || who["permissions"].([]any)[0] != "identity:read" {
		t.Fatalf("whoami with the new key: %d %v", resp.StatusCode, who)
	}
	if resp.Header.Get("X-RateLimit-Limit") != "2" || resp.Header.Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("rate-limit headers: %v", resp.Header)
	}
	if resp, _ := call(t, "GET", base+"/v1/ping", key, ""); resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("ping: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body := call(t, "GET", base+"/v1/ping", key, "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || body["error"] == nil {
		t.Fatalf("third request of a 2/minute key: %d %v", resp.StatusCode, body)
	}
	// The new key lacks developers:write.
	if resp, _ := call(t, "POST", base+"/v1/developers/keys", key, `{"name":"x","environment":"test"}`); resp.StatusCode != 403 {
		t.Fatalf("create without developers:write: %d", resp.StatusCode)
	}
	if resp, _ := call(t, "GET", base+"/v1/whoami", "", ""); resp.StatusCode != 401 {
		t.Fatalf("whoami without a key: %d", resp.StatusCode)
	}
	// A key pasted into a query string is neither accepted nor logged.
	if resp, _ := call(t, "GET", base+"/v1/whoami?key="+bootstrap, "", ""); resp.StatusCode != 401 {
		t.Fatalf("key in query accepted: %d", resp.StatusCode)
	}

	// Nor one pasted where a key ID belongs.
	if resp, _ := call(t, "GET", base+"/v1/developers/keys/"+key, bootstrap, ""); resp.StatusCode != 404 {
		t.Fatalf("a key as a key ID: %d", resp.StatusCode)
	}

	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "path=\"/v1/developers/keys/[key redacted]\"") {
		t.Fatalf("the key-shaped path segment was not logged redacted:\n%s", out)
	}
	if !strings.Contains(out, "path=/v1/whoami") || !strings.Contains(out, "status=201") {
		t.Fatalf("requests not logged:\n%s", out)
	}
	for _, secret := range []string{bootstrap, key, bootstrap[9:], key[9:]} {
		if strings.Contains(out, secret) {
			t.Fatal("a key appears in the log")
		}
	}
}

func TestDemoFlags(t *testing.T) {
	if err := run(context.Background(), []string{"--nope"}, io.Discard, io.Discard, nil); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if err := run(context.Background(), []string{"--addr", "256.0.0.1:1"}, io.Discard, io.Discard, nil); err == nil {
		t.Fatal("bad address accepted")
	}
}
