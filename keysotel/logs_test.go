package keysotel_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/keysotel"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/log/logtest"
)

// Every entry the Manager records reaches the exporter as one record,
// those of no account too, with its status, route and request ID, and
// the severity of its status.
func TestLogExporter(t *testing.T) {
	rec := logtest.NewRecorder()
	x := keysotel.NewLogExporter(keysotel.WithLoggerProvider(rec))
	m, err := keys.New(memstore.New(), keys.WithRequestLogs(reqlog.Config{Exporter: x}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	m.LogRequest(&reqlog.Entry{RequestID: "req_A", Timestamp: time.Now(), AccountID: "acct_1", KeyID: "key_1", Method: "GET", Path: "GET /v1/ping",
		Status: 429, ErrorCode: "rate_limit_exceeded", Limit: "key", IP: netip.MustParseAddr("198.51.100.7")})
	m.LogRequest(&reqlog.Entry{RequestID: "req_B", Timestamp: time.Now(), Method: "GET", Path: "/nope", Status: 401})
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]logtest.Record{}
	for _, recs := range rec.Result() {
		for _, r := range recs {
			for _, a := range r.Attributes {
				if a.Key == "keys.request.id" {
					got[a.Value.AsString()] = r
				}
			}
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d records, want 2: %v", len(got), rec.Result())
	}
	attr := func(r logtest.Record, k string) string {
		for _, a := range r.Attributes {
			if string(a.Key) == k {
				return a.Value.String()
			}
		}
		return ""
	}
	a := got["req_A"]
	if a.Severity != log.SeverityWarn || a.EventName != "keys.request" || attr(a, "http.response.status_code") != "429" ||
		attr(a, "keys.limit") != "key" || attr(a, "client.address") != "198.51.100.0" || attr(a, "keys.account.id") != "acct_1" {
		t.Fatalf("req_A: %+v", a)
	}
	if b := got["req_B"]; attr(b, "keys.account.id") != "" || attr(b, "http.route") != "/nope" {
		t.Fatalf("req_B: %+v", b)
	}
}
