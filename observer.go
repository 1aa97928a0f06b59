package keys

import (
	"context"
	"errors"
	"time"
)

// Observer sees what a Manager does, for metrics and traces (package
// keysotel adapts OpenTelemetry to it). Set it with WithObserver; without
// one, a Manager costs nothing extra: each call checks one nil field.
// Neither method may block, and Verify, on the hot path, should not
// allocate. Nothing passed to an Observer holds a key or a digest.
type Observer interface {
	// Verify reports one verification: its outcome, and for a random
	// sample of one call in 16, how long it took (took is 0 for the
	// others: count every call, time only those with took > 0). Timing
	// every call would cost two clock reads, as much again as the rest
	// of the hook.
	Verify(ctx context.Context, outcome Outcome, took time.Duration)
	// Operation reports that a lifecycle operation (Op) starts. It returns
	// the context to run the operation in (to carry a span), and a
	// function the Manager calls once with the operation's error (nil on
	// success) when it ends.
	Operation(ctx context.Context, op Op) (context.Context, func(error))
}

// Outcome is how a verification ended: a small fixed set, fit for a
// metric label (String gives the label's value), and a small integer, so
// that an Observer can keep what it needs for each in an array.
type Outcome uint8

// The outcomes of Verify.
const (
	OutcomeValid            Outcome = iota
	OutcomeInvalid                  // malformed, unknown or wrong-checksum key
	OutcomeRevoked                  //
	OutcomeExpired                  //
	OutcomeWrongEnvironment         //
	OutcomeIPNotAllowed             //
	OutcomeForbidden                // a permission Require asked for is missing
	OutcomeRateLimited              //
	OutcomeUnavailable              // the store or the limiter could not answer
	OutcomeDisabled                 //
	OutcomeCreditsExhausted         // the key's credits could not pay for the request

	// NumOutcomes is the number of outcomes: each is less than it.
	NumOutcomes = iota
)

var outcomeNames = [NumOutcomes]string{"valid", "invalid", "revoked", "expired", "wrong_environment",
	"ip_not_allowed", "forbidden", "rate_limited", "unavailable", "disabled", "credits_exhausted"}

// String is the outcome's label value, such as "valid" or "rate_limited".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Outcomes lists every Outcome.
func Outcomes() []Outcome {
	out := make([]Outcome, NumOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// OutcomeOf is the Outcome of Verify's error (nil: valid). Any error it
// does not know counts as unavailable. It allocates nothing.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeValid
	case errors.Is(err, ErrInvalidKey):
		return OutcomeInvalid
	case errors.Is(err, ErrKeyRevoked):
		return OutcomeRevoked
	case errors.Is(err, ErrKeyExpired):
		return OutcomeExpired
	case errors.Is(err, ErrKeyDisabled):
		return OutcomeDisabled
	case errors.Is(err, ErrWrongEnvironment):
		return OutcomeWrongEnvironment
	case errors.Is(err, ErrIPNotAllowed):
		return OutcomeIPNotAllowed
	case errors.Is(err, ErrPermissionDenied):
		return OutcomeForbidden
	case isRateLimit(err):
		return OutcomeRateLimited
	case errors.Is(err, ErrCreditsExhausted):
		return OutcomeCreditsExhausted
	}
	return OutcomeUnavailable
}

// isRateLimit is errors.As for *RateLimitError without the allocation of
// a target: Verify returns it unwrapped, and anything else is unwrapped
// here by hand.
func isRateLimit(err error) bool {
	for err != nil {
		if _, ok := err.(*RateLimitError); ok {
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}

// Op names a lifecycle operation.
type Op string

// The operations an Observer sees.
const (
	OpCreate         Op = "create"
	OpGet            Op = "get"
	OpList           Op = "list"
	OpUpdate         Op = "update"
	OpRevoke         Op = "revoke"
	OpRoll           Op = "roll"
	OpFlushLastUsed  Op = "flush_last_used"
	OpFlushUsage     Op = "flush_usage"
	OpImport         Op = "import"
	OpNotifyExpiring Op = "notify_expiring"
	OpReportLeak     Op = "report_leak"
)

// WithObserver reports every verification and lifecycle operation to o.
func WithObserver(o Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("keys: WithObserver: nil Observer")
		}
		c.observer = o
		return nil
	}
}

func noEnd(error) {}

// op starts an operation for the observer, if there is one.
func (m *Manager) op(ctx context.Context, op Op) (context.Context, func(error)) {
	if m.obs == nil {
		return ctx, noEnd
	}
	return m.obs.Operation(ctx, op)
}
