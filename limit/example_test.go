package limit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/txcloud/keys/limit"
)

// The in-process limiter: a limit of N a minute lets N through at once,
// then one every minute/N; a refusal says when to retry.
func ExampleNewMemory() {
	l := limit.NewMemory()
	now := time.Date(2031, 1, 1, 12, 0, 0, 0, time.UTC)
	checks := limit.Checks{{Name: limit.Key, ID: "key_1", Max: 2}}
	for range 3 {
		st, ok, _ := l.Allow(context.Background(), checks, now)
		fmt.Println(ok, st.Name, st.Remaining, st.RetryAfter)
	}
	// Output:
	// true key 1 0s
	// true key 0 0s
	// false key 0 30s
}
