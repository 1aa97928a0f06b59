package credits_test

import (
	"fmt"
	"time"

	"github.com/txcloud/keys/credits"
)

// When a budget is next refilled: the start of the next UTC day or month,
// an instant every client can know in advance.
func ExampleInterval_Next() {
	t := time.Date(2031, 1, 31, 18, 30, 0, 0, time.UTC)
	fmt.Println(credits.Daily.Next(t))
	fmt.Println(credits.Monthly.Next(t))
	// Output:
	// 2031-02-01 00:00:00 +0000 UTC
	// 2031-02-01 00:00:00 +0000 UTC
}
