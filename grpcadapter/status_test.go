package grpcadapter_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/grpcadapter"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
)

// Status gives every error of the keys package its code and reason (the
// HTTP adapter's code), an idempotency conflict included, and anything
// else Internal with a fixed message.
func TestStatusOfEveryError(t *testing.T) {
	for _, c := range []struct {
		err    error
		code   codes.Code
		reason string
	}{
		{keys.ErrInvalidKey, codes.Unauthenticated, "unauthorized"},
		{keys.ErrKeyDisabled, codes.Unauthenticated, "key_disabled"},
		{&keys.PermissionError{Message: "no"}, codes.PermissionDenied, "forbidden"},
		{keys.ErrKeyLimit, codes.ResourceExhausted, "key_limit_reached"},
		{&keys.RateLimitError{}, codes.ResourceExhausted, "rate_limit_exceeded"},
		{&keys.CreditsError{}, codes.ResourceExhausted, "credits_exhausted"},
		{&keys.ValidationError{Code: "invalid_parameter", Message: "bad"}, codes.InvalidArgument, "invalid_parameter"},
		{keys.ErrIdempotencyConflict, codes.AlreadyExists, "idempotency_key_reused"},
		{keys.ErrNotFound, codes.NotFound, "not_found"},
		{keys.ErrUnavailable, codes.Unavailable, "service_unavailable"},
		{fmt.Errorf("%w: %w", keys.ErrUnavailable, context.Canceled), codes.Canceled, "client_closed_request"}, // the caller left
		{errors.New("secret internals"), codes.Internal, "internal_error"},
	} {
		st := grpcadapter.Status(fmt.Errorf("wrapped: %w", c.err))
		var reason string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.Reason
			}
		}
		if st.Code() != c.code || reason != c.reason {
			t.Errorf("Status(%v) = %s %q, want %s %q", c.err, st.Code(), reason, c.code, c.reason)
		}
		if st.Code() == codes.Internal && st.Message() != "internal error" {
			t.Errorf("an unknown error's text reached the client: %q", st.Message())
		}
	}
}
