package usage_test

import (
	"fmt"
	"time"

	"github.com/txcloud/keys/usage"
)

// A series' granularity, as the API names it, and its buckets' length.
func ExampleParseGranularity() {
	for _, name := range []string{"minute", "hour", "day", "week"} {
		g, err := usage.ParseGranularity(name)
		if err != nil {
			fmt.Println(name, err)
			continue
		}
		fmt.Println(g, g.Duration() == map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[name])
	}
	// Output:
	// minute true
	// hour true
	// day true
	// week granularity is minute, hour or day
}
