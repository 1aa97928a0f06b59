package secretscanning

import (
	"encoding/binary"
	"testing"
	"time"
)

// The receiver's memory of delivered bodies is bounded in count and time.
func TestAlertMemoryIsBounded(t *testing.T) {
	s := &receiver{seen: map[[32]byte]time.Time{}}
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	var first [32]byte
	for i := range maxRemembered + 500 {
		var d [32]byte
		binary.LittleEndian.PutUint64(d[:], uint64(i))
		if !s.remember(d, now) {
			t.Fatalf("body %d refused as a replay", i)
		}
	}
	if len(s.seen) > maxRemembered || len(s.order) > maxRemembered {
		t.Fatalf("remembers %d bodies (%d in order), bound %d", len(s.seen), len(s.order), maxRemembered)
	}
	if !s.remember(first, now) {
		t.Fatal("the oldest body, evicted, is still refused")
	}
	var last [32]byte
	binary.LittleEndian.PutUint64(last[:], uint64(maxRemembered+499))
	if s.remember(last, now.Add(alertReplayWindow-time.Nanosecond)) {
		t.Fatal("a replay inside the window was accepted")
	}
	if !s.remember(last, now.Add(alertReplayWindow)) {
		t.Fatal("a body delivered again after the window was refused")
	}
}
