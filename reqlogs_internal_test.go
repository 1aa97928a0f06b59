package keys

import (
	"testing"
	"time"

	"github.com/txcloud/keys/reqlog"
)

// FuzzLogCursor: any cursor is refused or read as a position that
// encodes back to the same position; none panics.
func FuzzLogCursor(f *testing.F) {
	f.Add(encodeLogCursor(&reqlog.Entry{Timestamp: time.Unix(1_800_000_000, 123), RequestID: "req_ABC"}))
	f.Add("MTIz")
	f.Add("")
	f.Add("LTEgcmVxXw")
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := decodeLogCursor(s)
		if !ok {
			return
		}
		if c.RequestID == "" || len(c.RequestID) > reqlog.MaxRequestIDLen {
			t.Fatalf("%q: request ID %q", s, c.RequestID)
		}
		again, ok := decodeLogCursor(encodeLogCursor(&reqlog.Entry{Timestamp: c.Timestamp, RequestID: c.RequestID}))
		if !ok || !again.Timestamp.Equal(c.Timestamp) || again.RequestID != c.RequestID {
			t.Fatalf("%q: %+v does not round-trip: %+v", s, c, again)
		}
	})
}
