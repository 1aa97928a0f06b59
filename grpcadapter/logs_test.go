package grpcadapter_test

import (
	"context"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/usage"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Every call, answered or refused, unary or stream, carries a request-id
// header, and the account's request log has its entry under that ID with
// the status the HTTP adapter would give it.
func TestCallsAreLogged(t *testing.T) {
	m := newManager(t, memstore.New())
	c := bufServe(t, m)
	one := 1
	k := create(t, m, keys.APIKeyCreate{RateLimit: &one})
	want := map[string]reqlog.Entry{}
	call := func(key string, wantStatus int, code, limit string) {
		t.Helper()
		var hdr metadata.MD
		_, _ = c.Check(withKey(key), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
		id := hdr.Get("request-id")
		if len(id) != 1 || !strings.HasPrefix(id[0], "req_") || len(id[0]) != 30 {
			t.Fatalf("request-id header %v", id)
		}
		want[id[0]] = reqlog.Entry{Status: wantStatus, ErrorCode: code, Limit: limit}
	}
	call(string(k.Key), 200, "", "")
	call(string(k.Key), 429, "rate_limit_exceeded", "key")
	stream, err := c.Watch(withKey(string(k.Key)), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := stream.Header()
	if err != nil || len(hdr.Get("request-id")) != 1 {
		t.Fatalf("a stream's header: %v %v", hdr, err)
	}
	_, _ = stream.Recv()
	want[hdr.Get("request-id")[0]] = reqlog.Entry{Status: 429, ErrorCode: "rate_limit_exceeded", Limit: "key"}
	// A handler's own error: Unimplemented (the test server has no List)
	// is a 501 in the log, and a failure in usage.
	other := create(t, m, keys.APIKeyCreate{})
	var hdr2 metadata.MD
	if _, err := c.List(withKey(string(other.Key)), &healthpb.HealthListRequest{}, grpc.Header(&hdr2)); err == nil {
		t.Fatal("List answered")
	}
	if e, err := m.Log(context.Background(), "acct_grpc", hdr2.Get("request-id")[0]); err != nil || e.Status != 501 || e.Path != "/grpc.health.v1.Health/List" {
		t.Fatalf("a handler's Unimplemented: %+v %v", e, err)
	}
	s, err := m.UsageSummary(context.Background(), "acct_grpc", usage.Filter{KeyID: other.ID})
	if err != nil || s.TotalRequests != 1 || s.Failed != 1 {
		t.Fatalf("usage of the handler's error: %+v %v", s, err)
	}
	for id, w := range want {
		e, err := m.Log(context.Background(), "acct_grpc", id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if e.Status != w.Status || e.ErrorCode != w.ErrorCode || e.Limit != w.Limit || e.KeyID != k.ID || e.Path != "/grpc.health.v1.Health/Check" && e.Path != "/grpc.health.v1.Health/Watch" || e.Method != "POST" {
			t.Errorf("%s: %+v, want %+v", id, e, w)
		}
	}
}
