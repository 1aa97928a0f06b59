package keys_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/webhook"
)

// The Standard Webhooks specification's published test vector.
func TestStandardWebhooksVector(t *testing.T) {
	const (
		secret = webhook.Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		want   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	body := []byte(`{"test": 2432232314}`)
	at := time.Unix(1614265330, 0)
	got, err := webhook.Sign(secret, id, at, body)
	if err != nil || got != want {
		t.Fatalf("Sign = %q, %v; want %q", got, err, want)
	}
	if err := webhook.Verify(secret, id, "1614265330", "v1,bm9wZQ== "+want, body, at.Add(time.Minute)); err != nil {
		t.Fatalf("Verify refused the vector among other signatures: %v", err)
	}
	for name, c := range map[string]struct {
		body []byte
		ts   string
		now  time.Time
		want error
	}{
		"altered body": {[]byte(`{"test": 2432232315}`), "1614265330", at, webhook.ErrNoSignature},
		"old":          {body, "1614265330", at.Add(6 * time.Minute), webhook.ErrTimestamp},
		"future":       {body, "1614265330", at.Add(-6 * time.Minute), webhook.ErrTimestamp},
		"bad ts":       {body, "16142653x0", at, webhook.ErrTimestamp},
	} {
		if err := webhook.Verify(secret, id, c.ts, want, c.body, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, c.want)
		}
	}
}

// independentSignature computes a Standard Webhooks signature without the
// library: HMAC-SHA256 of id.timestamp.body under the base64-decoded
// secret.
func independentSignature(t testing.TB, secret, id, ts string, body []byte) string {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// received is one delivery a test receiver got.
type received struct {
	id, ts, sig string
	body        []byte
}

// receiver is a loopback endpoint answering status(n) to its nth request
// (from 1).
type receiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

func newReceiver(t testing.TB, status func(n int) int) *receiver {
	rv := &receiver{}
	rv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rv.mu.Lock()
		rv.got = append(rv.got, received{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), b})
		n := len(rv.got)
		rv.mu.Unlock()
		w.WriteHeader(status(n))
	}))
	t.Cleanup(rv.Close)
	return rv
}

func (rv *receiver) deliveries() []received {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]received(nil), rv.got...)
}

// fast is a delivery configuration scaled down for tests: loopback
// allowed, retries within milliseconds.
func fast() webhook.Config {
	return webhook.Config{AllowLoopback: true, Schedule: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond},
		Poll: 10 * time.Millisecond, Timeout: 2 * time.Second, DisableAfter: time.Hour}
}

// webhookManager is a Manager on st delivering with cfg. The tests that
// deliver skip under mutation testing: they exercise no file it mutates
// (deliver.go and webhooks.go are not on a request's path), and each
// mutant would pay their second.
func webhookManager(t testing.TB, st store.Store, cfg webhook.Config, opts ...keys.Option) *keys.Manager {
	t.Helper()
	if buildtag.Mutation {
		t.Skip("delivers webhooks: not on the path of a request; skipped under mutation testing")
	}
	m, err := keys.New(st, append([]keys.Option{keys.WithWebhooks(cfg), keys.WithPepper([]byte(strings.Repeat("p", 32)))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func writer(account string) keys.Principal {
	return keys.Principal{AccountID: account, Subject: "key_admin_" + account, Permissions: []string{"developers:read", "developers:write"}}
}

func waitFor(t testing.TB, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A receiver that fails three times, then recovers, gets the event with
// the same webhook-id every time, each signed as the specification says.
func TestDeliveryIsRetriedUntilTheReceiverRecovers(t *testing.T) {
	ctx := context.Background()
	rv := newReceiver(t, func(n int) int {
		if n <= 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	m := webhookManager(t, memstore.New(), fast())
	hooks := m.As(writer("acct_a")).Webhooks()
	ep, err := hooks.Create(ctx, webhook.EndpointCreate{URL: rv.URL + "/hook", Events: []string{"key.created"}})
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(ep.Secret), "whsec_")); err != nil || len(raw) != 32 || !strings.HasPrefix(string(ep.Secret), "whsec_") {
		t.Fatalf("secret %q: want whsec_ and the base64 of 32 bytes", string(ep.Secret))
	}
	k, err := m.As(writer("acct_a")).Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 attempts", 5*time.Second, func() bool { return len(rv.deliveries()) >= 4 })
	got := rv.deliveries()
	for i, d := range got {
		if d.id != got[0].id || !strings.HasPrefix(d.id, "evt_") {
			t.Fatalf("attempt %d has webhook-id %q, the first %q", i, d.id, got[0].id)
		}
		if want := independentSignature(t, string(ep.Secret), d.id, d.ts, d.body); d.sig != want {
			t.Fatalf("attempt %d signed %q, want %q", i, d.sig, want)
		}
		var b struct {
			Type string      `json:"type"`
			Data keys.APIKey `json:"data"`
		}
		if err := json.Unmarshal(d.body, &b); err != nil || b.Type != "key.created" || b.Data.ID != k.ID || strings.Contains(string(d.body), string(k.Key)) {
			t.Fatalf("attempt %d body %s", i, d.body)
		}
	}
	// The delivery reads as succeeded after 4 attempts.
	var l *webhook.DeliveryList
	waitFor(t, "delivery recorded", 2*time.Second, func() bool {
		l, err = hooks.Deliveries(ctx, ep.ID, 0, "")
		return err == nil && len(l.Data) == 1 && l.Data[0].Status == "succeeded"
	})
	d := l.Data[0]
	// Each retry was due its delay after the failed attempt, jittered by
	// at most a tenth: here 20 to 22 ms (what the receiver saw is later
	// by the claim's poll, so the bound is read from the attempts).
	for i := 1; i < len(d.Attempts); i++ {
		if gap := d.Attempts[i].At.Sub(d.Attempts[i-1].At); gap < 20*time.Millisecond {
			t.Fatalf("attempt %d came %v after the one before, under the 20 ms delay", i, gap)
		}
	}
	if d.AttemptCount != 4 || len(d.Attempts) != 4 || *d.Attempts[0].ResponseCode != 503 || *d.Attempts[3].ResponseCode != 204 || d.EventID != got[0].id || d.NextAttemptAt != nil {
		t.Fatalf("delivery %+v", d)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(rv.deliveries()); n != 4 {
		t.Fatalf("%d requests after success, want 4", n)
	}
}

// An endpoint failing every attempt for DisableAfter is disabled, with
// its event; the event's delivery stays and can be retried by hand, a
// bounded number of times.
func TestFailingEndpointIsDisabledAndAttemptsAreBounded(t *testing.T) {
	ctx := context.Background()
	rv := newReceiver(t, func(int) int { return http.StatusInternalServerError })
	cfg := fast()
	cfg.DisableAfter = 30 * time.Millisecond
	m := webhookManager(t, memstore.New(), cfg)
	as := m.As(writer("acct_a"))
	ep, err := as.Webhooks().Create(ctx, webhook.EndpointCreate{URL: rv.URL, Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "disabled", 5*time.Second, func() bool {
		e, err := as.Webhooks().Get(ctx, ep.ID)
		return err == nil && !e.Enabled && e.DisabledReason == "failing"
	})
	evs, err := as.Events(ctx, event.Filter{Type: event.EndpointDisabled})
	if err != nil || len(evs.Data) != 1 {
		t.Fatalf("webhook_endpoint.disabled events: %+v, %v", evs, err)
	}
	// Every delivery ends (failed, or skipped once the endpoint is
	// disabled), and each can be retried by hand at most 10 times more.
	var dl *webhook.DeliveryList
	waitFor(t, "deliveries settle", 5*time.Second, func() bool {
		dl, err = as.Webhooks().Deliveries(ctx, ep.ID, 100, "")
		if err != nil {
			return false
		}
		for _, d := range dl.Data {
			if d.Status == "pending" {
				return false
			}
		}
		return true
	})
	if _, err := as.Webhooks().Update(ctx, ep.ID, webhook.EndpointUpdate{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	var created webhook.Delivery
	for _, d := range dl.Data {
		if d.Status == "failed" || d.Status == "skipped" {
			created = d
		}
	}
	if created.ID == "" {
		t.Fatalf("no ended delivery in %+v", dl.Data)
	}
	// Retried by hand, each time once an attempt has followed the last
	// retry (a retry of a delivery still waiting is only a new due time).
	// (The endpoint fails on: after DisableAfter it is disabled again,
	// and a delivery due then is skipped unattempted: enable it again.)
	tries := func() int {
		l, _ := as.Webhooks().Deliveries(ctx, ep.ID, 100, "")
		for _, d := range l.Data {
			if d.ID != created.ID {
				continue
			}
			if d.Status == "skipped" {
				if _, err := as.Webhooks().Update(ctx, ep.ID, webhook.EndpointUpdate{Enabled: ptr(true)}); err != nil {
					t.Fatal(err)
				}
				if _, err := as.Webhooks().Retry(ctx, ep.ID, created.ID); err != nil && !strings.Contains(err.Error(), "being attempted") {
					return 1 << 20 // refused: the loop's next retry says why
				}
			}
			return d.AttemptCount
		}
		return -1
	}
	var refused error
	for range 100 {
		before := tries()
		_, err := as.Webhooks().Retry(ctx, ep.ID, created.ID)
		if errors.Is(err, keys.ErrValidation) && strings.Contains(err.Error(), "being attempted") {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if err != nil {
			refused = err
			break
		}
		waitFor(t, "the retry attempted", 5*time.Second, func() bool { return tries() > before })
	}
	// 1 + 4 scheduled + 10 by hand, exactly, for this event: retries by
	// hand go on until the delivery has been tried that often, then are
	// refused.
	bound := 1 + len(cfg.Schedule) + 10
	sent := 0
	for _, d := range rv.deliveries() {
		if d.id == created.EventID {
			sent++
		}
	}
	if sent != bound || refused == nil || !strings.Contains(refused.Error(), "the most it may be") {
		t.Fatalf("the event was sent %d times (%d before the retries by hand, then %v): want exactly %d, then a refusal", sent, created.AttemptCount, refused, bound)
	}
}

// mapResolver resolves names from a map: a test's DNS.
type mapResolver struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
}

func (r *mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.names[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *mapResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names[host] = nil
	for _, a := range addrs {
		r.names[host] = append(r.names[host], netip.MustParseAddr(a))
	}
}

// No server-side request forgery: addresses a delivery may not reach are
// refused at registration, and where they are dialled.
func TestWebhookURLsCannotReachInternalAddresses(t *testing.T) {
	ctx := context.Background()
	res := &mapResolver{names: map[string][]netip.Addr{}}
	res.set("loopback.example", "127.0.0.1")
	res.set("metadata.example", "169.254.169.254")
	res.set("mixed.example", "93.184.215.14", "10.1.2.3")
	res.set("public.example", "93.184.215.14")
	m := webhookManager(t, memstore.New(), webhook.Config{Resolver: res})
	hooks := m.As(writer("acct_a")).Webhooks()
	for _, u := range []string{
		"https://127.0.0.1/hook", "https://[::1]/hook", "https://10.0.0.1/hook", "https://169.254.169.254/latest/meta-data",
		"https://0.0.0.0/", "https://localhost/", "https://loopback.example/", "https://metadata.example/", "https://mixed.example/",
		"https://[::ffff:127.0.0.1]/", "https://100.100.100.200/", "https://[fd00:ec2::254]/", "https://192.168.1.1/", "https://[fe80::1]/",
		"http://public.example/", "ftp://public.example/", "https://user:pw@public.example/", "/relative", "https://224.0.0.1/",
	} {
		_, err := hooks.Create(ctx, webhook.EndpointCreate{URL: u, Events: []string{"*"}})
		var ve *keys.ValidationError
		if !errors.As(err, &ve) || ve.Param != "url" {
			t.Errorf("%s: %v, want a validation error on url", u, err)
		}
	}
	if _, err := hooks.Create(ctx, webhook.EndpointCreate{URL: "https://public.example/hook", Events: []string{"*"}}); err != nil {
		t.Fatalf("a public name: %v", err)
	}
	if l, _ := hooks.List(ctx); len(l.Data) != 1 {
		t.Fatalf("%d endpoints stored, want only the public one", len(l.Data))
	}
}

// Where the address is dialled: a name that resolves to loopback at
// delivery time (DNS rebinding) is never dialled, nor a redirect followed.
func TestDeliveryDialsOnlyAllowedAddresses(t *testing.T) {
	var hits atomic.Int64
	inner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer inner.Close()
	port := inner.Listener.Addr().(*net.TCPAddr).Port
	res := &mapResolver{names: map[string][]netip.Addr{}}
	res.set("rebind.example", "127.0.0.1")
	cfg, err := webhook.Config{Resolver: res, AllowHTTP: true}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Client()
	for _, u := range []string{"http://rebind.example:" + strconv.Itoa(port) + "/", inner.URL, "http://[::1]:" + strconv.Itoa(port) + "/"} {
		resp, err := c.Post(u, "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Errorf("%s: %v, want ErrForbiddenAddress", u, err)
		}
	}
	// A redirect is not followed, even to an allowed address.
	cfg.AllowLoopback = true
	redirect := httptest.NewServer(http.RedirectHandler(inner.URL, http.StatusFound))
	defer redirect.Close()
	resp, err := cfg.Client().Post(redirect.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || hits.Load() != 0 {
		t.Fatalf("status %d, %d hits on the redirect's target", resp.StatusCode, hits.Load())
	}
}

// Isolation: another account's endpoint, event or delivery is a 404.
func TestWebhooksAndEventsAreIsolated(t *testing.T) {
	ctx := context.Background()
	rv := newReceiver(t, func(int) int { return 200 })
	m := webhookManager(t, memstore.New(), fast())
	a, b := m.As(writer("acct_a")), m.As(writer("acct_b"))
	ep, err := a.Webhooks().Create(ctx, webhook.EndpointCreate{URL: rv.URL, Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(ctx, keys.APIKeyCreate{Name: "a", Environment: keys.Live}); err != nil {
		t.Fatal(err)
	}
	evs, err := a.Events(ctx, event.Filter{})
	if err != nil || len(evs.Data) != 2 {
		t.Fatalf("account a's events: %+v, %v", evs, err)
	}
	var dl *webhook.DeliveryList
	waitFor(t, "deliveries", 2*time.Second, func() bool {
		dl, _ = a.Webhooks().Deliveries(ctx, ep.ID, 0, "")
		return dl != nil && len(dl.Data) == 2
	})
	checks := map[string]error{}
	_, checks["get endpoint"] = b.Webhooks().Get(ctx, ep.ID)
	_, checks["update endpoint"] = b.Webhooks().Update(ctx, ep.ID, webhook.EndpointUpdate{Enabled: ptr(false)})
	checks["delete endpoint"] = b.Webhooks().Delete(ctx, ep.ID)
	_, checks["roll secret"] = b.Webhooks().RollSecret(ctx, ep.ID, 0)
	_, checks["test"] = b.Webhooks().Test(ctx, ep.ID)
	_, checks["deliveries"] = b.Webhooks().Deliveries(ctx, ep.ID, 0, "")
	_, checks["retry"] = b.Webhooks().Retry(ctx, ep.ID, dl.Data[0].ID)
	_, checks["event"] = b.Event(ctx, evs.Data[0].ID)
	for what, err := range checks {
		if !errors.Is(err, keys.ErrNotFound) {
			t.Errorf("%s of another account's: %v, want ErrNotFound", what, err)
		}
	}
	if l, err := b.Events(ctx, event.Filter{}); err != nil || len(l.Data) != 0 {
		t.Fatalf("account b sees %+v, %v", l, err)
	}
	if l, _ := b.Webhooks().List(ctx); len(l.Data) != 0 {
		t.Fatalf("account b lists %+v", l.Data)
	}
}

// A slow receiver (holding each delivery 10 s) delays no other account's
// deliveries.
func TestSlowReceiverDelaysNoOtherAccount(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	var held atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held.Add(1)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	defer close(release)
	fastRv := newReceiver(t, func(int) int { return 200 })
	cfg := fast()
	cfg.Timeout = 15 * time.Second
	m := webhookManager(t, memstore.New(), cfg)
	a, b := m.As(writer("acct_slow")), m.As(writer("acct_quick"))
	if _, err := a.Webhooks().Create(ctx, webhook.EndpointCreate{URL: slow.URL, Events: []string{"key.created"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Webhooks().Create(ctx, webhook.EndpointCreate{URL: fastRv.URL, Events: []string{"key.created"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := a.Create(ctx, keys.APIKeyCreate{Name: "k" + strconv.Itoa(i), Environment: keys.Live}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the slow receiver holds its deliveries", 2*time.Second, func() bool { return held.Load() >= 2 })
	start := time.Now()
	if _, err := b.Create(ctx, keys.APIKeyCreate{Name: "b", Environment: keys.Live}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other account's delivery", time.Second, func() bool { return len(fastRv.deliveries()) == 1 })
	t.Logf("delivered in %v while the slow receiver holds %d", time.Since(start), held.Load())
	if held.Load() > 2 {
		t.Fatalf("the slow receiver holds %d attempts, more than its 2", held.Load())
	}
}

// A failed store write leaves no event; the hook hears exactly the stored
// events, with the same IDs.
func TestEventsAreWrittenWithTheirChange(t *testing.T) {
	ctx := context.Background()
	var heard []event.Event
	var mu sync.Mutex
	st := memstore.New()
	m := webhookManager(t, st, fast(), keys.WithMaxKeysPerAccount(1), keys.WithEventHook(func(_ context.Context, e event.Event) {
		mu.Lock()
		heard = append(heard, e)
		mu.Unlock()
	}))
	as := m.As(writer("acct_a"))
	k, err := as.Create(ctx, keys.APIKeyCreate{Name: "one", Environment: keys.Live})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := as.Create(ctx, keys.APIKeyCreate{Name: "two", Environment: keys.Live}); !errors.Is(err, keys.ErrKeyLimit) {
		t.Fatalf("second key: %v", err)
	}
	if _, err := as.Update(ctx, k.ID, keys.APIKeyUpdate{Name: keys.Change("renamed"), Enabled: keys.Change(false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := as.Update(ctx, k.ID, keys.APIKeyUpdate{Permissions: keys.Change([]string{"nope:nope"})}); err == nil {
		t.Fatal("an invalid update passed")
	}
	if _, err := as.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	l, err := as.Events(ctx, event.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range l.Data {
		types = append(types, string(e.Type))
		if e.Actor != "key_admin_acct_a" || e.KeyID != k.ID {
			t.Errorf("%s: actor %q key %q", e.Type, e.Actor, e.KeyID)
		}
	}
	if got := strings.Join(types, " "); got != "key.revoked key.disabled key.updated key.created" {
		t.Fatalf("events newest first: %s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 4 {
		t.Fatalf("the hook heard %d events", len(heard))
	}
	for i := range heard {
		if heard[i].ID != l.Data[3-i].ID {
			t.Fatalf("the hook heard %s, the log holds %s", heard[i].ID, l.Data[3-i].ID)
		}
	}
	// Paging visits each event once.
	seen := map[string]bool{}
	cursor := ""
	for {
		p, err := as.Events(ctx, event.Filter{Limit: 1, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Data {
			if seen[e.ID] {
				t.Fatalf("%s twice", e.ID)
			}
			seen[e.ID] = true
		}
		if !p.HasMore {
			break
		}
		cursor = p.NextCursor
	}
	if len(seen) != 4 {
		t.Fatalf("paging saw %d events", len(seen))
	}
	if e, err := as.Event(ctx, l.Data[0].ID); err != nil || e.Type != event.KeyRevoked {
		t.Fatalf("Event: %+v, %v", e, err)
	}
	if l, _ := as.Events(ctx, event.Filter{Type: event.KeyCreated}); len(l.Data) != 1 {
		t.Fatalf("type filter: %d", len(l.Data))
	}
}

// A claim held by an instance that died is taken by another after its
// lease, and delivered.
func TestDeadInstancesClaimIsDeliveredAfterItsLease(t *testing.T) {
	ctx := context.Background()
	rv := newReceiver(t, func(int) int { return 200 })
	st := memstore.New()
	cfg := fast()
	cfg.Disabled = true // the first instance only writes
	m1 := webhookManager(t, st, cfg)
	as := m1.As(writer("acct_a"))
	if _, err := as.Webhooks().Create(ctx, webhook.EndpointCreate{URL: rv.URL, Events: []string{"key.created"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := as.Create(ctx, keys.APIKeyCreate{Name: "k", Environment: keys.Live}); err != nil {
		t.Fatal(err)
	}
	// The dead instance: it claimed the delivery, then died.
	now := time.Now()
	ds, err := st.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(300 * time.Millisecond), Lease: "dead", Limit: 10, PerEndpoint: 2})
	if err != nil || len(ds) != 1 {
		t.Fatalf("claimed %d, %v", len(ds), err)
	}
	cfg.Disabled = false
	webhookManager(t, st, cfg)
	time.Sleep(150 * time.Millisecond)
	if n := len(rv.deliveries()); n != 0 {
		t.Fatalf("delivered during the dead instance's lease")
	}
	waitFor(t, "delivered after the lease", 2*time.Second, func() bool { return len(rv.deliveries()) == 1 })
	// The dead instance's late answer is refused: another claim holds it.
	ds[0].Status = store.DeliveryFailed
	if _, err := st.FinishDelivery(ctx, ds[0]); !errors.Is(err, store.ErrStale) {
		t.Fatalf("a lost claim finished: %v", err)
	}
}

// A test key's endpoints are test endpoints: they hear test keys' events
// only, and a test key sees no live endpoint.
func TestTestEndpointsHearTestEventsOnly(t *testing.T) {
	ctx := context.Background()
	live, test := newReceiver(t, func(int) int { return 200 }), newReceiver(t, func(int) int { return 200 })
	m := webhookManager(t, memstore.New(), fast())
	admin := m.As(writer("acct_a"))
	tp := writer("acct_a")
	tp.Environment = keys.Test
	tester := m.As(tp)
	le, err := admin.Webhooks().Create(ctx, webhook.EndpointCreate{URL: live.URL, Events: []string{"key.created"}})
	if err != nil || le.Environment != "live" {
		t.Fatalf("live endpoint: %+v, %v", le, err)
	}
	te, err := tester.Webhooks().Create(ctx, webhook.EndpointCreate{URL: test.URL, Events: []string{"key.created"}})
	if err != nil || te.Environment != "test" {
		t.Fatalf("test endpoint: %+v, %v", te, err)
	}
	if _, err := tester.Webhooks().Create(ctx, webhook.EndpointCreate{Environment: "live", URL: test.URL, Events: []string{"*"}}); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("a test key creating a live endpoint: %v", err)
	}
	if _, err := tester.Webhooks().Get(ctx, le.ID); !errors.Is(err, keys.ErrNotFound) {
		t.Fatalf("a test key reading a live endpoint: %v", err)
	}
	if l, _ := tester.Webhooks().List(ctx); len(l.Data) != 1 || l.Data[0].ID != te.ID {
		t.Fatalf("a test key lists %+v", l.Data)
	}
	if _, err := admin.Create(ctx, keys.APIKeyCreate{Name: "l", Environment: keys.Live}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Create(ctx, keys.APIKeyCreate{Name: "t", Environment: keys.Test}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both delivered", 2*time.Second, func() bool { return len(live.deliveries()) == 1 && len(test.deliveries()) == 1 })
	time.Sleep(50 * time.Millisecond)
	for name, rv := range map[string]*receiver{"live": live, "test": test} {
		got := rv.deliveries()
		var b struct {
			Data keys.APIKey `json:"data"`
		}
		if len(got) != 1 || json.Unmarshal(got[0].body, &b) != nil || string(b.Data.Environment) != name {
			t.Fatalf("the %s endpoint got %d deliveries (%s)", name, len(got), b.Data.Environment)
		}
	}
	if l, _ := tester.Events(ctx, event.Filter{}); len(l.Data) != 2 { // the test endpoint's creation, the test key's
		t.Fatalf("a test key sees %d events", len(l.Data))
	}
}

// A rolled secret: during the grace both secrets sign each delivery (two
// signatures in one header), after a roll without grace only the new one;
// the store holds every secret sealed, never its bytes.
func TestRollSecretSignsWithBothDuringTheGrace(t *testing.T) {
	ctx := context.Background()
	rv := newReceiver(t, func(int) int { return 204 })
	st := memstore.New()
	m := webhookManager(t, st, fast())
	hooks := m.As(writer("acct_roll")).Webhooks()
	first, err := hooks.Create(ctx, webhook.EndpointCreate{URL: rv.URL, Events: []string{"webhook.test"}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := hooks.RollSecret(ctx, first.ID, time.Hour)
	if err != nil || second.Secret == first.Secret || !strings.HasPrefix(string(second.Secret), "whsec_") {
		t.Fatalf("roll: %v", err)
	}
	if got, _ := hooks.Get(ctx, first.ID); got.Secret != "" {
		t.Fatal("a read shows the secret")
	}
	stored, err := st.Endpoint(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []webhook.Secret{first.Secret, second.Secret} {
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(s), "whsec_"))
		for _, kept := range [][]byte{stored.Secret, stored.PreviousSecret} {
			if len(kept) != 24+32+16 || strings.Contains(string(kept), string(raw)) || strings.Contains(string(kept), string(s)) {
				t.Fatalf("a secret is kept unsealed (%d bytes)", len(kept))
			}
		}
	}
	verify := func(want int) received {
		t.Helper()
		if _, err := hooks.Test(ctx, first.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the test delivery", 2*time.Second, func() bool { return len(rv.deliveries()) == want })
		return rv.deliveries()[want-1]
	}
	d := verify(1)
	sigs := strings.Fields(d.sig)
	if len(sigs) != 2 || sigs[0] != independentSignature(t, string(second.Secret), d.id, d.ts, d.body) ||
		sigs[1] != independentSignature(t, string(first.Secret), d.id, d.ts, d.body) {
		t.Fatalf("during the grace: %q, want the new secret's signature then the old one's", d.sig)
	}
	third, err := hooks.RollSecret(ctx, first.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	d = verify(2)
	if d.sig != independentSignature(t, string(third.Secret), d.id, d.ts, d.body) {
		t.Fatalf("after a roll without grace: %q, want the new secret's signature alone", d.sig)
	}
	if _, err := hooks.RollSecret(ctx, first.ID, 24*time.Hour+time.Second); !errors.Is(err, keys.ErrValidation) {
		t.Fatalf("a grace over 24 h: %v", err)
	}
}

// A roll of the signing secret with an idempotency key, sent again (a
// client that lost the answer), returns the first answer with its secret
// and rolls nothing more: a second roll would have ended the grace of the
// secret the receiver still holds. Another grace or another endpoint
// under the same key is a conflict.
func TestRollSecretIsIdempotent(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	m := webhookManager(t, st, fast())
	hooks := m.As(writer("acct_idem_roll")).Webhooks()
	first, err := hooks.Create(ctx, webhook.EndpointCreate{URL: "http://127.0.0.1:9/hook", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := hooks.Create(ctx, webhook.EndpointCreate{URL: "http://127.0.0.1:9/other", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	roll := func(id string, grace time.Duration) (*webhook.Endpoint, error) {
		return hooks.RollSecret(ctx, id, grace, keys.IdempotencyKey("roll-secret-0001"))
	}
	a, err := roll(first.ID, time.Hour)
	if err != nil || a.Replayed {
		t.Fatalf("the roll: %v (replayed %v)", err, a != nil && a.Replayed)
	}
	b, err := roll(first.ID, time.Hour)
	if err != nil || !b.Replayed || b.Secret != a.Secret || a.Secret == first.Secret {
		t.Fatalf("the retry: %v (replayed %v, same secret %v)", err, b != nil && b.Replayed, b != nil && b.Secret == a.Secret)
	}
	stored, err := st.Endpoint(ctx, first.ID)
	if err != nil || stored.Version != 2 || len(stored.PreviousSecret) == 0 {
		t.Fatalf("after a roll and its retry: version %d, a previous secret %v (%v)", stored.Version, len(stored.PreviousSecret) > 0, err)
	}
	for _, c := range []struct {
		id    string
		grace time.Duration
	}{{first.ID, 0}, {other.ID, time.Hour}} {
		if _, err := roll(c.id, c.grace); !errors.Is(err, keys.ErrIdempotencyConflict) {
			t.Fatalf("the key again for %s with %v of grace: %v", c.id, c.grace, err)
		}
	}
	if s, _ := st.Endpoint(ctx, first.ID); s.Version != 2 {
		t.Fatalf("a refused retry rolled: version %d", s.Version)
	}
	if s, _ := st.Endpoint(ctx, other.ID); s.Version != 1 {
		t.Fatalf("a conflict rolled the other endpoint: version %d", s.Version)
	}
}

// A receiver cannot make the server read without bound, nor wait without
// bound: at most 64 KiB of an answer is read (the connection is then
// dropped), and an attempt ends after the Timeout.
func TestReceiverCannotHoldTheSender(t *testing.T) {
	ctx := context.Background()
	var written atomic.Int64
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 32<<10)
		for written.Load() < 1<<30 { // a gigabyte, if the sender read it all
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer endless.Close()
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then net/http notices the client leaving
		<-r.Context().Done()
	}))
	defer silent.Close()
	cfg := fast()
	cfg.Timeout = 300 * time.Millisecond
	m := webhookManager(t, memstore.New(), cfg)
	as := m.As(writer("acct_hold"))
	big, err := as.Webhooks().Create(ctx, webhook.EndpointCreate{URL: endless.URL, Events: []string{"webhook.test"}})
	if err != nil {
		t.Fatal(err)
	}
	mute, err := as.Webhooks().Create(ctx, webhook.EndpointCreate{URL: silent.URL, Events: []string{"webhook.test"}})
	if err != nil {
		t.Fatal(err)
	}
	first := func(id string) *webhook.Delivery {
		l, err := as.Webhooks().Deliveries(ctx, id, 1, "")
		if err != nil || len(l.Data) == 0 || len(l.Data[0].Attempts) == 0 {
			return nil
		}
		return &l.Data[0]
	}
	for _, id := range []string{big.ID, mute.ID} {
		if _, err := as.Webhooks().Test(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both attempted", 5*time.Second, func() bool { return first(big.ID) != nil && first(mute.ID) != nil })
	if d := first(big.ID); d.Status != "succeeded" || written.Load() > 16<<20 {
		t.Fatalf("an endless answer: %s, %d bytes written before the sender let go", d.Status, written.Load())
	}
	a := first(mute.ID).Attempts[0]
	if a.Error != "timeout" || a.ResponseCode != nil || a.LatencyMS < 250 || a.LatencyMS > 2000 {
		t.Fatalf("a receiver that never answers: %+v, want a timeout after about 300 ms", a)
	}
}
