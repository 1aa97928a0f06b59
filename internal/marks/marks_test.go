package marks

import (
	"encoding/binary"
	"testing"
	"time"
)

// A Set is bounded in count and time: past Max the oldest go first, and a
// mark is refused within its window and new after it.
func TestSetIsBounded(t *testing.T) {
	s := Set{Max: 1000}
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	window := 24 * time.Hour
	var first [32]byte
	for i := range 1500 {
		var d [32]byte
		binary.LittleEndian.PutUint64(d[:], uint64(i))
		if !s.Mark(d, now.Add(window), now) {
			t.Fatalf("mark %d refused as a repeat", i)
		}
	}
	if len(s.until) > 1000 || len(s.order) > 1000 {
		t.Fatalf("holds %d marks (%d in order), bound 1000", len(s.until), len(s.order))
	}
	if !s.Mark(first, now.Add(window), now) {
		t.Fatal("the oldest mark, evicted, is still refused")
	}
	var last [32]byte
	binary.LittleEndian.PutUint64(last[:], 1499)
	if s.Mark(last, now.Add(window), now.Add(window-time.Nanosecond)) {
		t.Fatal("a repeat inside the window was new")
	}
	if !s.Mark(last, now.Add(2*window), now.Add(window)) {
		t.Fatal("a mark made again after its window was refused")
	}
	s.Unmark(last)
	if !s.Mark(last, now.Add(2*window), now.Add(window)) {
		t.Fatal("an unmarked mark was refused")
	}
}
