package keys

import (
	"errors"
	"fmt"

	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/store"
)

// Sentinel errors. Match them with errors.Is; the library wraps them with
// context but never replaces them.
var (
	// ErrInvalidKey: the presented key is malformed, has a bad checksum or is
	// unknown. The three are deliberately one error so that a caller (and so an
	// attacker) learns nothing about which keys exist.
	ErrInvalidKey = errors.New("keys: invalid API key")
	// ErrKeyRevoked: the key existed and has been revoked.
	ErrKeyRevoked = errors.New("keys: API key revoked")
	// ErrKeyExpired: the key's expires_at has passed.
	ErrKeyExpired = errors.New("keys: API key expired")
	// ErrKeyDisabled: the key is disabled (APIKeyUpdate.Enabled); it works
	// again once enabled.
	ErrKeyDisabled = errors.New("keys: API key disabled")
	// ErrWrongEnvironment: the key belongs to another environment than the
	// one the caller required (a test key on a live-only API, say).
	ErrWrongEnvironment = errors.New("keys: API key is for another environment")
	// ErrIPNotAllowed: the key has an IP allowlist that the client address is
	// not in, or the caller gave no client address to check.
	ErrIPNotAllowed = errors.New("keys: client IP not allowed for this API key")
	// ErrPermissionDenied: the key or principal lacks a permission the action
	// needs, or tried to grant more than it holds.
	ErrPermissionDenied = errors.New("keys: permission denied")
	// ErrRateLimited: the key is over its rate limit. The error is a
	// *RateLimitError carrying the delay before the next request may pass.
	ErrRateLimited = errors.New("keys: rate limit exceeded")
	// ErrValidation: a request failed validation. The error is a
	// *ValidationError naming the parameter.
	ErrValidation = errors.New("keys: invalid request")
	// ErrIdempotencyConflict: an idempotency key was reused with a different
	// request.
	ErrIdempotencyConflict = errors.New("keys: idempotency key reused with a different request")
	// ErrNotFound: no such key (or one the caller may not see). It is the
	// same value as store.ErrNotFound, which stores return.
	ErrNotFound = store.ErrNotFound
	// ErrUnavailable: the store or the rate limiter failed (a database
	// down, say). It wraps the underlying error. It is the server's fault,
	// never the key's: the HTTP adapter answers it with 503, not 401.
	ErrUnavailable = errors.New("keys: store or limiter unavailable")
	// ErrKeyLimit: the account already holds the most active (unrevoked)
	// keys it may (WithMaxKeysPerAccount); revoke one, or roll instead.
	// It is the same value as store.ErrKeyLimit.
	ErrKeyLimit = store.ErrKeyLimit
	// ErrClosed: the Manager has been closed.
	ErrClosed = errors.New("keys: closed")
)

// The codes of a ValidationError, as in the TXCloud error envelope.
const (
	codeMissingParameter = "missing_parameter"
	codeInvalidParameter = "invalid_parameter"
	codeInvalidRequest   = "invalid_request"
)

// ValidationError is a request that failed validation. Param names the
// offending field the way the error envelope does ("allowed_ips[1]").
// Message never contains a secret.
type ValidationError struct {
	Param   string
	Code    string // "missing_parameter", "invalid_parameter" or "invalid_request"
	Message string
}

func (e *ValidationError) Error() string {
	if e.Param == "" {
		return "keys: invalid request: " + e.Message
	}
	return fmt.Sprintf("keys: invalid %s: %s", e.Param, e.Message)
}

// Unwrap makes errors.Is(err, ErrValidation) hold.
func (e *ValidationError) Unwrap() error { return ErrValidation }

func invalid(param, format string, args ...any) *ValidationError {
	return &ValidationError{Param: param, Code: codeInvalidParameter, Message: fmt.Sprintf(format, args...)}
}

func missing(param string) *ValidationError {
	return &ValidationError{Param: param, Code: codeMissingParameter, Message: param + " is required"}
}

// PermissionError is an attempt to do or grant more than a principal may.
// Param names the request field at fault, if any.
type PermissionError struct {
	Param   string
	Message string
}

func (e *PermissionError) Error() string { return "keys: permission denied: " + e.Message }

// Unwrap makes errors.Is(err, ErrPermissionDenied) hold.
func (e *PermissionError) Unwrap() error { return ErrPermissionDenied }

// RateLimitError is returned (wrapping ErrRateLimited) when a request is
// over a limit: RateLimit names it, and says when to retry.
type RateLimitError struct {
	RateLimit limit.Status
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("keys: rate limit exceeded, retry after %s", e.RateLimit.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrRateLimited) hold.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }
