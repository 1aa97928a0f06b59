// Command webhookreceiver is a webhook endpoint for trying webhooks out:
// it checks each delivery's Standard Webhooks signature with the secret in
// WEBHOOK_SECRET (package webhook's Verify), prints what it got, and
// answers 204, or 400 to a delivery whose signature is wrong (the sender
// then retries it). docs/http-api.md runs it beside the quickstart server.
//
//	WEBHOOK_SECRET=whsec_… go run ./cmd/webhookreceiver -addr 127.0.0.1:9000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/txcloud/keys/webhook"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to listen on")
	flag.Parse()
	secret := webhook.Secret(os.Getenv("WEBHOOK_SECRET"))
	if secret == "" {
		log.Fatal("set WEBHOOK_SECRET to the endpoint's signing secret (whsec_…)")
	}
	var mu sync.Mutex
	seen := map[string]bool{} // webhook-ids handled: deliveries are at least once
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		if err := webhook.Verify(secret, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, time.Now()); err != nil {
			fmt.Printf("refused %s: %v\n", id, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var e struct {
			Type string `json:"type"`
			Data struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &e)
		mu.Lock()
		again := seen[id]
		seen[id] = true
		mu.Unlock()
		if again {
			fmt.Printf("verified %s again (a retry): ignored\n", id)
		} else {
			fmt.Printf("verified %s %s %s %q\n", id, e.Type, e.Data.ID, e.Data.Name)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	log.Printf("listening on http://%s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
