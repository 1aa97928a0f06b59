package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Kill -9 mid-delivery: the demo on SQLite is killed while a receiver
// holds the delivery of an event; after a restart on the same file the
// event is delivered, with the same webhook-id.
func TestKill9MidDeliveryIsDeliveredAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the demo binary")
	}
	t.Setenv("KEYSDEMO_PEPPER", strings.Repeat("k", 32)) // the signing secret outlives the process
	held := make(chan string, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	var ids []string
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		mu.Lock()
		ids = append(ids, id)
		first := len(ids) == 1
		mu.Unlock()
		if first {
			held <- id
			select { // hold the first attempt until the sender is dead
			case <-release:
			case <-time.After(10 * time.Second):
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rv.Close()
	defer close(release)
	db := filepath.Join(t.TempDir(), "keys.db")
	bin := buildDemo(t)
	p := startBinary(t, bin, "--store", "sqlite", "--db", db, "--webhooks-allow-loopback")
	base := "http://" + p.addr + "/v1"
	if resp, body := call(t, "POST", base+"/developers/webhooks", p.key, `{"url":"`+rv.URL+`/hook","events":["key.created"]}`); resp.StatusCode != 201 {
		t.Fatalf("register: %d %v", resp.StatusCode, body)
	}
	if resp, body := call(t, "POST", base+"/developers/keys", p.key, `{"name":"evented","environment":"test"}`); resp.StatusCode != 201 {
		t.Fatalf("create: %d %v", resp.StatusCode, body)
	}
	var id string
	select {
	case id = <-held:
	case <-time.After(5 * time.Second):
		t.Fatalf("no delivery began; log:\n%s", p.log())
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	q := startBinary(t, bin, "--store", "sqlite", "--db", db, "--webhooks-allow-loopback")
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(ids)
		var again string
		if n > 1 {
			again = ids[1]
		}
		mu.Unlock()
		if again != "" {
			if again != id {
				t.Fatalf("after the restart: webhook-id %s, the held one %s", again, id)
			}
			t.Logf("delivered after the restart with the same webhook-id %s", id)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event was not delivered after the restart; log:\n%s", q.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
