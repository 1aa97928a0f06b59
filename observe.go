package keys

import (
	"context"
	"errors"

	"github.com/txcloud/keys/observe"
)

// outcomeOf is the observe.Outcome of Verify's error (nil: valid). Any
// error it does not know counts as unavailable. It allocates nothing.
func outcomeOf(err error) observe.Outcome {
	switch {
	case err == nil:
		return observe.Valid
	case errors.Is(err, ErrInvalidKey):
		return observe.Invalid
	case errors.Is(err, ErrKeyRevoked):
		return observe.Revoked
	case errors.Is(err, ErrKeyExpired):
		return observe.Expired
	case errors.Is(err, ErrKeyDisabled):
		return observe.Disabled
	case errors.Is(err, ErrWrongEnvironment):
		return observe.WrongEnvironment
	case errors.Is(err, ErrIPNotAllowed):
		return observe.IPNotAllowed
	case errors.Is(err, ErrPermissionDenied):
		return observe.Forbidden
	case isRateLimit(err):
		return observe.RateLimited
	case errors.Is(err, ErrCreditsExhausted):
		return observe.CreditsExhausted
	case errors.Is(err, context.Canceled):
		return observe.Canceled
	}
	return observe.Unavailable
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

func noEnd(error) {}

// op starts an operation for the observer, if there is one.
func (m *Manager) op(ctx context.Context, op observe.Op) (context.Context, func(error)) {
	if m.obs == nil {
		return ctx, noEnd
	}
	return m.obs.Operation(ctx, op)
}
