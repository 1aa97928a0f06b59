package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
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
	base, line, logs, stop := launch(t, args...)
	bootstrap, ok := strings.CutPrefix(line, "bootstrap key: ")
	if !ok || strings.Contains(bootstrap, "\n") {
		t.Fatalf("stdout must be one line 'bootstrap key: <key>', got %q", line)
	}
	return base, bootstrap, logs, stop
}

// launch runs the demo with args until the test ends (or stop), and
// returns its address, what it printed on stdout, and its log.
func launch(t *testing.T, args ...string) (base, stdoutLine string, logs *syncBuffer, stop func() error) {
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
		t.Fatalf("demo exited: %v (%s)", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not start")
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
	return "http://" + addr.String(), strings.TrimSpace(stdout.String()), stderr, stop
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

// An anonymous flood is logged as a summary, not a line per request.
func TestRefusalFloodIsSummarised(t *testing.T) {
	base, _, logs, stop := startDemo(t)
	defer stop()
	client := &http.Client{Timeout: 5 * time.Second}
	const flood = 2000
	for i := range flood {
		req, _ := http.NewRequest("GET", base+"/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer txc_test_forged"+strings.Repeat("A", i%7))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if err := stop(); err != nil { // flushes the pending summary
		t.Fatal(err)
	}
	lines := strings.Count(logs.String(), "request refused")
	if lines > 3 {
		t.Fatalf("%d log lines for %d refused requests: the flood is logged line by line", lines, flood)
	}
	if !strings.Contains(logs.String(), "count=1999") {
		t.Fatalf("the summary does not count the refusals:\n%s", logs.String())
	}
}

// A key over its rate limit, or out of credits, flooding the API is
// logged as a summary per kind too, not a line per request (before: 31,612
// lines, 4.7 MB, in 3 s of 429s).
func TestRateLimitAndCreditFloodsAreSummarised(t *testing.T) {
	base, boot, logs, stop := startDemo(t)
	defer stop()
	for _, c := range []struct {
		body, summary string
		status        int
	}{
		{`{"name":"limited","environment":"test","rate_limit":1}`, "request refused: rate limited", 429},
		{`{"name":"budget","environment":"test","credits":{"remaining":1}}`, "request refused: credits exhausted", 402},
	} {
		resp, created := call(t, "POST", base+"/v1/developers/keys", boot, c.body)
		if resp.StatusCode != 201 {
			t.Fatalf("create: %d %v", resp.StatusCode, created)
		}
		key := created["key"].(string)
		const flood = 1000
		refused := 0
		for range flood {
			req, _ := http.NewRequest("GET", base+"/v1/ping", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == c.status {
				refused++
			}
		}
		if refused != flood-1 {
			t.Fatalf("%d of %d refused with %d; want all but the first", refused, flood, c.status)
		}
		if n := strings.Count(logs.String(), c.summary); n > 2 {
			t.Fatalf("%d log lines for %d requests refused with %d: the flood is logged line by line", n, refused, c.status)
		}
	}
	if err := stop(); err != nil { // flushes the pending summaries
		t.Fatal(err)
	}
	for _, want := range []string{`msg="request refused: rate limited (summary)" count=998`, `msg="request refused: credits exhausted (summary)" count=998`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%.2000s", want, logs.String())
		}
	}
}

// At --max-conns, with every connection serving a request, a new one is
// refused at once; once they are idle, a new one takes the slot of the
// oldest, and idle ones are closed after the idle timeout, so idle
// keep-alive connections cannot be hoarded. --max-conns-per-addr caps one
// address the same way (connlimit's tests run the attacks).
func TestConnectionCapAndIdleTimeout(t *testing.T) {
	// An idle timeout of 3 s: the held answers may come up to 2.4 s apart
	// under the race detector and CI's load, and a connection idle-closed
	// before the last answer came would count as the one made room for.
	base, boot, logs, stop := startDemo(t, "--max-conns", "20", "--max-conns-per-addr", "20", "--idle-timeout", "3s")
	defer stop()
	addr := strings.TrimPrefix(base, "http://")
	// 20 connections, each with a request in flight for 400 ms.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if _, err := io.WriteString(c, "GET /v1/ping?sleep_ms=400 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+boot+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // their headers are read
	// The 21st is closed without an answer.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Fatalf("a connection beyond the cap, all of whose slots serve requests, was served (%d bytes)", n)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), "connection refused") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Fatal("a connection refused at the cap was not logged")
	}
	// The held requests are answered; their connections are idle now, and
	// a new client takes the oldest one's slot.
	// (Answered, not promptly: under the race detector and other tests'
	// load the first requests of a fresh demo took up to 2.4 s, in a run
	// of 20 at once, and a 2 s deadline failed one run in three.)
	for i, h := range held {
		buf := make([]byte, 4096)
		_ = h.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := h.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "200 OK") {
			t.Fatalf("held request %d: %v %q\nlogs:\n%s", i, err, buf[:n], logs.String())
		}
	}
	resp, err := http.Get(base + "/v1/ping")
	if err != nil {
		t.Fatalf("a new client at the cap, with idle connections: %v", err)
	}
	resp.Body.Close()
	closed := 0 // the one that went idle first (the answers race) was closed
	for _, h := range held {
		_ = h.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := h.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed != 1 {
		t.Fatalf("%d idle connections were closed to make room for one", closed)
	}
	// After the idle timeout the others are closed too.
	time.Sleep(3100 * time.Millisecond)
	for i, h := range held {
		_ = h.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := h.Read(make([]byte, 16)); err == nil {
			t.Fatalf("held connection %d is still open after the idle timeout", i)
		}
	}
}
