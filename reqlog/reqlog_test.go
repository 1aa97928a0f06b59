package reqlog_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys/reqlog"
)

// An entry reads back as it was written, nulls for what it lacks, and
// never shows its account.
func TestEntryJSON(t *testing.T) {
	e := reqlog.Entry{RequestID: "req_A", Timestamp: time.Date(2026, 12, 5, 1, 2, 3, 456789000, time.UTC), AccountID: "acct_secret",
		KeyID: "key_1", Environment: "live", Method: "GET", Path: "GET /v1/ping", API: "ping", Status: 429, ErrorType: "rate_limit_error",
		ErrorCode: "rate_limit_exceeded", Limit: "key", Latency: 1234567 * time.Nanosecond, IP: netip.MustParseAddr("198.51.100.0"),
		UserAgent: "curl/8", RequestBytes: 1, ResponseBytes: 2}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "acct_secret") || !strings.Contains(string(b), `"latency_ms":1.234`) {
		t.Fatalf("%s", b)
	}
	var back reqlog.Entry
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	e.AccountID, e.Latency = "", 1234*time.Microsecond
	if back != e {
		t.Fatalf("read back\n%+v\nwant\n%+v", back, e)
	}
	b, _ = json.Marshal(reqlog.Entry{RequestID: "req_B", Method: "GET", Path: "/", Status: 401})
	for _, f := range []string{"key_id", "environment", "api", "error_type", "error_code", "limit", "ip", "user_agent"} {
		if !strings.Contains(string(b), `"`+f+`":null`) {
			t.Errorf("%s is not null in %s", f, b)
		}
	}
}
