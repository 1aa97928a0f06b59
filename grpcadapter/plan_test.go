package grpcadapter_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/usage"
)

// Under a plan, a call over the account's limit is ResourceExhausted
// naming the limit, and the calls are metered per method: successes and
// rate-limit hits.
func TestPlanAndUsage(t *testing.T) {
	plans := func(context.Context, string) (keys.Plan, error) {
		return keys.Plan{PerMinute: 3}, nil
	}
	m := newManager(t, memstore.New(), keys.WithPlans(plans, time.Minute))
	key := string(create(t, m, keys.APIKeyCreate{}).Key)
	c := bufServe(t, m)
	for i := range 3 {
		if _, err := c.Check(withKey(key), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := c.Check(withKey(key), &healthpb.HealthCheckRequest{})
	st := refused(t, err, codes.ResourceExhausted, "rate_limit_exceeded", key)
	if st.Message() == "" || status.Code(err) != codes.ResourceExhausted {
		t.Fatal(err)
	}
	var limit string
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetMetadata() map[string]string }); ok {
			limit = info.GetMetadata()["limit"]
		}
	}
	if limit != "account_minute" {
		t.Fatalf("the refusal names %q, want account_minute", limit)
	}
	s, err := m.UsageSummary(context.Background(), "acct_grpc", usage.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	check := s.ByAPI["/grpc.health.v1.Health/Check"]
	if s.TotalRequests != 4 || check.Successful != 3 || check.RateLimitHits != 1 {
		t.Fatalf("usage %+v", s)
	}
}

// Credits over gRPC: a call spends its method's cost (keys.WithCreditCosts
// by the full method name, the call's API); one the credits
// cannot pay for is ResourceExhausted with reason credits_exhausted (no
// RetryInfo: no refill), metered as a failure, not a rate-limit hit.
func TestCredits(t *testing.T) {
	m := newManager(t, memstore.New(), keys.WithCreditCosts(map[string]int64{"/grpc.health.v1.Health/Check": 2}))
	key := string(create(t, m, keys.APIKeyCreate{Credits: &credits.Budget{Remaining: 5}}).Key)
	c := bufServe(t, m)
	for i := range 2 {
		if _, err := c.Check(withKey(key), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	_, err := c.Check(withKey(key), &healthpb.HealthCheckRequest{})
	st := refused(t, err, codes.ResourceExhausted, "credits_exhausted", key)
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			t.Fatal("a refusal for credits that are never refilled carries a RetryInfo")
		}
	}
	s, err := m.UsageSummary(context.Background(), "acct_grpc", usage.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	check := s.ByAPI["/grpc.health.v1.Health/Check"]
	if s.TotalRequests != 3 || check.Successful != 2 || check.Failed != 1 || check.RateLimitHits != 0 {
		t.Fatalf("usage %+v", s)
	}
}
