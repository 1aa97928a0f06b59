// Package event is the event log: every change a keys.Manager makes (a
// key created, updated, disabled, enabled, revoked, rolled, found
// leaked; a webhook endpoint created, updated, deleted or disabled) and
// what it observes (a key about to expire, an account's daily quota or a
// credit budget crossing a threshold). A Manager on a store that keeps
// events (store.EventStore: memstore, pgstore, sqlitestore) writes each
// change's event in the same all-or-nothing step as the change: no change
// without its event, no event without its change. The log is the
// account's audit trail (GET /developers/events), what webhooks deliver
// (package webhook), and what a host's in-process hook hears
// (keys.WithEventHook).
//
// An Event is plain data, ready to be stored and sent as it is: the key it
// is about travels as the JSON the API shows (Data), never with its
// secret or digest.
package event

import (
	"context"
	"encoding/json"
	"time"
)

// Type names a change.
type Type string

// The types of event.
const (
	KeyCreated Type = "key.created"
	KeyUpdated Type = "key.updated"
	KeyRevoked Type = "key.revoked"
	KeyRolled  Type = "key.rolled"
	// KeyDisabled and KeyEnabled report an update that disabled or
	// enabled a key (an update that also changed other fields reports
	// key.updated as well).
	KeyDisabled Type = "key.disabled"
	KeyEnabled  Type = "key.enabled"
	// KeyExpiring reports a key that will expire soon, when the host asks
	// (keys.Manager.NotifyExpiring).
	KeyExpiring Type = "key.expiring"
	// KeyLeaked reports a key found in public (keys.Manager.ReportLeak);
	// Event.Leak says where.
	KeyLeaked Type = "key.leaked"

	// UsageQuotaThreshold reports an account reaching 80% and then 100%
	// of its plan's requests per day (keys.Plan.PerDay), once each per
	// UTC day. Data is a Quota.
	UsageQuotaThreshold Type = "usage.quota_threshold"
	// CreditsLow reports a budget falling to the host's threshold
	// (webhook.Config.CreditsLow) or below, once per crossing; Data is a
	// Credits.
	CreditsLow Type = "credits.low"
	// CreditsExhausted reports a budget spent to 0, once per crossing;
	// Data is a Credits.
	CreditsExhausted Type = "credits.exhausted"

	// The webhook endpoints' own changes; Data is the endpoint as the API
	// shows it, without its secret.
	EndpointCreated  Type = "webhook_endpoint.created"
	EndpointUpdated  Type = "webhook_endpoint.updated"
	EndpointDeleted  Type = "webhook_endpoint.deleted"
	EndpointDisabled Type = "webhook_endpoint.disabled"
	// WebhookTest is sent to one endpoint when its account asks
	// (POST /developers/webhooks/{id}/test).
	WebhookTest Type = "webhook.test"
)

// Types lists every type, in the order above: the vocabulary a webhook
// endpoint subscribes to ("*" for all of them).
func Types() []Type {
	return []Type{KeyCreated, KeyUpdated, KeyRevoked, KeyRolled, KeyDisabled, KeyEnabled, KeyExpiring, KeyLeaked,
		UsageQuotaThreshold, CreditsLow, CreditsExhausted,
		EndpointCreated, EndpointUpdated, EndpointDeleted, EndpointDisabled, WebhookTest}
}

// Known reports whether t is one of Types.
func (t Type) Known() bool {
	for _, k := range Types() {
		if k == t {
			return true
		}
	}
	return false
}

// Event is one change, or one thing observed.
type Event struct {
	// ID is "evt_" and a version 7 UUID: unique, and in time order.
	ID   string
	Type Type
	At   time.Time
	// AccountID names the account the event is about. KeyID names the
	// key (for key.rolled, the new key), if it is about one.
	AccountID string
	KeyID     string
	// Environment is "live" or "test": the key's, or the webhook
	// endpoint's, the event is about ("live" for the account's own, such
	// as its quota). A webhook endpoint receives its environment's events
	// only, as a test key sees only test keys.
	Environment string
	// Actor is the Subject of the principal that made the change (the
	// key ID of an API key); empty for the host (the Manager's own
	// methods, and what the Manager observes).
	Actor string
	// RequestID and ClientIP name the request that made the change,
	// where there was one (NewContext); empty otherwise. The address is
	// kept whole: this is an audit trail.
	RequestID string
	ClientIP  string
	// Replaces, for key.rolled, is the ID of the key that was rolled.
	Replaces string
	// Leak, for key.leaked, is where the key was found.
	Leak *Leak
	// Data is what the event is about after the change, as the API shows
	// it: a key (a keys.APIKey, with "replaces" or "leak" for key.rolled
	// and key.leaked), an endpoint, a Quota or a Credits; never a secret.
	Data json.RawMessage
	// To, if set, names the one webhook endpoint the event is delivered
	// to (webhook.test); otherwise every endpoint of the account that
	// subscribes to the type.
	To string
}

// Leak says where a key was found in public (a secret-scanning report).
type Leak struct {
	URL    string `json:"url,omitempty"`    // where it was found
	Source string `json:"source,omitempty"` // what kind of place: "content", "commit", "npm", …
	Type   string `json:"type,omitempty"`   // the scanner's name for the kind of secret
}

// Quota is the Data of usage.quota_threshold.
type Quota struct {
	Threshold int    `json:"threshold"` // 80 or 100 (percent)
	Limit     int    `json:"limit"`     // the plan's requests per day
	Used      int64  `json:"used"`      // requests counted today when the crossing was seen
	Day       string `json:"day"`       // the UTC day, 2006-01-02
}

// Credits is the Data of credits.low and credits.exhausted.
type Credits struct {
	// KeyID is the key whose budget it is; "" for the account's own
	// budget.
	KeyID     string `json:"key_id,omitempty"`
	Remaining int64  `json:"remaining"`
	Threshold int64  `json:"threshold,omitempty"` // credits.low's
}

// apiJSON is an event as the API shows it (schema Event): the account is
// implied by who reads it, and the endpoint an event is addressed to is
// the delivery's business.
type apiJSON struct {
	ID        string          `json:"id"`
	Type      Type            `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	KeyID     string          `json:"key_id,omitempty"`
	Env       string          `json:"environment"`
	Actor     string          `json:"actor"`
	RequestID string          `json:"request_id,omitempty"`
	ClientIP  string          `json:"client_ip,omitempty"`
	Data      json.RawMessage `json:"data"`
}

// MarshalJSON writes e as the API shows it: id, type, timestamp, key_id,
// environment, actor (the acting key's ID, or "host"), request_id, client_ip and data.
func (e Event) MarshalJSON() ([]byte, error) {
	actor := e.Actor
	if actor == "" {
		actor = "host"
	}
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return json.Marshal(apiJSON{ID: e.ID, Type: e.Type, Timestamp: e.At.UTC(), KeyID: e.KeyID, Env: e.Environment, Actor: actor,
		RequestID: e.RequestID, ClientIP: e.ClientIP, Data: data})
}

// UnmarshalJSON reads what MarshalJSON wrote (for clients of the API).
func (e *Event) UnmarshalJSON(b []byte) error {
	var j apiJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = Event{ID: j.ID, Type: j.Type, At: j.Timestamp, KeyID: j.KeyID, Environment: j.Env, Actor: j.Actor,
		RequestID: j.RequestID, ClientIP: j.ClientIP, Data: j.Data}
	if e.Actor == "host" {
		e.Actor = ""
	}
	return nil
}

// Filter selects and pages events (keys.Scoped.Events).
type Filter struct {
	Type       Type      // "": every type
	KeyID      string    // "": every key
	Start, End time.Time // [Start, End); zero: unbounded
	Limit      int       // 1 to 100; 0 means 20
	Cursor     string    // NextCursor of the previous page
}

// Page is one page of events, newest first, in the shape of every list of
// the API.
type Page struct {
	Data       []Event `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// Origin is the request a change came from, as an adapter knows it.
type Origin struct {
	RequestID string
	ClientIP  string
}

type originKey struct{}

// NewContext returns ctx carrying o: the HTTP adapter and the gRPC
// interceptors pass it, so that the events of a change name its request.
func NewContext(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginFrom returns the Origin in ctx, if any.
func OriginFrom(ctx context.Context) (Origin, bool) {
	o, ok := ctx.Value(originKey{}).(Origin)
	return o, ok
}

// Config configures the event log (keys.WithEvents). The zero Config is
// the defaults.
type Config struct {
	// Retention is how long events (and their deliveries) are kept:
	// default 30 days, from 1 hour to 400 days.
	Retention time.Duration
	// CreditsLow, if positive, is the remaining credits at or below which
	// a budget's spend reports credits.low (once per crossing).
	CreditsLow int64
}
