package connlimit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys/connlimit"
)

// serve runs an HTTP server on 127.0.0.1 behind a Listener with lim, whose
// handler holds a request while its query says hold.
func serve(t *testing.T, lim connlimit.Limits, release <-chan struct{}) (addr string, l *connlimit.Listener) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = connlimit.New(inner, lim)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("hold") != "" {
				<-release
			}
			_, _ = io.WriteString(w, "ok")
		}),
		ConnState:         l.ConnState,
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       10 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return inner.Addr().String(), l
}

// dialFrom connects to addr from the loopback address src (127.0.0.2, …).
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", addr)
}

// get makes one request on a new connection from src, and reports whether
// it was answered 200.
func get(src, addr, query string) bool {
	c, err := dialFrom(src, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", query); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(c, buf, 12)
	return n >= 12 && string(buf[9:12]) == "200"
}

// Slowloris: 300 connections from one address, each sending a header line
// every 100 ms and reconnecting when closed, against caps of 64 in all and
// 16 per address. Another address's new connections are served (at least
// 95%; before the caps per address and eviction, the trickling
// connections held every slot and nearly all were refused), and the
// attacker never holds more than its 16.
func TestTricklingClientCannotTakeTheSlots(t *testing.T) {
	var refusedNew, evicted atomic.Int64
	addr, l := serve(t, connlimit.Limits{Max: 64, PerAddr: 16, Refused: func(_ netip.Addr, ev bool) {
		if ev {
			evicted.Add(1)
		} else {
			refusedNew.Add(1)
		}
	}}, nil)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var peak, attackerPeak atomic.Int64
	attacker := netip.MustParseAddr("127.0.0.2")
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := dialFrom("127.0.0.2", addr)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				_, err = io.WriteString(c, "GET / HTTP/1.1\r\n")
				for i := 0; err == nil && ctx.Err() == nil; i++ {
					time.Sleep(100 * time.Millisecond)
					_, err = fmt.Fprintf(c, "X-Trickle-%d: 1\r\n", i)
				}
				c.Close()
			}
		}()
	}
	go func() {
		for ctx.Err() == nil {
			peak.Store(max(peak.Load(), int64(l.Open())))
			attackerPeak.Store(max(attackerPeak.Load(), int64(l.OpenFrom(attacker))))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond) // the attack fills the slots first
	served, tries := 0, 200
	for range tries {
		if get("127.0.0.3", addr, "") {
			served++
		}
	}
	stop()
	wg.Wait()
	t.Logf("during the attack: %d of %d requests from another address served; %d connections evicted, %d refused; at most %d open, %d of the attacker's",
		served, tries, evicted.Load(), refusedNew.Load(), peak.Load(), attackerPeak.Load())
	if served < tries*95/100 {
		t.Fatalf("%d of %d requests from another address served during a trickle attack; want at least 95%%", served, tries)
	}
	if peak.Load() > 64 {
		t.Fatalf("%d connections open at once, over the cap of 64", peak.Load())
	}
	if attackerPeak.Load() != 16 { // at its cap exactly: held, never past it
		t.Fatalf("the attacker held at most %d connections; want its cap, 16", attackerPeak.Load())
	}
}

// At a cap, a connection serving a request is never evicted: a new one is
// refused instead; a waiting one (idle, or before its headers) is evicted
// for it, the oldest first, of the same address at the per-address cap.
func TestEvictionSparesRequestsInFlight(t *testing.T) {
	release := make(chan struct{})
	addr, l := serve(t, connlimit.Limits{Max: 6, PerAddr: 3}, release)
	// Three requests in flight from 127.0.0.2: its cap.
	var wg sync.WaitGroup
	results := make(chan bool, 3)
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); results <- get("127.0.0.2", addr, "?hold=1") }()
	}
	for l.Open() < 3 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // their headers are read: active
	if get("127.0.0.2", addr, "") {
		t.Fatal("a fourth connection of an address whose three are all in flight was served")
	}
	// Another address is within both caps; its waiting connections are
	// evicted, oldest first, when it reaches its own cap.
	var waiting []net.Conn // three connections that send nothing: 127.0.0.3's cap
	for range 3 {
		c, err := dialFrom("127.0.0.3", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waiting = append(waiting, c)
		time.Sleep(20 * time.Millisecond) // accepted in this order
	}
	first := waiting[0]
	if !get("127.0.0.3", addr, "") {
		t.Fatal("a new connection of an address at its cap with waiting ones was not served")
	}
	_ = first.SetReadDeadline(time.Now().Add(time.Second)) // under the 2 s header timeout
	if _, err := first.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the oldest waiting connection was not the one evicted (%v)", err)
	}
	stillOpen := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, os.ErrDeadlineExceeded)
	}
	if !stillOpen(waiting[1]) || !stillOpen(waiting[2]) {
		t.Fatal("more than the oldest waiting connection was evicted")
	}
	// The whole cap (6: three in flight, 127.0.0.3's two waiting and one
	// served and gone, so five) then six with a new waiting one; a
	// seventh, from a third address, evicts the oldest waiting of all.
	extra, err := dialFrom("127.0.0.3", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	time.Sleep(20 * time.Millisecond)
	if !get("127.0.0.4", addr, "") {
		t.Fatal("a new connection at the cap, with waiting ones, was not served")
	}
	if stillOpen(waiting[1]) || !stillOpen(waiting[2]) || !stillOpen(extra) {
		t.Fatal("at the cap, the oldest waiting connection of all was not the one evicted")
	}
	close(release)
	wg.Wait()
	close(results)
	for ok := range results {
		if !ok {
			t.Fatal("a request in flight was evicted")
		}
	}
}
