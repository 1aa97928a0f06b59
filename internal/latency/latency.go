// Package latency measures a tail latency for the project's timing tests.
package latency

import (
	"slices"
	"time"
)

// MinRuns is the fewest runs a window takes. A window bounded by time
// alone can run once on a busy machine, and its p99 is then its median:
// a test that keeps the best of several windows as its baseline took such
// a window as the baseline once, and failed. At 200 runs the p99 is the
// third slowest.
const MinRuns = 200

// P99 runs op for at least window and at least MinRuns times, pausing for
// pause (unmeasured) after each run, and returns the 99th percentile of
// op's durations.
func P99(window, pause time.Duration, op func()) time.Duration {
	var ds []time.Duration
	end := time.Now().Add(window)
	for len(ds) < MinRuns || time.Now().Before(end) {
		start := time.Now()
		op()
		ds = append(ds, time.Since(start))
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	slices.Sort(ds)
	return ds[len(ds)*99/100]
}
