package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/webhook"
)

// deliverer sends this instance's share of the due deliveries: it claims
// them from the store (so that no two instances send one), at most
// Config.PerEndpoint of an endpoint at once and none of an endpoint it is
// still sending to, so that a slow receiver holds only its own slots;
// Config.Concurrency in all. It wakes every Config.Poll, when this
// instance stores an event, and when an attempt ends.
type deliverer struct {
	m      *Manager
	cfg    webhook.Config
	client *http.Client
	lease  string // this instance's claims' name
	wakeCh chan struct{}

	mu       sync.Mutex
	inFlight int                          // attempts in flight, and claimed ones waiting
	busy     map[string]int               // endpoint → attempts in flight
	waiting  map[string][]*store.Delivery // endpoint → claimed, waiting for one of its slots

	ctx    context.Context // the attempts'; cancelled by Close after its deadline
	cancel context.CancelFunc
	sends  sync.WaitGroup
	stop   chan struct{}
	done   chan struct{}
}

// maxResponseRead bounds what is read of a receiver's answer: 64 KiB.
const maxResponseRead = 64 << 10

func newDeliverer(m *Manager, cfg webhook.Config) *deliverer {
	var lease [12]byte
	for i := range lease {
		lease[i] = byte(rand.Uint32())
	}
	d := &deliverer{m: m, cfg: cfg, client: cfg.Client(), lease: "lease_" + base64.RawURLEncoding.EncodeToString(lease[:]),
		wakeCh: make(chan struct{}, 1), busy: map[string]int{}, waiting: map[string][]*store.Delivery{}, stop: make(chan struct{}), done: make(chan struct{})}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d
}

// wake asks for a claim now; it never blocks. A nil deliverer (none on
// this instance) ignores it.
func (d *deliverer) wake() {
	if d == nil {
		return
	}
	select {
	case d.wakeCh <- struct{}{}:
	default:
	}
}

func (d *deliverer) run() {
	defer close(d.done)
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		case <-d.wakeCh:
		}
		d.claim()
	}
}

// claim leases what this instance may send now and starts sending it:
// at most PerEndpoint attempts of one endpoint run at once; a claimed
// delivery whose endpoint has none free waits for one (an attempt
// lasts Timeout at most, and the lease is twice that or more), and an
// endpoint whose slots are all taken, or spoken for, is not claimed for.
func (d *deliverer) claim() {
	d.mu.Lock()
	free := d.cfg.Concurrency - d.inFlight
	skip := make([]string, 0, len(d.busy))
	for ep, n := range d.busy {
		if n+len(d.waiting[ep]) >= d.cfg.PerEndpoint {
			skip = append(skip, ep)
		}
	}
	d.mu.Unlock()
	if free <= 0 {
		return
	}
	now := d.m.now()
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.Timeout)
	ds, err := d.m.events.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(d.cfg.Lease), Lease: d.lease,
		Limit: free, PerEndpoint: d.cfg.PerEndpoint, Skip: skip})
	cancel()
	if err != nil {
		if d.ctx.Err() == nil {
			d.m.logger.Warn("keys: claiming webhook deliveries failed; will retry", "err", err)
		}
		return
	}
	var start []*store.Delivery
	d.mu.Lock()
	for _, dl := range ds {
		d.inFlight++
		if d.busy[dl.EndpointID] < d.cfg.PerEndpoint {
			d.busy[dl.EndpointID]++
			start = append(start, dl)
		} else {
			d.waiting[dl.EndpointID] = append(d.waiting[dl.EndpointID], dl)
		}
	}
	d.sends.Add(len(ds))
	d.mu.Unlock()
	for _, dl := range start {
		go d.send(dl)
	}
}

// send makes one attempt of dl and records it, then the next waiting for
// its endpoint's slot, if any.
func (d *deliverer) send(dl *store.Delivery) {
	for dl != nil {
		d.sendOne(dl)
		d.mu.Lock()
		d.inFlight--
		d.sends.Done()
		ep := dl.EndpointID
		if q := d.waiting[ep]; len(q) > 0 {
			dl, d.waiting[ep] = q[0], q[1:]
			if len(d.waiting[ep]) == 0 {
				delete(d.waiting, ep)
			}
		} else {
			dl = nil
			if d.busy[ep]--; d.busy[ep] <= 0 {
				delete(d.busy, ep)
			}
		}
		d.mu.Unlock()
		d.wake()
	}
}

func (d *deliverer) sendOne(dl *store.Delivery) {
	m := d.m
	ctx, end := m.op(d.ctx, observe.Deliver)
	err := d.attempt(ctx, dl)
	if errors.Is(err, store.ErrNotFound) {
		err = nil // the endpoint was deleted meanwhile, with its deliveries
	}
	end(err)
	if err != nil && d.ctx.Err() == nil {
		m.logger.Warn("keys: recording a webhook delivery failed; another attempt follows its lease", "delivery", dl.ID, "err", err)
	}
}

func (d *deliverer) attempt(ctx context.Context, dl *store.Delivery) error {
	m := d.m
	ep, err := m.events.Endpoint(ctx, dl.EndpointID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted, with its deliveries
	}
	if err != nil {
		return err
	}
	if !ep.Enabled {
		dl.Status, dl.NextAt = store.DeliverySkipped, time.Time{}
		_, err := m.events.FinishDelivery(ctx, dl)
		return err
	}
	evs, err := m.events.Events(ctx, store.EventQuery{AccountID: dl.AccountID, ID: dl.EventID, Limit: 1})
	if err != nil {
		return err
	}
	now := storedTime(m.now()) // to the microsecond, as every time the API shows
	var a store.Attempt
	if len(evs) == 0 {
		a = store.Attempt{At: now, Error: "the event is past its retention"}
		dl.Tries = 1 + len(d.cfg.Schedule) + maxManualRetries // nothing left to send
	} else {
		a = d.post(ctx, ep, &evs[0], now)
		if d.ctx.Err() != nil {
			// Stopped mid-attempt (Close's deadline): no attempt to
			// record; the delivery is tried again after its lease.
			return nil
		}
	}
	dl.Tries++
	dl.Attempts = append(dl.Attempts, a)
	switch {
	case a.Code >= 200 && a.Code < 300:
		dl.Status, dl.NextAt = store.DeliverySucceeded, time.Time{}
	case dl.Tries <= len(d.cfg.Schedule):
		delay := d.cfg.Schedule[dl.Tries-1]
		delay += time.Duration(rand.Int64N(int64(delay)/10 + 1)) // jitter: up to a tenth more
		dl.Status, dl.NextAt = store.DeliveryPending, storedTime(a.At.Add(delay))
	default:
		dl.Status, dl.NextAt = store.DeliveryFailed, time.Time{}
	}
	failing, err := m.events.FinishDelivery(ctx, dl)
	if err != nil {
		return err
	}
	if !failing.IsZero() && m.now().Sub(failing) >= d.cfg.DisableAfter {
		return d.disable(ctx, ep.ID, failing)
	}
	return nil
}

// body is what a delivery posts: the Standard Webhooks payload.
type body struct {
	Type      event.Type      `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// post sends the event to the endpoint and says how it went.
func (d *deliverer) post(ctx context.Context, ep *store.Endpoint, e *event.Event, now time.Time) store.Attempt {
	a := store.Attempt{At: now}
	fail := func(msg string) store.Attempt {
		a.Error = msg
		a.Latency = time.Since(now)
		return a
	}
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	payload, err := json.Marshal(body{Type: e.Type, Timestamp: e.At.UTC(), Data: data})
	if err != nil {
		return fail("the event cannot be encoded")
	}
	sigs, err := d.signatures(ep, e.ID, now, payload)
	if err != nil {
		return fail("the endpoint's secret cannot be opened")
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(payload))
	if err != nil {
		return fail("the URL cannot be requested")
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["User-Agent"] = []string{"txcloud-keys-webhooks/1"}
	req.Header["webhook-id"] = []string{e.ID}
	req.Header["webhook-timestamp"] = []string{strconv.FormatInt(now.Unix(), 10)}
	req.Header["webhook-signature"] = []string{sigs}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		a.Latency = time.Since(start)
		a.Error = attemptError(err)
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	_ = resp.Body.Close()
	a.Latency, a.Code = time.Since(start), resp.StatusCode
	return a
}

// attemptError names why an attempt got no response, in words fit for the
// account to read (never the library's internals).
func attemptError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, webhook.ErrForbiddenAddress):
		return "the endpoint resolves to an address deliveries may not reach"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled (the instance stopped)"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "the endpoint's name does not resolve"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return "connection refused or unreachable"
	}
	return "the connection failed"
}

// signatures is the webhook-signature header: a v1 signature under the
// endpoint's secret, and during a roll's grace one under the previous
// secret too.
func (d *deliverer) signatures(ep *store.Endpoint, id string, now time.Time, payload []byte) (string, error) {
	m := d.m
	raw, err := m.openWebhookSecret(ep.ID, ep.Secret)
	if err != nil {
		return "", err
	}
	sig, err := webhook.Sign(webhook.Secret(webhook.SecretPrefix+base64.StdEncoding.EncodeToString(raw)), id, now, payload)
	if err != nil {
		return "", err
	}
	if len(ep.PreviousSecret) > 0 && now.Before(ep.PreviousUntil) {
		old, err := m.openWebhookSecret(ep.ID, ep.PreviousSecret)
		if err != nil {
			return "", err
		}
		s, err := webhook.Sign(webhook.Secret(webhook.SecretPrefix+base64.StdEncoding.EncodeToString(old)), id, now, payload)
		if err != nil {
			return "", err
		}
		sig += " " + s
	}
	return sig, nil
}

// disable disables an endpoint that has failed since failing, with its
// event; a change made meanwhile is read again.
func (d *deliverer) disable(ctx context.Context, id string, failing time.Time) error {
	m := d.m
	for range updateAttempts {
		old, err := m.events.Endpoint(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !old.Enabled || !old.FailingSince.Equal(failing) {
			return nil // disabled already, or it has recovered since
		}
		e := old.Clone()
		now := m.now()
		e.Enabled, e.DisabledReason, e.Version, e.UpdatedAt = false, "failing", old.Version+1, storedTime(now)
		evs := []event.Event{endpointEvent(ctx, event.EndpointDisabled, trusted, e, now)}
		switch err := m.store.Write(ctx, store.Write{Endpoint: e, Events: evs}); {
		case err == nil:
			m.logger.Info("keys: disabled a webhook endpoint that failed every attempt", "endpoint", id, "since", failing)
			m.stored(ctx, evs)
			return nil
		case errors.Is(err, store.ErrStale):
			continue
		default:
			return err
		}
	}
	return fmt.Errorf("keys: webhook endpoint %s kept changing", id)
}

// close stops claiming, and waits for the attempts in flight until ctx is
// done, then cancels them: their deliveries are attempted again after
// their lease, here or on another instance.
func (d *deliverer) close(ctx context.Context) error {
	close(d.stop)
	<-d.done
	waited := make(chan struct{})
	go func() {
		d.sends.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		d.cancel()
		return nil
	case <-ctx.Done():
		d.cancel()
		<-waited
		return ctx.Err()
	}
}
