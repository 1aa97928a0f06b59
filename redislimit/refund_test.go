package redislimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/txcloud/keys/limit"
)

// A refund gives back exactly the request Allow counted, on every kind of
// check, as the in-memory limiter's does (limit's
// TestRefundGivesBackOneRequest), and never makes room beyond the limit.
func TestRefundGivesBackOneRequest(t *testing.T) {
	ctx := context.Background()
	client := liveClient(t)
	for _, c := range []limit.Check{
		{Name: limit.Key, ID: "key_a", Max: 3},
		{Name: limit.AccountMinute, ID: "acct_a", Max: 3},
		{Name: limit.AccountDay, ID: "acct_a", Max: 3},
		{Name: limit.Endpoint, ID: "key_a", Route: "GET /v1/x", Max: 3},
	} {
		t.Run(c.Name.String(), func(t *testing.T) {
			l := newLimiter(t, client)
			checks := limit.Checks{c}
			passes := func() (n int) {
				for i := 0; ; i++ {
					// A new clock reading each time: a refusal is
					// remembered until its retry time on the clock given.
					if _, ok, err := l.Allow(ctx, checks, time.Now().Add(time.Duration(i)*time.Hour)); err != nil {
						t.Fatal(err)
					} else if !ok {
						return n
					}
					n++
				}
			}
			if err := l.Refund(ctx, checks, time.Now()); err != nil {
				t.Fatal(err)
			}
			rl, ok, err := l.Allow(ctx, checks, time.Now())
			if err != nil || !ok || rl.Remaining != 2 {
				t.Fatalf("first request after a refund of nothing: %v, %d remaining (%v); want 2", ok, rl.Remaining, err)
			}
			if err := l.Refund(ctx, checks, time.Now()); err != nil {
				t.Fatal(err)
			}
			if n := passes(); n != 3 {
				t.Fatalf("after one request and its refund, %d pass; want the limit, 3", n)
			}
			for range 2 {
				if err := l.Refund(ctx, checks, time.Now()); err != nil {
					t.Fatal(err)
				}
				if n := passes(); n != 1 {
					t.Fatalf("after a refund at the limit, %d pass; want 1", n)
				}
			}
		})
	}
}
