package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/webhook"
)

// The delivery benchmarks: b.N events delivered from one instance to a
// local receiver (8 endpoints, 4 attempts in flight each: 32 at once),
// beside a bare net/http client posting the same bodies to the same
// receiver from 32 goroutines (the floor). Target: at least 0.5 times
// the floor's throughput. Each delivery also reads its endpoint and
// event, opens the sealed secret, signs, and records the attempt.

const benchEndpoints, benchPerEndpoint = 8, 4

// benchReceiver answers 204 and counts.
func benchReceiver(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = bytes.NewBuffer(nil).ReadFrom(r.Body)
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(rv.Close)
	return rv, &n
}

func benchBody() []byte {
	k := keys.APIKey{ID: "key_0123456789", Name: "bench", Prefix: "txc_live_abcd", Environment: keys.Live, Permissions: []string{"identity:read"},
		AllowedIPs: []string{}, CreatedAt: time.Now().UTC(), Enabled: true}
	b, _ := json.Marshal(map[string]any{"type": "key.created", "timestamp": time.Now().UTC(), "data": k})
	return b
}

func BenchmarkDeliverFloor(b *testing.B) {
	rv, n := benchReceiver(b)
	body := benchBody()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchEndpoints * benchPerEndpoint}, Timeout: 10 * time.Second}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range benchEndpoints * benchPerEndpoint {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				req, _ := http.NewRequest("POST", rv.URL, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if n.Load() != int64(b.N) {
		b.Fatalf("%d of %d received", n.Load(), b.N)
	}
}

func BenchmarkDeliver(b *testing.B) {
	ctx := context.Background()
	rv, n := benchReceiver(b)
	st := memstore.New()
	pepper := keys.WithPepper([]byte(strings.Repeat("p", 32)))
	cfg := webhook.Config{AllowLoopback: true, Concurrency: benchEndpoints * benchPerEndpoint, PerEndpoint: benchPerEndpoint, Poll: 5 * time.Millisecond}
	// The endpoints, made by an instance that delivers nothing.
	setupCfg := cfg
	setupCfg.Disabled = true
	m0, err := keys.New(st, pepper, keys.WithWebhooks(setupCfg))
	if err != nil {
		b.Fatal(err)
	}
	for i := range benchEndpoints {
		p := keys.Principal{AccountID: fmt.Sprint("acct_", i), Subject: "key_admin"}
		if _, err := m0.As(p).Webhooks().Create(ctx, webhook.EndpointCreate{URL: rv.URL, Events: []string{"key.created"}}); err != nil {
			b.Fatal(err)
		}
	}
	_ = m0.Close(ctx)
	n.Store(0)
	// b.N events, spread over the accounts, stored before delivery starts.
	data, _ := json.Marshal(keys.APIKey{ID: "key_0123456789", Name: "bench", Prefix: "txc_live_abcd", Environment: keys.Live,
		Permissions: []string{"identity:read"}, AllowedIPs: []string{}, CreatedAt: time.Now().UTC(), Enabled: true})
	now := time.Now().UTC()
	for i := 0; i < b.N; i += 1000 {
		var evs []event.Event
		for j := i; j < min(b.N, i+1000); j++ {
			evs = append(evs, event.Event{ID: fmt.Sprintf("evt_%09d", j), Type: event.KeyCreated, At: now, AccountID: fmt.Sprint("acct_", j%benchEndpoints),
				KeyID: "key_0123456789", Environment: "live", Data: data})
		}
		if err := st.Write(ctx, store.Write{Events: evs}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	m, err := keys.New(st, pepper, keys.WithWebhooks(cfg))
	if err != nil {
		b.Fatal(err)
	}
	for n.Load() < int64(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	_ = m.Close(ctx)
}
