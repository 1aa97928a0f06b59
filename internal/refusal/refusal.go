// Package refusal classifies the keys package's errors once, for every
// adapter: the kind of refusal (which each transport maps to its own
// status), the TXCloud error code, a fixed message and the parameter at
// fault. An error it does not know is Internal, with a fixed message: its
// text never reaches a client. No message holds a key.
package refusal

import (
	"context"
	"errors"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/sentinel"
	"github.com/txcloud/keys/limit"
)

// Kind is what a transport turns into its status.
type Kind uint8

// The kinds of refusal.
const (
	Internal            Kind = iota // 500, Internal
	Unauthenticated                 // 401, Unauthenticated
	Forbidden                       // 403, PermissionDenied
	KeyLimit                        // 403, ResourceExhausted
	RateLimited                     // 429, ResourceExhausted
	CreditsExhausted                // 402, ResourceExhausted (another ErrorInfo reason)
	Invalid                         // 400, InvalidArgument
	IdempotencyConflict             // 409, AlreadyExists
	NotFound                        // 404, NotFound
	Unavailable                     // 503, Unavailable
	ClientGone                      // 499 (nobody reads it), Canceled
)

// Refusal is an error in the envelope's terms.
type Refusal struct {
	Kind       Kind
	Code       string // the envelope's code, and gRPC's ErrorInfo reason
	Message    string
	Param      string        // the request field at fault, if any
	RetryAfter time.Duration // RateLimited: the wait before the next request may pass; CreditsExhausted: until the refill (0: none)
	Limit      string        // RateLimited: which limit refused (limit.Name's String), if known; CreditsExhausted: key_credits or account_credits
}

// limitMessages say which limit refused a request.
var limitMessages = map[limit.Name]string{
	limit.Key:           "rate limit exceeded: this key's requests per minute",
	limit.AccountMinute: "rate limit exceeded: the account's requests per minute (its plan)",
	limit.AccountDay:    "daily quota exceeded: the account's requests per day (its plan; the day is UTC)",
	limit.Endpoint:      "rate limit exceeded: this key's requests per minute to this endpoint (its plan)",
	limit.Concurrency:   "too many requests in flight: the account's concurrent requests (its plan)",
	limit.Management:    "rate limit exceeded: the account's requests per minute to the key endpoints",
}

// Of classifies err.
func Of(err error) Refusal {
	var ve *keys.ValidationError
	var pe *keys.PermissionError
	var rle *keys.RateLimitError
	var ce *keys.CreditsError
	switch {
	case errors.As(err, &ve):
		return Refusal{Kind: Invalid, Code: ve.Code, Message: ve.Message, Param: ve.Param}
	case errors.Is(err, keys.ErrInvalidKey):
		return Refusal{Kind: Unauthenticated, Code: "unauthorized", Message: "invalid API key"}
	case errors.Is(err, keys.ErrKeyExpired):
		return Refusal{Kind: Unauthenticated, Code: "unauthorized", Message: "API key expired"}
	case errors.Is(err, keys.ErrWrongEnvironment):
		return Refusal{Kind: Unauthenticated, Code: "unauthorized", Message: "API key is for another environment"}
	case errors.Is(err, keys.ErrKeyRevoked):
		return Refusal{Kind: Unauthenticated, Code: "key_revoked", Message: "API key revoked"}
	case errors.Is(err, keys.ErrKeyDisabled):
		return Refusal{Kind: Unauthenticated, Code: "key_disabled", Message: "API key disabled"}
	case errors.Is(err, keys.ErrIPNotAllowed):
		return Refusal{Kind: Unauthenticated, Code: "ip_not_allowed", Message: "API key may not be used from this IP address"}
	case errors.As(err, &pe):
		return Refusal{Kind: Forbidden, Code: "forbidden", Message: pe.Message, Param: pe.Param}
	case errors.Is(err, keys.ErrKeyLimit):
		return Refusal{Kind: KeyLimit, Code: "key_limit_reached", Message: "the account holds the maximum number of active keys; revoke one, or roll a key instead"}
	case errors.Is(err, keys.ErrWebhookLimit):
		return Refusal{Kind: KeyLimit, Code: "webhook_limit_reached", Message: "the account holds the maximum number of webhook endpoints; delete one first"}
	case errors.Is(err, keys.ErrPermissionDenied):
		return Refusal{Kind: Forbidden, Code: "forbidden", Message: "permission denied"}
	case errors.As(err, &rle):
		r := Refusal{Kind: RateLimited, Code: "rate_limit_exceeded", Message: "rate limit exceeded", RetryAfter: rle.RateLimit.RetryAfter}
		if msg, ok := limitMessages[rle.RateLimit.Name]; ok {
			r.Message, r.Limit = msg, rle.RateLimit.Name.String()
		}
		return r
	case errors.As(err, &ce):
		whose, limit := "the key's", "key_credits"
		if ce.Account {
			whose, limit = "the account's", "account_credits"
		}
		msg := whose + " credits are spent; they are not refilled (the provider can add more)"
		if ce.RetryAfter > 0 {
			msg = whose + " credits are spent until their refill"
		}
		return Refusal{Kind: CreditsExhausted, Code: "credits_exhausted", Message: msg, RetryAfter: ce.RetryAfter, Limit: limit}
	case errors.Is(err, keys.ErrIdempotencyConflict):
		return Refusal{Kind: IdempotencyConflict, Code: "idempotency_key_reused", Param: "Idempotency-Key", Message: "this Idempotency-Key was used with a different request"}
	case errors.Is(err, sentinel.ErrUsageNotKept):
		return Refusal{Kind: NotFound, Code: "not_found", Message: sentinel.ErrUsageNotKept.Error()}
	case errors.Is(err, sentinel.ErrLogsNotKept):
		return Refusal{Kind: NotFound, Code: "not_found", Message: sentinel.ErrLogsNotKept.Error()}
	case errors.Is(err, sentinel.ErrEventsNotKept):
		return Refusal{Kind: NotFound, Code: "not_found", Message: sentinel.ErrEventsNotKept.Error()}
	case errors.Is(err, keys.ErrNotFound):
		return Refusal{Kind: NotFound, Code: "not_found", Message: "not found"}
	case errors.Is(err, context.Canceled):
		// The caller went away: its context's cancellation ended the
		// work. Not the server's failure, and nobody reads the answer.
		return Refusal{Kind: ClientGone, Code: "client_closed_request", Message: "the client closed the request before the answer"}
	case errors.Is(err, keys.ErrUnavailable), errors.Is(err, keys.ErrClosed):
		return Refusal{Kind: Unavailable, Code: "service_unavailable", Message: "the service is temporarily unavailable; retry later"}
	}
	return Refusal{Kind: Internal, Code: "internal_error", Message: "internal error"}
}

// HTTP is the kind's HTTP status and the error envelope's type, as the
// HTTP adapter answers it; the gRPC adapter's request log records the
// same.
func (k Kind) HTTP() (status int, typ string) {
	switch k {
	case Invalid:
		return 400, "validation_error"
	case Unauthenticated:
		return 401, "authentication_error"
	case Forbidden, KeyLimit:
		return 403, "authorization_error"
	case RateLimited:
		return 429, "rate_limit_error"
	case CreditsExhausted:
		return 402, "credits_error"
	case IdempotencyConflict:
		return 409, "idempotency_error"
	case NotFound:
		return 404, "not_found_error"
	case Unavailable:
		return 503, "api_error"
	case ClientGone:
		return 499, "api_error"
	}
	return 500, "api_error"
}
