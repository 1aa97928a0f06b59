// Package observe is the hook through which metrics and traces see what a
// keys.Manager does: every verification's outcome (and, for a sample, its
// duration), and every other operation's start, end and error. A host sets
// an Observer with keys.WithObserver; without one, a Manager pays one nil
// check. The keysotel module is the Observer for OpenTelemetry.
//
// Nothing passed to an Observer holds a key, a digest, or a key's ID,
// account or name: the outcomes and operations are small fixed sets, fit
// for metric labels.
package observe

import (
	"context"
	"time"
)

// Observer sees what a Manager does. Neither method may block, and
// Verify, on the hot path of every request, should not allocate.
type Observer interface {
	// Verify reports one verification: its outcome, and for a random
	// sample of one call in 16, how long it took (took is 0 for the
	// others: count every call, time only those with took > 0). Timing
	// every call would cost two clock reads, as much again as the rest
	// of the hook.
	Verify(ctx context.Context, outcome Outcome, took time.Duration)
	// Operation reports that an operation starts. It returns the context
	// to run the operation in (to carry a span), and a function the
	// Manager calls once with the operation's error (nil on success) when
	// it ends.
	Operation(ctx context.Context, op Op) (context.Context, func(error))
}

// Outcome is how a verification ended: a small integer, so that an
// Observer can keep what it needs for each in an array, and a label
// (String).
type Outcome uint8

// The outcomes of keys.Manager.Verify.
const (
	Valid            Outcome = iota
	Invalid                  // malformed, unknown or wrong-checksum key
	Revoked                  //
	Expired                  //
	WrongEnvironment         //
	IPNotAllowed             //
	Forbidden                // a permission the request needs is missing
	RateLimited              //
	Unavailable              // the store or the limiter could not answer
	Disabled                 //
	CreditsExhausted         // the key's credits could not pay for the request
	Canceled                 // the caller went away (cancelled its context) before the answer: the client's doing, not an outage

	// NumOutcomes is the number of outcomes: each is less than it.
	NumOutcomes = iota
)

var outcomeNames = [NumOutcomes]string{"valid", "invalid", "revoked", "expired", "wrong_environment",
	"ip_not_allowed", "forbidden", "rate_limited", "unavailable", "disabled", "credits_exhausted", "canceled"}

// String is the outcome's label value, such as "valid" or "rate_limited".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Op names an operation of the Manager other than Verify.
type Op string

// The operations an Observer sees.
const (
	Create         Op = "create"
	Get            Op = "get"
	List           Op = "list"
	Update         Op = "update"
	Revoke         Op = "revoke"
	Roll           Op = "roll"
	FlushLastUsed  Op = "flush_last_used"
	FlushUsage     Op = "flush_usage"
	Import         Op = "import"
	NotifyExpiring Op = "notify_expiring"
	ReportLeak     Op = "report_leak"
	// Events reads the event log; Webhooks manages webhook endpoints and
	// their deliveries; Deliver is one delivery attempt.
	Events   Op = "events"
	Webhooks Op = "webhooks"
	Deliver  Op = "deliver"
)
