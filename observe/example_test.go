package observe_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/observe"
)

// counter counts verifications by outcome, in an array: the outcomes are
// small integers.
type counter struct {
	verified [observe.NumOutcomes]atomic.Int64
}

func (c *counter) Verify(_ context.Context, o observe.Outcome, _ time.Duration) {
	c.verified[o].Add(1)
}

func (c *counter) Operation(ctx context.Context, _ observe.Op) (context.Context, func(error)) {
	return ctx, func(error) {}
}

// Observe what a Manager does: here, count verifications by outcome.
func Example() {
	ctx := context.Background()
	c := &counter{}
	m, _ := keys.New(memstore.New(), keys.WithObserver(c))
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1"})
	_, _ = m.Verify(ctx, string(k.Key))
	_, _ = m.Verify(ctx, "txc_live_forged")
	_, _ = m.Verify(ctx, string(k.Key), keys.InEnvironment(keys.Test))
	for o := range observe.Outcome(observe.NumOutcomes) {
		if n := c.verified[o].Load(); n > 0 {
			fmt.Println(o, n)
		}
	}
	// Output:
	// valid 1
	// invalid 1
	// wrong_environment 1
}
