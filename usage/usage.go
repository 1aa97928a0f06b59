// Package usage describes what a host and its customers read about the
// requests an account's keys made: a Summary over a period (counts, by
// API, and what they cost), and a Series of one key's counts in buckets,
// ready to chart.
//
// Counting happens in package keys: the HTTP middleware and the gRPC
// interceptors count every request of a verified key
// (keys.Manager.CountUsage), by account, key, API and outcome, in memory,
// flushed in batches to a store that keeps usage (store.UsageStore:
// memstore and pgstore). Reading goes through the Manager too
// (keys.Manager.UsageSummary and KeyUsage, or m.As(p) for a customer's own
// account), because what this instance counted and has not flushed yet is
// part of the answer: a client sees its own requests at once.
//
// An API is a name the host gives a group of routes ("identity", or the
// route pattern "GET /v1/ping" by default); keys.WithPrices prices a
// successful request to it in money, keys.WithCreditCosts in credits.
package usage

import (
	"encoding/json"
	"errors"
	"time"
)

// Granularity is the length of a bucket.
type Granularity uint8

// The bucket lengths. Every bucket starts on its length's UTC boundary; a
// Day is a UTC calendar day.
const (
	Minute Granularity = iota
	Hour
	Day
)

// Duration is the bucket's length.
func (g Granularity) Duration() time.Duration {
	switch g {
	case Hour:
		return time.Hour
	case Day:
		return 24 * time.Hour
	}
	return time.Minute
}

// String is the API's name for it: "minute", "hour" or "day".
func (g Granularity) String() string {
	switch g {
	case Hour:
		return "hour"
	case Day:
		return "day"
	}
	return "minute"
}

// ParseGranularity reads "minute", "hour" or "day".
func ParseGranularity(s string) (Granularity, error) {
	switch s {
	case "minute":
		return Minute, nil
	case "hour":
		return Hour, nil
	case "day":
		return Day, nil
	}
	return 0, errors.New("granularity is minute, hour or day")
}

// Totals count requests: Failed counts every 4xx and 5xx answer,
// RateLimitHits the 429s of a limit among them, so that TotalRequests is
// Successful + Failed.
type Totals struct {
	TotalRequests int64 `json:"total_requests"`
	Successful    int64 `json:"successful"`
	Failed        int64 `json:"failed"`
	RateLimitHits int64 `json:"rate_limit_hits"`
}

// Add adds the counts of o to t.
func (t *Totals) Add(o Totals) {
	t.TotalRequests += o.TotalRequests
	t.Successful += o.Successful
	t.Failed += o.Failed
	t.RateLimitHits += o.RateLimitHits
}

// Period is a half-open span of time, [Start, End).
type Period struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// Money is an amount of a currency: Amount is a decimal number with at
// most 6 decimals, exact (it is computed in millionths).
type Money struct {
	Amount   json.Number `json:"amount"`
	Currency string      `json:"currency"`
}

// Summary is an account's usage over a period (GET /developers/usage).
type Summary struct {
	Period Period `json:"period"`
	Totals
	// ByAPI has the same counts per API.
	ByAPI map[string]Totals `json:"by_api"`
	// EstimatedCost is what the successful requests cost at the prices
	// of keys.WithPrices: 0 USD without any.
	EstimatedCost Money `json:"estimated_cost"`
}

// Filter narrows a Summary. Start and End are whole minutes; a zero Start
// is the start of the current UTC month, a zero End the end of the current
// minute.
type Filter struct {
	Start, End time.Time
	KeyID      string // "": every key of the account
	API        string // "": every API
}

// Series is one key's usage in consecutive buckets, empty ones included
// (GET /developers/keys/{id}/usage).
type Series struct {
	KeyID       string   `json:"key_id"`
	Granularity string   `json:"granularity"`
	Period      Period   `json:"period"`
	Data        []Bucket `json:"data"`
}

// Bucket is one bucket of a Series.
type Bucket struct {
	Start time.Time `json:"start"`
	Totals
}
