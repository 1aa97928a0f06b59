// Package webhook delivers the event log (package event) to the URLs an
// account registers, as the Standard Webhooks specification
// (standardwebhooks.com) describes, so that its customers verify a
// delivery with any of that specification's libraries, or with Verify
// here.
//
// A delivery is a POST of {"type", "timestamp", "data"} with the headers
// webhook-id (the event's ID, the same on every retry), webhook-timestamp
// (Unix seconds) and webhook-signature ("v1," and the base64 HMAC-SHA256
// of "id.timestamp.body" under the endpoint's secret; during a secret's
// roll, a signature under each secret, space-separated). Any 2xx is
// success. A failed delivery is retried on Config.Schedule, with jitter;
// an endpoint that fails every attempt for Config.DisableAfter is
// disabled. Deliveries are at least once: a receiver deduplicates on
// webhook-id.
//
// keys.WithWebhooks configures delivery; the Manager's Scoped.Webhooks
// manages an account's endpoints, and the HTTP adapter serves them under
// /developers/webhooks.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config configures delivery. The zero Config is the defaults.
type Config struct {
	// Schedule is when a failed delivery is tried again, each delay
	// counted from the failed attempt and jittered by up to a tenth: by
	// default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts over
	// about 27 hours). After the last, the delivery has failed; it can
	// still be retried by hand while its event is kept.
	Schedule []time.Duration
	// DisableAfter disables an endpoint that has failed every attempt for
	// this long (default 5 days), with a webhook_endpoint.disabled event.
	DisableAfter time.Duration
	// Timeout bounds one attempt, from the dial to the response's end
	// (default 10 s). At most 64 KiB of a response is read.
	Timeout time.Duration
	// MaxEndpoints bounds an account's endpoints (default 10).
	MaxEndpoints int
	// AllowLoopback lets endpoints be on loopback addresses and use plain
	// http: for development and tests only. Private, link-local and
	// metadata addresses stay refused.
	AllowLoopback bool
	// AllowHTTP lets endpoints use plain http (any other rule still
	// applies). Off by default: a delivery carries an account's events.
	AllowHTTP bool
	// Lease is how long an instance holds the deliveries it claims before
	// another may take them (default 1 minute; at least 2 × Timeout).
	Lease time.Duration
	// Poll is how often an instance looks for due deliveries (default 1 s;
	// this instance's own events are sent at once).
	Poll time.Duration
	// Concurrency bounds the attempts in flight from one instance
	// (default 32), and PerEndpoint those to one endpoint (default 2), so
	// that a slow receiver holds at most PerEndpoint of them.
	Concurrency, PerEndpoint int
	// Resolver resolves endpoints' names (default net.DefaultResolver).
	// Every address it gives is checked, and only a checked address is
	// dialled.
	Resolver Resolver
	// Disabled turns delivery off on this instance (another delivers);
	// endpoints may still be managed, and deliveries are kept.
	Disabled bool
}

// DefaultSchedule is Config.Schedule's default.
func DefaultSchedule() []time.Duration {
	return []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
}

// WithDefaults returns c with every zero field set to its default, or an
// error for a value it cannot use.
func (c Config) WithDefaults() (Config, error) {
	if c.Schedule == nil {
		c.Schedule = DefaultSchedule()
	}
	if len(c.Schedule) > 20 {
		return c, errors.New("webhook: Config.Schedule: at most 20 retries")
	}
	for _, d := range c.Schedule {
		if d <= 0 || d > 7*24*time.Hour {
			return c, fmt.Errorf("webhook: Config.Schedule: %v is not a delay from 1ns to 7 days", d)
		}
	}
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	set(&c.DisableAfter, 5*24*time.Hour)
	set(&c.Timeout, 10*time.Second)
	set(&c.Lease, max(time.Minute, 2*c.Timeout))
	set(&c.Poll, time.Second)
	if c.MaxEndpoints == 0 {
		c.MaxEndpoints = 10
	}
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
	if c.PerEndpoint == 0 {
		c.PerEndpoint = 2
	}
	switch {
	case c.DisableAfter < 0 || c.Timeout < 0 || c.Poll < 0 || c.MaxEndpoints < 0 || c.Concurrency < 0 || c.PerEndpoint < 0:
		return c, errors.New("webhook: Config: negative value")
	case c.Lease < 2*c.Timeout:
		return c, fmt.Errorf("webhook: Config.Lease %v is shorter than twice the Timeout %v", c.Lease, c.Timeout)
	case c.MaxEndpoints > 100:
		return c, errors.New("webhook: Config.MaxEndpoints: at most 100")
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	return c, nil
}

// Resolver resolves a name to addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Endpoint is a webhook endpoint as the API shows it (schema
// WebhookEndpoint).
type Endpoint struct {
	ID string `json:"id"`
	// Environment is "live" or "test": the endpoint receives that
	// environment's events (a test endpoint, test keys' events).
	Environment string   `json:"environment"`
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Description string   `json:"description"`
	Enabled     bool     `json:"enabled"`
	// DisabledReason is "failing" for an endpoint the library disabled
	// after DisableAfter of failures; absent otherwise.
	DisabledReason string    `json:"disabled_reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// Secret is the signing secret: only in the answer that created it
	// (a create, or a roll), never again.
	Secret Secret `json:"secret,omitempty"`
	// Replayed is true when an idempotent retry returned the stored
	// answer of an earlier create or roll of the secret.
	Replayed bool `json:"-"`
}

// LogValue logs the endpoint without its secret. Without it, a JSON log
// handler would encode the struct with encoding/json, which writes the
// secret (Secret's own LogValue applies only when the Secret is the
// logged value itself, not a field of one).
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", e.ID), slog.String("environment", e.Environment), slog.String("url", e.URL),
		slog.Bool("enabled", e.Enabled), slog.String("secret", "[webhook secret redacted]"))
}

// EndpointCreate is the body of POST /developers/webhooks.
type EndpointCreate struct {
	// Environment is "live" or "test"; "": the caller's (a test key's
	// endpoints are test endpoints), or live.
	Environment string   `json:"environment,omitempty"`
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Description string   `json:"description,omitempty"`
	Enabled     *bool    `json:"enabled,omitempty"` // nil: true
}

// EndpointUpdate is the body of PATCH /developers/webhooks/{id}: nil
// fields stay as they are.
type EndpointUpdate struct {
	URL         *string   `json:"url,omitempty"`
	Events      *[]string `json:"events,omitempty"`
	Description *string   `json:"description,omitempty"`
	Enabled     *bool     `json:"enabled,omitempty"`
}

// EndpointList is GET /developers/webhooks.
type EndpointList struct {
	Data []Endpoint `json:"data"`
}

// Delivery is one event's delivery to one endpoint, as the API shows it.
type Delivery struct {
	ID      string `json:"id"`
	EventID string `json:"event_id"`
	// EventType is the event's type.
	Status string `json:"status"` // pending, succeeded, failed, skipped
	// NextAttemptAt is when the next attempt is due, while pending.
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	// AttemptCount counts every attempt; Attempts are the latest (at most
	// 20), oldest first.
	AttemptCount int       `json:"attempt_count"`
	Attempts     []Attempt `json:"attempts"`
}

// Attempt is one try of a delivery.
type Attempt struct {
	At time.Time `json:"at"`
	// ResponseCode is the receiver's HTTP status; absent when there was
	// no response.
	ResponseCode *int   `json:"response_code"`
	LatencyMS    int64  `json:"latency_ms"`
	Error        string `json:"error,omitempty"`
}

// DeliveryList is one page of an endpoint's deliveries, newest first.
type DeliveryList struct {
	Data       []Delivery `json:"data"`
	HasMore    bool       `json:"has_more"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

// Secret is an endpoint's signing secret: "whsec_" and the base64 of its
// random bytes. Like keys.Secret it marshals to JSON as itself (the
// answer that creates it must carry it) and prints redacted everywhere
// else.
type Secret string

// String returns a redacted placeholder.
func (Secret) String() string { return "[webhook secret redacted]" }

// GoString returns a redacted placeholder, for %#v.
func (Secret) GoString() string { return "[webhook secret redacted]" }

// Format prints a redacted placeholder for every verb.
func (Secret) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte("[webhook secret redacted]")) }

// LogValue keeps the secret out of log/slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue("[webhook secret redacted]") }

// SecretPrefix begins every signing secret.
const SecretPrefix = "whsec_"

// decode returns the secret's key bytes.
func (s Secret) decode() ([]byte, error) {
	raw, ok := strings.CutPrefix(string(s), SecretPrefix)
	if !ok {
		return nil, errors.New("webhook: a secret begins with " + SecretPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) < 24 || len(b) > 64 {
		return nil, errors.New("webhook: a secret is " + SecretPrefix + " and the base64 of 24 to 64 bytes")
	}
	return b, nil
}

// Sign returns the v1 signature of a delivery: "v1," and the base64
// HMAC-SHA256 of "id.timestamp.body" under the secret's bytes.
func Sign(secret Secret, id string, at time.Time, body []byte) (string, error) {
	key, err := secret.decode()
	if err != nil {
		return "", err
	}
	return sign(key, id, at.Unix(), body), nil
}

func sign(key []byte, id string, ts int64, body []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, ts, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// Errors of Verify.
var (
	ErrNoSignature = errors.New("webhook: no valid signature")
	ErrTimestamp   = errors.New("webhook: timestamp outside the tolerance")
)

// Tolerance is how far Verify lets a delivery's timestamp be from now: 5
// minutes, as the specification's libraries do.
const Tolerance = 5 * time.Minute

// Verify checks a delivery a receiver got: its webhook-id, webhook-timestamp
// and webhook-signature headers and its body, under the endpoint's secret,
// at now. It accepts the delivery if any signature in the header is
// right (during a roll there are several) and the timestamp is within
// Tolerance of now, which keeps a captured delivery from being replayed
// later; a receiver also remembers the webhook-ids it has handled.
func Verify(secret Secret, id, timestamp, signatures string, body []byte, now time.Time) error {
	key, err := secret.decode()
	if err != nil {
		return err
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrTimestamp, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > Tolerance || d < -Tolerance {
		return ErrTimestamp
	}
	want := sign(key, id, ts, body)
	for _, s := range strings.Fields(signatures) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return ErrNoSignature
}
