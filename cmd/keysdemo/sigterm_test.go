package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMUnderLoad builds the demo, loads it, and sends SIGTERM: the
// server must stop accepting, finish every request it accepted (each one
// the server logged as handled reached its client), flush and exit 0.
func TestSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo binary; run without -short")
	}
	p := startBinary(t, buildDemo(t))
	cmd, key, addr, logsDone := p.cmd, p.key, p.addr, p.logsDone

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	var ok, refused, cut atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				req, _ := http.NewRequest("GET", "http://"+addr+"/v1/ping", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := client.Do(req)
				switch {
				case err == nil:
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("status %d during shutdown", resp.StatusCode)
					}
					ok.Add(1)
				case errors.Is(err, syscall.ECONNREFUSED):
					refused.Add(1) // the listener is closed: not accepted
					time.Sleep(time.Millisecond)
				case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
					cut.Add(1) // never handled if the counts below agree
				default:
					t.Errorf("request failed: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	sent := ok.Load()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-logsDone; exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not exit after SIGTERM")
	}
	stop.Store(true)
	wg.Wait()

	out := p.log()
	handled := strings.Count(out, "path=/v1/ping status=200")
	t.Logf("%d requests answered (%d before SIGTERM), %d refused after, %d cut before being handled; the server logged %d handled", ok.Load(), sent, refused.Load(), cut.Load(), handled)
	if sent == 0 {
		t.Fatal("no load before SIGTERM")
	}
	if int64(handled) != ok.Load() {
		t.Fatalf("the server handled %d requests but clients got %d responses: accepted requests were lost", handled, ok.Load())
	}
	if !strings.Contains(out, "keysdemo stopped") {
		t.Fatalf("no clean stop in the log:\n%s", out[max(0, len(out)-2000):])
	}
	if strings.Contains(out, key[9:]) {
		t.Fatal("the log holds the key")
	}
}
