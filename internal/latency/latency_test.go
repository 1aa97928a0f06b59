package latency_test

import (
	"testing"
	"time"

	"github.com/txcloud/keys/internal/latency"
)

// A window takes MinRuns runs however long each is, and its p99 is near
// the slowest of them, not the median.
func TestP99TakesMinRuns(t *testing.T) {
	runs := 0
	p := latency.P99(time.Nanosecond, 0, func() {
		runs++
		if runs%50 == 0 { // 2% of the runs are slow
			time.Sleep(2 * time.Millisecond)
		}
	})
	if runs != latency.MinRuns {
		t.Errorf("%d runs in a 1 ns window, want %d", runs, latency.MinRuns)
	}
	if p < 2*time.Millisecond {
		t.Errorf("p99 %v with 2%% of the runs at 2 ms", p)
	}
}

// The pause is not measured.
func TestP99LeavesOutThePause(t *testing.T) {
	if p := latency.P99(20*time.Millisecond, time.Millisecond, func() {}); p >= time.Millisecond {
		t.Errorf("p99 %v of an empty op with 1 ms pauses", p)
	}
}
