package connlimit_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/txcloud/keys/connlimit"
)

// A server whose listener holds at most 4,096 connections, 256 of them
// from any one address; its ConnState tells the listener which ones are
// serving a request (never evicted).
func Example() {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ln := connlimit.New(inner, connlimit.Limits{Max: 4096, PerAddr: 256})
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }),
		ConnState:         ln.ConnState,
		ReadHeaderTimeout: 2 * time.Second, // a trickle of headers holds a slot 2 s at most
		IdleTimeout:       10 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()

	resp, err := http.Get("http://" + inner.Addr().String())
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body), ln.Open())
	// Output: hello 1
}
