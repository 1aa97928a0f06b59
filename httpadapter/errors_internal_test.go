package httpadapter

import (
	"slices"
	"testing"
	"time"

	"github.com/txcloud/keys/internal/refusal"
)

// Retry-After rounds up to whole seconds (a client that waits what it is
// told must pass), and is never 0; X-RateLimit-Reset rounds its instant up
// the same way.
func TestRetryAfterRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]int{
		time.Nanosecond:                   1,
		999 * time.Millisecond:            1,
		time.Second:                       1,
		time.Second + time.Nanosecond:     2,
		1500 * time.Millisecond:           2,
		59*time.Second + time.Microsecond: 60,
		time.Minute:                       60,
		0:                                 1,
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
	t0 := time.Unix(1_900_000_000, 0)
	for at, want := range map[time.Time]int64{
		t0:                             1_900_000_000,
		t0.Add(time.Nanosecond):        1_900_000_001,
		t0.Add(-time.Nanosecond):       1_900_000_000,
		t0.Add(999 * time.Millisecond): 1_900_000_001,
	} {
		if got := ceilUnix(at); got != want {
			t.Errorf("ceilUnix(%v) = %d, want %d", at, got, want)
		}
	}
}

// Every kind's envelope type, which internal/refusal names for both
// adapters, is one of this package's Type constants.
func TestRefusalTypesAreTheEnvelopes(t *testing.T) {
	types := []string{TypeValidation, TypeAuthentication, TypeAuthorization, TypeNotFound, TypeIdempotency, TypeRateLimit, TypeCredits, TypeAPI}
	for k := refusal.Internal; k <= refusal.ClientGone; k++ {
		if _, typ := k.HTTP(); !slices.Contains(types, typ) {
			t.Errorf("kind %d: type %q is not the envelope's", k, typ)
		}
	}
}
