package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/txcloud/keys/event"
)

// EventStore is the optional capability that keeps the event log and
// delivers it to webhook endpoints: memstore, pgstore and sqlitestore
// have it. A Manager on it sets Write.Events on every change, and
// Write.Endpoint and Write.DeleteEndpoint to change an account's webhook
// endpoints; on a store without it there is no event log (the host's
// in-process hook still hears every change) and no webhooks (a 404 over
// HTTP).
//
// Events are written by Store.Write (Write.Events), in the same
// all-or-nothing step as the change they report: a Write that carries
// only events appends them. With each event the store creates, in the
// same step, one Delivery for every endpoint of the event's account and
// environment that subscribes to its type (Endpoint.Subscribes), or only
// for the endpoint Event.To names (if of that account and environment): pending and due at once (NextAt the event's time) if
// the endpoint is enabled, DeliverySkipped otherwise. Its ID is
// DeliveryID(event, endpoint).
type EventStore interface {
	// Events returns q.AccountID's events matching q, newest first (At,
	// then ID, both descending), after q.After if set, q.Limit at most.
	Events(ctx context.Context, q EventQuery) ([]event.Event, error)
	// PruneEvents deletes the events older than before, with their
	// deliveries, a bounded amount per call (it may keep some; the
	// Manager calls it again).
	PruneEvents(ctx context.Context, before time.Time) error

	// Endpoints returns an account's endpoints, oldest first.
	Endpoints(ctx context.Context, accountID string) ([]*Endpoint, error)
	// Endpoint returns the endpoint with the given ID, or ErrNotFound.
	Endpoint(ctx context.Context, id string) (*Endpoint, error)

	// ClaimDeliveries leases up to c.Limit pending deliveries whose NextAt
	// is at or before c.Now and whose lease (if any) ended at or before
	// c.Now, at most c.PerEndpoint of one endpoint and none of the
	// endpoints c.Skip names, oldest NextAt first: each is returned with
	// Lease set to c.Lease and LeaseUntil to c.Until. Of concurrent claims,
	// from any instance, exactly one gets a given delivery. A store may
	// read only the ClaimWindow oldest due deliveries (of the endpoints
	// not skipped) to choose from, so that a claim costs the same however
	// many one tenant has queued; an endpoint that window leaves out is
	// claimed once the endpoints before it are skipped, as the Manager
	// skips those whose slots are taken.
	ClaimDeliveries(ctx context.Context, c Claim) ([]*Delivery, error)
	// FinishDelivery records an attempt of a delivery this claim holds
	// (d.Lease): d's Status, NextAt and Attempts are stored and its lease
	// ends. If another claim holds it now (the lease ran out and was
	// taken), nothing is stored and the error matches ErrStale. It also
	// keeps the endpoint's health: FailingSince is cleared by a success
	// and set to the attempt's time by a failure if it was clear; it
	// returns the endpoint's FailingSince after the attempt (zero: not
	// failing).
	FinishDelivery(ctx context.Context, d *Delivery) (failingSince time.Time, err error)
	// Deliveries returns q's deliveries, newest first (CreatedAt, then ID,
	// both descending), after q.After if set, q.Limit at most.
	Deliveries(ctx context.Context, q DeliveryQuery) ([]*Delivery, error)
	// RetryDelivery makes a delivery pending and due at at, whatever its
	// status, unless a claim holds it (an error matching ErrStale); no
	// such delivery: ErrNotFound.
	RetryDelivery(ctx context.Context, id string, at time.Time) error
}

// EventQuery selects an account's events.
type EventQuery struct {
	AccountID  string
	ID         string     // "": any
	Type       event.Type // "": any
	KeyID      string     // "": any
	Start, End time.Time  // [Start, End); zero: unbounded
	// Environment, if not "", selects that environment's events (a test
	// principal's reads).
	Environment string
	After       *ListPosition // the last event of the previous page (its At and ID)
	Limit       int           // 1 to 101
}

// Matches reports whether e matches q, for stores that filter in Go.
func (q *EventQuery) Matches(e *event.Event) bool {
	return e.AccountID == q.AccountID && (q.ID == "" || e.ID == q.ID) && (q.Type == "" || e.Type == q.Type) &&
		(q.KeyID == "" || e.KeyID == q.KeyID) && (q.Environment == "" || e.Environment == q.Environment) &&
		(q.Start.IsZero() || !e.At.Before(q.Start)) && (q.End.IsZero() || e.At.Before(q.End)) &&
		(q.After == nil || e.At.Before(q.After.CreatedAt) || e.At.Equal(q.After.CreatedAt) && e.ID < q.After.ID)
}

// Endpoint is a webhook endpoint as a store keeps it: plain data.
type Endpoint struct {
	ID          string
	AccountID   string
	Environment string // "live" or "test": it receives that environment's events
	URL         string
	Events      []string // event types, or "*" for all
	Description string
	Enabled     bool
	// Disabled says why an endpoint is not Enabled: "" (its account
	// disabled it) or "failing" (the Manager did, after it failed every
	// attempt for webhook.Config.DisableAfter).
	DisabledReason string
	// Secret is the signing secret, sealed (authenticated encryption
	// under a key the Manager derives from the host's secret); during a
	// roll, PreviousSecret is the one before it, sealed, which signs
	// beside it until PreviousUntil.
	Secret         []byte
	PreviousSecret []byte
	PreviousUntil  time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// FailingSince is the first failed attempt since the last success;
	// zero: not failing. Only FinishDelivery moves it.
	FailingSince time.Time
	// Version counts changes from 1, as Record.Version does: a Write that
	// replaces the endpoint names the next version.
	Version int64
}

// Clone returns a deep copy.
func (e *Endpoint) Clone() *Endpoint {
	c := *e
	c.Events = slices.Clone(e.Events)
	c.Secret = slices.Clone(e.Secret)
	c.PreviousSecret = slices.Clone(e.PreviousSecret)
	return &c
}

// Subscribes reports whether the endpoint wants events of type t.
func (e *Endpoint) Subscribes(t event.Type) bool {
	return slices.Contains(e.Events, "*") || slices.Contains(e.Events, string(t))
}

// DeliveryStatus is where a delivery stands.
type DeliveryStatus string

// The states of a delivery.
const (
	DeliveryPending   DeliveryStatus = "pending"   // to be attempted at NextAt
	DeliverySucceeded DeliveryStatus = "succeeded" // an attempt got a 2xx
	DeliveryFailed    DeliveryStatus = "failed"    // every scheduled attempt failed
	DeliverySkipped   DeliveryStatus = "skipped"   // its endpoint was disabled when the event happened
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	ID         string
	EventID    string
	EndpointID string
	AccountID  string
	Status     DeliveryStatus
	// NextAt is when the next attempt is due, while pending.
	NextAt    time.Time
	CreatedAt time.Time // the event's time
	// Attempts are the attempts made, oldest first (at most
	// MaxAttemptsKept, the latest).
	Attempts []Attempt
	// Tries counts every attempt made, kept or not.
	Tries int
	// Lease names the claim that holds the delivery, until LeaseUntil.
	Lease      string
	LeaseUntil time.Time
}

// ClaimWindow bounds the due deliveries a claim may read: see
// EventStore.ClaimDeliveries.
const ClaimWindow = 2000

// MaxAttemptsKept bounds Delivery.Attempts: a store keeps the latest.
const MaxAttemptsKept = 20

// Attempt is one try to deliver.
type Attempt struct {
	At      time.Time
	Code    int           // the HTTP status; 0: no response
	Latency time.Duration // until the response's headers, or the failure
	Error   string        // why it failed, when it did without a status ("timeout", "refused address")
}

// Clone returns a deep copy.
func (d *Delivery) Clone() *Delivery {
	c := *d
	c.Attempts = slices.Clone(d.Attempts)
	return &c
}

// Claim is what ClaimDeliveries takes.
type Claim struct {
	Now, Until  time.Time
	Lease       string // this claim's name
	Limit       int
	PerEndpoint int
	Skip        []string // endpoint IDs
}

// DeliveryQuery selects an endpoint's deliveries (or one by ID).
type DeliveryQuery struct {
	EndpointID string
	ID         string        // "": any
	EventID    string        // "": any
	After      *ListPosition // the last delivery of the previous page (its CreatedAt and ID)
	Limit      int
}

// DeliveryID is the ID of the delivery of the event to the endpoint: the
// same on every store and instance, so that a fan-out repeated (a Write
// retried) cannot make two.
func DeliveryID(eventID, endpointID string) string {
	h := sha256.Sum256([]byte(eventID + ":" + endpointID))
	return "dlv_" + hex.EncodeToString(h[:13])
}

// NewDeliveries are the deliveries of e to the endpoints eps of its
// account, for stores that fan out in Go.
func NewDeliveries(e *event.Event, eps []*Endpoint) []*Delivery {
	var out []*Delivery
	for _, ep := range eps {
		if ep.AccountID != e.AccountID || ep.Environment != e.Environment || (e.To != "" && ep.ID != e.To) || (e.To == "" && !ep.Subscribes(e.Type)) {
			continue
		}
		d := &Delivery{ID: DeliveryID(e.ID, ep.ID), EventID: e.ID, EndpointID: ep.ID, AccountID: e.AccountID,
			Status: DeliverySkipped, CreatedAt: e.At}
		if ep.Enabled {
			d.Status, d.NextAt = DeliveryPending, e.At
		}
		out = append(out, d)
	}
	return out
}

// attemptJSON is an attempt as EncodeAttempts writes it.
type attemptJSON struct {
	At      time.Time `json:"at"`
	Code    int       `json:"code,omitempty"`
	Latency int64     `json:"latency_ns"`
	Error   string    `json:"error,omitempty"`
}

// EncodeAttempts writes a delivery's attempts (its latest MaxAttemptsKept)
// as JSON, for stores that keep them in one column.
func EncodeAttempts(as []Attempt) []byte {
	if len(as) > MaxAttemptsKept {
		as = as[len(as)-MaxAttemptsKept:]
	}
	js := make([]attemptJSON, len(as))
	for i, a := range as {
		js[i] = attemptJSON{At: a.At.UTC(), Code: a.Code, Latency: int64(a.Latency), Error: a.Error}
	}
	b, _ := json.Marshal(js) // plain data always encodes
	return b
}

// DecodeAttempts reads what EncodeAttempts wrote.
func DecodeAttempts(b []byte) ([]Attempt, error) {
	var js []attemptJSON
	if err := json.Unmarshal(b, &js); err != nil {
		return nil, err
	}
	var out []Attempt
	for _, a := range js {
		out = append(out, Attempt{At: a.At, Code: a.Code, Latency: time.Duration(a.Latency), Error: a.Error})
	}
	return out, nil
}
