package limit_test

import (
	"context"
	"testing"
	"time"

	"github.com/txcloud/keys/limit"
)

// A refund gives back exactly the request Allow counted, on every kind of
// check: after Allow and Refund, the same number of requests pass as
// before them, and a refund never makes room beyond the limit.
func TestRefundGivesBackOneRequest(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []limit.Check{
		{Name: limit.Key, ID: "key_a", Max: 3},
		{Name: limit.AccountMinute, ID: "acct_a", Max: 3},
		{Name: limit.AccountDay, ID: "acct_a", Max: 3},
		{Name: limit.Endpoint, ID: "key_a", Route: "GET /v1/x", Max: 3},
	} {
		t.Run(c.Name.String(), func(t *testing.T) {
			l := limit.NewMemory().(limit.Refunder)
			checks := limit.Checks{c}
			passes := func() (n int) {
				for {
					if _, ok, _ := l.Allow(ctx, checks, now); !ok {
						return n
					}
					n++
				}
			}
			// A refund of a counter never counted makes no room.
			if err := l.Refund(ctx, checks, now); err != nil {
				t.Fatal(err)
			}
			rl, ok, _ := l.Allow(ctx, checks, now)
			if !ok || rl.Remaining != 2 {
				t.Fatalf("first request after a refund of nothing: %v, %d remaining; want 2", ok, rl.Remaining)
			}
			if err := l.Refund(ctx, checks, now); err != nil {
				t.Fatal(err)
			}
			if n := passes(); n != 3 {
				t.Fatalf("after one request and its refund, %d pass; want the limit, 3", n)
			}
			// Full: each refund lets exactly one more through.
			for range 2 {
				if err := l.Refund(ctx, checks, now); err != nil {
					t.Fatal(err)
				}
				if n := passes(); n != 1 {
					t.Fatalf("after a refund at the limit, %d pass; want 1", n)
				}
			}
		})
	}
}
