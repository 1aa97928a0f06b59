package keys

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/webhook"
)

// ErrWebhookLimit: the account holds the most webhook endpoints it may
// (webhook.Config.MaxEndpoints). It is the same value as
// store.ErrEndpointLimit.
var ErrWebhookLimit = store.ErrEndpointLimit

// Webhooks manages one account's webhook endpoints (package webhook), for
// the principal of a Scoped. An endpoint is live or test, and receives
// that environment's events: a test principal, as it sees only test keys,
// sees and manages only test endpoints (another is ErrNotFound) and
// creates only test endpoints.
type Webhooks struct{ s Scoped }

// Webhooks returns the principal's account's webhook endpoints.
func (s Scoped) Webhooks() Webhooks { return Webhooks{s: s} }

// maxManualRetries bounds the retries by hand of one delivery, on top of
// its schedule: a tenant cannot make the library send more than
// 1 + len(Schedule) + maxManualRetries requests per event and endpoint.
const maxManualRetries = 10

// maxRollSecretGrace bounds how long an old signing secret keeps signing
// beside the new one: 24 hours.
const maxRollSecretGrace = 24 * time.Hour

// webhookSecretBytes is the size of a new signing secret.
const webhookSecretBytes = 32

func (w Webhooks) begin(ctx context.Context) (context.Context, func(error), error) {
	m, c := w.s.m, w.s.c
	ctx, end := m.op(ctx, observe.Webhooks)
	if err := m.readsEvents(c); err != nil {
		end(err)
		return ctx, nil, err
	}
	return ctx, end, nil
}

// List returns the account's endpoints, oldest first (at most
// webhook.Config.MaxEndpoints), without their secrets.
func (w Webhooks) List(ctx context.Context) (_ *webhook.EndpointList, err error) {
	ctx, end, err := w.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	eps, err := w.s.m.events.Endpoints(ctx, w.s.c.p.AccountID)
	if err != nil {
		return nil, fmt.Errorf("%w: reading webhook endpoints: %w", ErrUnavailable, err)
	}
	out := &webhook.EndpointList{Data: make([]webhook.Endpoint, 0, len(eps))}
	for _, e := range eps {
		if env := w.s.c.p.Environment; env == "" || e.Environment == string(env) {
			out.Data = append(out.Data, webhookOf(e))
		}
	}
	return out, nil
}

// Get returns one of the account's endpoints, or ErrNotFound.
func (w Webhooks) Get(ctx context.Context, id string) (_ *webhook.Endpoint, err error) {
	_, end, e, err := w.open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	ep := webhookOf(e)
	return &ep, nil
}

// open begins a call on one of the account's endpoints, and reads it.
func (w Webhooks) open(ctx context.Context, id string) (context.Context, func(error), *store.Endpoint, error) {
	ctx, end, err := w.begin(ctx)
	if err != nil {
		return ctx, nil, nil, err
	}
	e, err := w.load(ctx, id)
	if err != nil {
		end(err)
		return ctx, nil, nil, err
	}
	return ctx, end, e, nil
}

// load reads an endpoint of the principal's account, or ErrNotFound.
func (w Webhooks) load(ctx context.Context, id string) (*store.Endpoint, error) {
	if len(id) > 64 {
		return nil, ErrNotFound
	}
	e, err := w.s.m.events.Endpoint(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("%w: reading webhook endpoint: %w", ErrUnavailable, err)
	case e.AccountID != w.s.c.p.AccountID, w.s.c.p.Environment != "" && e.Environment != string(w.s.c.p.Environment):
		return nil, ErrNotFound
	}
	return e, nil
}

func webhookOf(e *store.Endpoint) webhook.Endpoint {
	return webhook.Endpoint{ID: e.ID, Environment: e.Environment, URL: e.URL, Events: slices.Clone(e.Events), Description: e.Description,
		Enabled: e.Enabled, DisabledReason: e.DisabledReason, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
}

// endpointEvent is an event about the endpoint e.
func endpointEvent(ctx context.Context, typ event.Type, c caller, e *store.Endpoint, now time.Time) event.Event {
	ev := newEvent(ctx, typ, e.AccountID, c, now, webhookOf(e))
	ev.Environment = e.Environment
	return ev
}

// validateURL checks an endpoint's URL as a *ValidationError on url.
func (m *Manager) validateURL(ctx context.Context, raw string) (string, error) {
	if raw == "" {
		return "", missing("url")
	}
	u, err := m.webhooks.CheckURL(ctx, raw)
	switch {
	case errors.Is(err, webhook.ErrForbiddenAddress):
		return "", invalid("url", "url must reach a public address: not loopback, private, link-local, multicast or a cloud metadata service")
	case err != nil:
		return "", invalid("url", "%s", err.Error())
	}
	return u, nil
}

// validateEventTypes checks a subscription: 1 to 32 event types, or "*".
func validateEventTypes(types []string) ([]string, error) {
	if len(types) == 0 {
		return nil, missing("events")
	}
	if len(types) > 32 {
		return nil, invalid("events", "events must name at most 32 types")
	}
	out := make([]string, 0, len(types))
	for i, t := range types {
		if t != "*" && !event.Type(t).Known() {
			return nil, invalid("events["+strconv.Itoa(i)+"]", "%q is not an event type (or \"*\" for all)", truncate(t, 40))
		}
		if t == "*" {
			return []string{"*"}, nil
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func validateDescription(d string) (string, error) {
	if len(d) > 256 || !utf8.ValidString(d) {
		return "", invalid("description", "description must be at most 256 bytes of UTF-8")
	}
	for _, r := range d {
		if r < 0x20 || r == 0x7f {
			return "", invalid("description", "description must not hold control characters")
		}
	}
	return d, nil
}

// Create registers an endpoint and returns it with its signing secret,
// shown this once. With IdempotencyKey, a retry of the same request
// within 24 hours returns the first answer, secret included.
func (w Webhooks) Create(ctx context.Context, req webhook.EndpointCreate, opts ...IssueOption) (_ *webhook.Endpoint, err error) {
	ctx, end, err := w.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	m, c := w.s.m, w.s.c
	idemKey, idempotent, err := issueOptions(opts)
	if err != nil {
		return nil, err
	}
	u, err := m.validateURL(ctx, req.URL)
	if err != nil {
		return nil, err
	}
	types, err := validateEventTypes(req.Events)
	if err != nil {
		return nil, err
	}
	desc, err := validateDescription(req.Description)
	if err != nil {
		return nil, err
	}
	env := Environment(req.Environment)
	switch {
	case env == "":
		env = cmp.Or(c.p.Environment, Live)
	case env != Live && env != Test:
		return nil, invalid("environment", "environment must be live or test")
	}
	if err := c.mayGrant(env, nil); err != nil {
		return nil, err
	}
	enabled := req.Enabled == nil || *req.Enabled
	if m.ephemeral {
		m.warnEphemeral.Do(func() {
			m.logger.Warn("keys: webhook signing secrets are sealed under a random secret that ends with this process; give WithPepper or WithIdempotencySecret so that they outlive it and every instance opens them")
		})
	}
	now := m.now()
	run := func(seal func(*webhook.Endpoint, string) (*store.IdempotencyRecord, error)) (*webhook.Endpoint, error) {
		secret, sealed, id, err := m.newWebhookSecret("")
		if err != nil {
			return nil, err
		}
		e := &store.Endpoint{ID: id, AccountID: c.p.AccountID, Environment: string(env), URL: u, Events: types, Description: desc, Enabled: enabled,
			Secret: sealed, CreatedAt: storedTime(now), UpdatedAt: storedTime(now), Version: 1}
		ep := webhookOf(e)
		ep.Secret = secret
		wr := store.Write{Endpoint: e, MaxEndpoints: m.webhooks.MaxEndpoints}
		if seal != nil {
			if wr.Idempotency, err = seal(&ep, id); err != nil {
				return nil, err
			}
		}
		evs := []event.Event{endpointEvent(ctx, event.EndpointCreated, c, e, now)}
		wr.Events = evs
		switch err := m.store.Write(ctx, wr); {
		case errors.Is(err, store.ErrEndpointLimit), errors.Is(err, store.ErrIdempotencyKeyExists):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("%w: storing webhook endpoint: %w", ErrUnavailable, err)
		}
		m.stored(ctx, evs)
		return &ep, nil
	}
	if !idempotent {
		return run(nil)
	}
	b, _ := json.Marshal(struct {
		Environment      Environment
		URL, Description string
		Events           []string
		Enabled          bool
	}{env, u, desc, types, enabled})
	ep, replayed, err := withIdempotency(m, ctx, c, "POST /developers/webhooks", idemKey, sha256.Sum256(b), now, run)
	if replayed {
		ep.Replayed = true
	}
	return ep, err
}

// Update changes an endpoint's URL, subscription, description or
// whether it is enabled; enabling one the library disabled starts its
// failure count again.
func (w Webhooks) Update(ctx context.Context, id string, u webhook.EndpointUpdate) (_ *webhook.Endpoint, err error) {
	ctx, end, err := w.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	m := w.s.m
	var url, desc string
	var types []string
	if u.URL != nil {
		if url, err = m.validateURL(ctx, *u.URL); err != nil {
			return nil, err
		}
	}
	if u.Events != nil {
		if types, err = validateEventTypes(*u.Events); err != nil {
			return nil, err
		}
	}
	if u.Description != nil {
		if desc, err = validateDescription(*u.Description); err != nil {
			return nil, err
		}
	}
	e, err := w.change(ctx, id, event.EndpointUpdated, func(e *store.Endpoint) {
		if u.URL != nil {
			e.URL = url
		}
		if u.Events != nil {
			e.Events = types
		}
		if u.Description != nil {
			e.Description = desc
		}
		if u.Enabled != nil {
			e.Enabled = *u.Enabled
			e.DisabledReason = ""
		}
	}, nil)
	if err != nil {
		return nil, err
	}
	ep := webhookOf(e)
	return &ep, nil
}

// change applies edit to a copy of the endpoint and stores it with an
// event of typ, again on a fresh copy if another change got there first.
// With seal, the idempotency entry it makes of the changed endpoint goes
// in the same Write (ErrIdempotencyKeyExists if its scope is taken).
func (w Webhooks) change(ctx context.Context, id string, typ event.Type, edit func(*store.Endpoint), seal func(*store.Endpoint) (*store.IdempotencyRecord, error)) (*store.Endpoint, error) {
	m, c := w.s.m, w.s.c
	for attempt := range updateAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return nil, fmt.Errorf("%w: webhook endpoint %s: %w", ErrUnavailable, id, err)
			}
		}
		old, err := w.load(ctx, id)
		if err != nil {
			return nil, err
		}
		e := old.Clone()
		edit(e)
		now := m.now()
		e.Version, e.UpdatedAt = old.Version+1, storedTime(now)
		evs := []event.Event{endpointEvent(ctx, typ, c, e, now)}
		wr := store.Write{Endpoint: e, Events: evs}
		if typ == event.EndpointDeleted {
			wr = store.Write{DeleteEndpoint: old, Events: evs}
		}
		if seal != nil {
			if wr.Idempotency, err = seal(e); err != nil {
				return nil, err
			}
		}
		switch err := m.store.Write(ctx, wr); {
		case err == nil:
			m.stored(ctx, evs)
			return e, nil
		case errors.Is(err, store.ErrStale):
			continue
		case errors.Is(err, store.ErrIdempotencyKeyExists):
			return nil, err
		case errors.Is(err, store.ErrNotFound):
			return nil, ErrNotFound
		default:
			return nil, fmt.Errorf("%w: storing webhook endpoint: %w", ErrUnavailable, err)
		}
	}
	return nil, fmt.Errorf("%w: webhook endpoint %s kept changing under the change", ErrUnavailable, id)
}

// Delete deletes an endpoint and its deliveries.
func (w Webhooks) Delete(ctx context.Context, id string) (err error) {
	ctx, end, err := w.begin(ctx)
	if err != nil {
		return err
	}
	defer func() { end(err) }()
	_, err = w.change(ctx, id, event.EndpointDeleted, func(*store.Endpoint) {}, nil)
	return err
}

// RollSecret gives an endpoint a new signing secret, returned this once;
// the old one keeps signing beside it (a second signature in the
// webhook-signature header) for grace, at most 24 hours, so that the
// receiver can switch without losing a delivery. With IdempotencyKey, a
// retry of the same request within 24 hours returns the first answer,
// secret included, and rolls nothing: a second roll would end the grace
// of the secret the receiver still holds.
func (w Webhooks) RollSecret(ctx context.Context, id string, grace time.Duration, opts ...IssueOption) (_ *webhook.Endpoint, err error) {
	ctx, end, err := w.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	idemKey, idempotent, err := issueOptions(opts)
	if err != nil {
		return nil, err
	}
	if grace < 0 || grace > maxRollSecretGrace {
		return nil, invalid("grace_period_seconds", "the grace period must be from 0 to %d seconds", int(maxRollSecretGrace/time.Second))
	}
	m := w.s.m
	now := m.now()
	run := func(seal func(*webhook.Endpoint, string) (*store.IdempotencyRecord, error)) (*webhook.Endpoint, error) {
		secret, sealed, _, err := m.newWebhookSecret(id)
		if err != nil {
			return nil, err
		}
		answer := func(e *store.Endpoint) *webhook.Endpoint {
			ep := webhookOf(e)
			ep.Secret = secret
			return &ep
		}
		var sealAnswer func(*store.Endpoint) (*store.IdempotencyRecord, error)
		if seal != nil {
			sealAnswer = func(e *store.Endpoint) (*store.IdempotencyRecord, error) { return seal(answer(e), e.ID) }
		}
		e, err := w.change(ctx, id, event.EndpointUpdated, func(e *store.Endpoint) {
			e.PreviousSecret, e.PreviousUntil = e.Secret, storedTime(now.Add(grace))
			if grace == 0 {
				e.PreviousSecret, e.PreviousUntil = nil, time.Time{}
			}
			e.Secret = sealed
		}, sealAnswer)
		if err != nil {
			return nil, err
		}
		return answer(e), nil
	}
	if !idempotent {
		return run(nil)
	}
	b, _ := json.Marshal(struct {
		ID    string
		Grace time.Duration
	}{id, grace})
	ep, replayed, err := withIdempotency(m, ctx, w.s.c, "POST /developers/webhooks/{id}/roll-secret", idemKey, sha256.Sum256(b), now, run)
	if replayed {
		ep.Replayed = true
	}
	return ep, err
}

// Test sends the endpoint a webhook.test event, and returns its
// delivery, pending.
func (w Webhooks) Test(ctx context.Context, id string) (_ *webhook.Delivery, err error) {
	ctx, end, e, err := w.open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	m := w.s.m
	now := m.now()
	ev := newEvent(ctx, event.WebhookTest, e.AccountID, w.s.c, now, map[string]string{"endpoint_id": e.ID, "message": "a test event, sent at your request"})
	ev.To, ev.Environment = e.ID, e.Environment
	if err := m.record(ctx, ev); err != nil {
		return nil, err
	}
	ds := store.NewDeliveries(&ev, []*store.Endpoint{e})
	d := deliveryOf(ds[0])
	return &d, nil
}

func deliveryOf(d *store.Delivery) webhook.Delivery {
	out := webhook.Delivery{ID: d.ID, EventID: d.EventID, Status: string(d.Status), CreatedAt: d.CreatedAt,
		AttemptCount: d.Tries, Attempts: make([]webhook.Attempt, 0, len(d.Attempts))}
	if d.Status == store.DeliveryPending {
		t := d.NextAt
		out.NextAttemptAt = &t
	}
	for _, a := range d.Attempts {
		wa := webhook.Attempt{At: a.At, LatencyMS: a.Latency.Milliseconds(), Error: a.Error}
		if a.Code != 0 {
			code := a.Code
			wa.ResponseCode = &code
		}
		out.Attempts = append(out.Attempts, wa)
	}
	return out
}

// Deliveries pages through an endpoint's deliveries, newest first.
func (w Webhooks) Deliveries(ctx context.Context, id string, limit int, cursor string) (_ *webhook.DeliveryList, err error) {
	ctx, end, err := w.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	switch {
	case limit == 0:
		limit = 20
	case limit < 1 || limit > 100:
		return nil, invalid("limit", "limit must be from 1 to 100")
	}
	q := store.DeliveryQuery{Limit: limit + 1}
	if cursor != "" {
		at, did, err := decodeCursor(cursor)
		if err != nil {
			return nil, err
		}
		q.After = &store.ListPosition{CreatedAt: at, ID: did}
	}
	e, err := w.load(ctx, id)
	if err != nil {
		return nil, err
	}
	q.EndpointID = e.ID
	ds, err := w.s.m.events.Deliveries(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%w: reading deliveries: %w", ErrUnavailable, err)
	}
	out := &webhook.DeliveryList{Data: make([]webhook.Delivery, 0, len(ds))}
	if len(ds) > limit {
		ds = ds[:limit]
		out.HasMore = true
		out.NextCursor = encodeCursor(ds[limit-1].CreatedAt, ds[limit-1].ID)
	}
	for _, d := range ds {
		out.Data = append(out.Data, deliveryOf(d))
	}
	return out, nil
}

// Retry makes one of an endpoint's deliveries due now, whatever its
// status (a failed one, or one skipped while the endpoint was disabled),
// at most maxManualRetries times beyond its schedule.
func (w Webhooks) Retry(ctx context.Context, id, deliveryID string) (_ *webhook.Delivery, err error) {
	ctx, end, e, err := w.open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer func() { end(err) }()
	m := w.s.m
	if len(deliveryID) > 64 {
		return nil, ErrNotFound
	}
	ds, err := m.events.Deliveries(ctx, store.DeliveryQuery{EndpointID: e.ID, ID: deliveryID, Limit: 1})
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: reading deliveries: %w", ErrUnavailable, err)
	case len(ds) == 0:
		return nil, ErrNotFound
	case ds[0].Tries >= 1+len(m.webhooks.Schedule)+maxManualRetries:
		return nil, &ValidationError{Code: codeInvalidRequest, Message: fmt.Sprintf("the delivery was attempted %d times, the most it may be", ds[0].Tries)}
	}
	now := m.now()
	switch err := m.events.RetryDelivery(ctx, deliveryID, now); {
	case errors.Is(err, store.ErrStale):
		return nil, &ValidationError{Code: codeInvalidRequest, Message: "the delivery is being attempted now"}
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("%w: retrying delivery: %w", ErrUnavailable, err)
	}
	d := ds[0]
	d.Status, d.NextAt = store.DeliveryPending, now
	m.hooks.wake()
	out := deliveryOf(d)
	return &out, nil
}

// newWebhookSecret makes a signing secret and seals it for the endpoint
// id (a new ID if id is "").
func (m *Manager) newWebhookSecret(id string) (webhook.Secret, []byte, string, error) {
	if id == "" {
		id = newEndpointID(m.now())
	}
	var raw [webhookSecretBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, "", fmt.Errorf("keys: reading randomness: %w", err)
	}
	sealed, err := m.sealWebhookSecret(id, raw[:])
	if err != nil {
		return "", nil, "", err
	}
	return webhook.Secret(webhook.SecretPrefix + base64.StdEncoding.EncodeToString(raw[:])), sealed, id, nil
}

// Signing secrets are sealed as idempotent answers are (XChaCha20-Poly1305
// under a key derived from the Manager's idempotency secret, WithPepper's
// or WithIdempotencySecret's), for their own purpose and bound to the
// endpoint's ID: a copy of the store alone opens none, and a secret moved
// to another endpoint does not open.
func (m *Manager) sealWebhookSecret(id string, raw []byte) ([]byte, error) {
	return m.idem.seal(sealWebhook, []byte(id), []byte(id), raw)
}

func (m *Manager) openWebhookSecret(id string, sealed []byte) ([]byte, error) {
	raw, err := m.idem.open(sealWebhook, []byte(id), []byte(id), sealed)
	if err != nil {
		return nil, errors.New("keys: cannot open a webhook secret (do all instances share one pepper or idempotency secret?)")
	}
	return raw, nil
}

// newEndpointID is a webhook endpoint's ID: "we_" and a version 7 UUID.
func newEndpointID(now time.Time) string {
	var random [10]byte
	_, _ = rand.Read(random[:])
	return uuidV7("we_", now, random[:])
}
