package refusal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/limit"
)

// Every error the keys package returns has its kind and code, wrapped or
// not; anything else is Internal, with none of its text.
func TestOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		kind Kind
		code string
	}{
		{keys.ErrInvalidKey, Unauthenticated, "unauthorized"},
		{keys.ErrKeyExpired, Unauthenticated, "unauthorized"},
		{keys.ErrWrongEnvironment, Unauthenticated, "unauthorized"},
		{keys.ErrKeyRevoked, Unauthenticated, "key_revoked"},
		{keys.ErrKeyDisabled, Unauthenticated, "key_disabled"},
		{keys.ErrIPNotAllowed, Unauthenticated, "ip_not_allowed"},
		{&keys.PermissionError{Param: "enabled", Message: "no"}, Forbidden, "forbidden"},
		{keys.ErrPermissionDenied, Forbidden, "forbidden"},
		{keys.ErrKeyLimit, KeyLimit, "key_limit_reached"},
		{&keys.RateLimitError{RateLimit: limit.Status{RetryAfter: 1500 * time.Millisecond}}, RateLimited, "rate_limit_exceeded"},
		{&keys.ValidationError{Param: "name", Code: "missing_parameter", Message: "name is required"}, Invalid, "missing_parameter"},
		{keys.ErrIdempotencyConflict, IdempotencyConflict, "idempotency_key_reused"},
		{keys.ErrNotFound, NotFound, "not_found"},
		{&keys.CreditsError{Account: true}, CreditsExhausted, "credits_exhausted"},
		{keys.ErrUnavailable, Unavailable, "service_unavailable"},
		{keys.ErrClosed, Unavailable, "service_unavailable"},
		{fmt.Errorf("%w: listing keys: %w", keys.ErrUnavailable, context.Canceled), ClientGone, "client_closed_request"},
		{errors.New("db password is hunter2"), Internal, "internal_error"},
	} {
		for _, err := range []error{c.err, fmt.Errorf("context: %w", c.err)} {
			r := Of(err)
			if r.Kind != c.kind || r.Code != c.code || r.Message == "" {
				t.Errorf("Of(%v) = %+v, want kind %d, code %s", err, r, c.kind, c.code)
			}
		}
	}
	if r := Of(errors.New("db password is hunter2")); strings.Contains(r.Message, "hunter2") {
		t.Fatal("an unknown error's text reached the message")
	}
	if r := Of(&keys.PermissionError{Param: "enabled", Message: "no"}); r.Param != "enabled" || r.Message != "no" {
		t.Fatalf("a permission error's param and message: %+v", r)
	}
	if r := Of(&keys.RateLimitError{RateLimit: limit.Status{RetryAfter: 1500 * time.Millisecond}}); r.RetryAfter != 1500*time.Millisecond {
		t.Fatalf("retry after: %v", r.RetryAfter)
	}
	if r := Of(keys.ErrIdempotencyConflict); r.Param != "Idempotency-Key" {
		t.Fatalf("idempotency conflict param: %q", r.Param)
	}
}

// A 402 names the budget that ran out.
func TestCreditsRefusalNamesTheBudget(t *testing.T) {
	if r := Of(&keys.CreditsError{}); r.Limit != "key_credits" || !strings.HasPrefix(r.Message, "the key's") {
		t.Fatalf("the key's credits: %+v", r)
	}
	if r := Of(fmt.Errorf("w: %w", &keys.CreditsError{Account: true})); r.Limit != "account_credits" || !strings.HasPrefix(r.Message, "the account's") {
		t.Fatalf("the account's credits: %+v", r)
	}
}
