package keys_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/usage"
)

// Create a key, show it once, and verify it.
func ExampleManager_Create() {
	ctx := context.Background()
	m, err := keys.New(memstore.New())
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)

	created, err := m.Create(ctx, keys.APIKeyCreate{
		Name:        "billing service",
		Environment: keys.Live,
		Permissions: []string{"transactions:read"},
		AccountID:   "acct_123",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.HasPrefix(string(created.Key), "txc_live_"), len(string(created.Key)))
	fmt.Println(created.Key) // a Secret prints redacted
	fmt.Println(created.Permissions)

	v, err := m.Verify(ctx, string(created.Key), keys.Require("transactions:read"))
	fmt.Println(v.KeyID == created.ID, err)
	// Output:
	// true 47
	// [key redacted]
	// [transactions:read]
	// true <nil>
}

// Configure a Manager: keys branded for your service, a rate limit for
// keys created without one, and a tighter bound on allowlists. Bad input
// is a *ValidationError naming the parameter, matching ErrValidation.
func ExampleNew() {
	ctx := context.Background()
	m, err := keys.New(memstore.New(),
		keys.WithKeyPrefix("acme"),     // acme_live_…, acme_test_…
		keys.WithDefaultRateLimit(600), // requests per minute
		keys.WithMaxAllowedIPs(2),
	)
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)

	created, _ := m.Create(ctx, keys.APIKeyCreate{Name: "ci", Environment: keys.Test, AccountID: "acct_123"})
	fmt.Println(strings.HasPrefix(string(created.Key), "acme_test_"), *created.RateLimit)

	_, err = m.Create(ctx, keys.APIKeyCreate{
		Name: "office", Environment: keys.Live, AccountID: "acct_123",
		AllowedIPs: []string{"203.0.113.7", "203.0.113.8", "203.0.113.9"},
	})
	var ve *keys.ValidationError
	fmt.Println(errors.Is(err, keys.ErrValidation), errors.As(err, &ve) && ve.Param == "allowed_ips")
	// Output:
	// true 600
	// true true
}

// Branch on why verification failed.
func ExampleManager_Verify() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	created, _ := m.Create(ctx, keys.APIKeyCreate{
		Name: "office only", Environment: keys.Test, AllowedIPs: []string{"203.0.113.0/24"}, AccountID: "acct_123",
	})

	for _, ip := range []string{"203.0.113.7", "198.51.100.1"} {
		_, err := m.Verify(ctx, string(created.Key), keys.FromIP(netip.MustParseAddr(ip)))
		switch {
		case err == nil:
			fmt.Println(ip, "ok")
		case errors.Is(err, keys.ErrIPNotAllowed):
			fmt.Println(ip, "refused: address not allowed")
		case errors.Is(err, keys.ErrInvalidKey):
			fmt.Println(ip, "refused: bad key")
		}
	}
	_, err := m.Verify(ctx, "txc_test_not-a-key")
	fmt.Println(errors.Is(err, keys.ErrInvalidKey))
	// Output:
	// 203.0.113.7 ok
	// 198.51.100.1 refused: address not allowed
	// true
}

// Act for a principal, as the HTTP endpoints do: only its account's keys,
// no permission it lacks; a retried idempotent create returns the first
// result.
func ExampleManager_As() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	caller := keys.Principal{AccountID: "acct_1", Subject: "user_42", Permissions: []string{"developers:write", "kyb:read"}}

	req := keys.APIKeyCreate{Name: "kyb worker", Environment: keys.Live, Permissions: []string{"kyb:read"}}
	first, _ := m.As(caller).Create(ctx, req, keys.IdempotencyKey("create-kyb-worker-1"))
	retry, _ := m.As(caller).Create(ctx, req, keys.IdempotencyKey("create-kyb-worker-1"))
	fmt.Println(retry.ID == first.ID, retry.Replayed)

	_, err := m.As(caller).Create(ctx, keys.APIKeyCreate{Name: "too much", Environment: keys.Live, Permissions: []string{"kyb:write"}})
	fmt.Println(errors.Is(err, keys.ErrPermissionDenied))

	stranger := keys.Principal{AccountID: "acct_2", Subject: "user_7", Permissions: []string{"developers:read"}}
	_, err = m.As(stranger).Get(ctx, first.ID)
	fmt.Println(errors.Is(err, keys.ErrNotFound))
	// Output:
	// true true
	// true
	// true
}

// A host's own permission names join the vocabulary: keys may hold them,
// and routes may require them.
func ExampleWithVocabulary() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New(), keys.WithVocabulary(append(keys.DefaultVocabulary(), "reports:read")...))
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "reporting", Environment: keys.Live, Permissions: []string{"reports:read"}, AccountID: "acct_1"})
	fmt.Println(err)
	_, err = m.Verify(ctx, string(k.Key), keys.Require("reports:read"))
	fmt.Println(err)
	_, err = m.Create(ctx, keys.APIKeyCreate{Name: "typo", Environment: keys.Live, Permissions: []string{"report:read"}, AccountID: "acct_1"})
	var ve *keys.ValidationError
	fmt.Println(errors.As(err, &ve), ve.Param)
	// Output:
	// <nil>
	// <nil>
	// true permissions[0]
}

// Plans: every key of an account counts against its plan's limits
// together; the refusal names the limit.
func ExampleWithPlans() {
	ctx := context.Background()
	plans := func(_ context.Context, account string) (keys.Plan, error) {
		if account == "acct_free" {
			return keys.Plan{Name: "free", PerMinute: 2, PerDay: 1000}, nil
		}
		return keys.Plan{}, nil // no limits
	}
	m, _ := keys.New(memstore.New(), keys.WithPlans(plans, time.Minute))
	defer m.Close(ctx)
	a, _ := m.Create(ctx, keys.APIKeyCreate{Name: "a", Environment: keys.Live, AccountID: "acct_free"})
	b, _ := m.Create(ctx, keys.APIKeyCreate{Name: "b", Environment: keys.Live, AccountID: "acct_free"})
	for _, k := range []keys.Secret{a.Key, b.Key, a.Key} {
		v, err := m.Verify(ctx, string(k))
		var rle *keys.RateLimitError
		if errors.As(err, &rle) {
			fmt.Println("refused by", rle.RateLimit.Name, "retry after", rle.RateLimit.RetryAfter > 0)
			continue
		}
		fmt.Println("ok,", v.RateLimit.Remaining, "left this minute")
	}
	// Output:
	// ok, 1 left this minute
	// ok, 0 left this minute
	// refused by account_minute retry after true
}

// Credits: a key spends its budget, at the cost set for each API; a
// request the budget cannot pay for is refused and spends nothing.
func ExampleWithCreditCosts() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New(), keys.WithCreditCosts(map[string]int64{"POST /v1/identity/verify": 3, "GET /v1/health": 0}))
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "metered", Environment: keys.Live, AccountID: "acct_1",
		Credits: &credits.Budget{Remaining: 5, Refill: &credits.Refill{Interval: credits.Monthly, Amount: 5}}})
	for _, api := range []string{"POST /v1/identity/verify", "GET /v1/health", "POST /v1/identity/verify"} {
		v, err := m.Verify(ctx, string(k.Key), keys.OnAPI(api))
		var ce *keys.CreditsError
		if errors.As(err, &ce) {
			fmt.Printf("%s: refused, %d left, refilled at the start of next month: %t\n", api, ce.Credits.Remaining, ce.RetryAfter > 0)
			continue
		}
		fmt.Printf("%s: spent %d, %d left\n", api, v.Spent, v.Credits)
	}
	// Output:
	// POST /v1/identity/verify: spent 3, 2 left
	// GET /v1/health: spent 0, 0 left
	// POST /v1/identity/verify: refused, 2 left, refilled at the start of next month: true
}

// Reading usage: what the middleware counts (CountUsage), summed over a
// period, by API, and priced.
func ExampleManager_UsageSummary() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New(), keys.WithPrices("USD", map[string]string{"identity": "0.002"}))
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1"})
	v, _ := m.Verify(ctx, string(k.Key))
	for _, status := range []int{200, 200, 200, 404, 429} {
		m.CountUsage(&v, "identity", status) // the HTTP middleware does this for each request
	}
	s, _ := m.UsageSummary(ctx, "acct_1", usage.Filter{})
	fmt.Printf("%d requests, %d successful, %d failed (%d rate-limited), %s %s\n",
		s.TotalRequests, s.Successful, s.Failed, s.RateLimitHits, s.EstimatedCost.Amount, s.EstimatedCost.Currency)
	// Output:
	// 5 requests, 3 successful, 2 failed (1 rate-limited), 0.006 USD
}

// Import keys another system issued: their holders keep using them.
func ExampleManager_Import() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New(), keys.WithForeignPrefixes("sk_live_"))
	defer m.Close(ctx)
	legacy := "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	res, err := m.Import(ctx, []keys.ImportKey{{Key: keys.Secret(legacy), Name: "legacy", Environment: keys.Live, AccountID: "acct_1"}})
	fmt.Println(res.Created, res.Existing, err)
	v, err := m.Verify(ctx, legacy)
	fmt.Println(v.AccountID, err)
	res, _ = m.Import(ctx, []keys.ImportKey{{Key: keys.Secret(legacy), Name: "legacy", Environment: keys.Live, AccountID: "acct_1"}})
	fmt.Println(res.Created, res.Existing) // importing again creates nothing twice
	// Output:
	// 1 0 <nil>
	// acct_1 <nil>
	// 0 1
}

// Report a key found in public: it is revoked, and key.leaked tells the
// host, which tells the key's holder.
func ExampleManager_ReportLeak() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New(), keys.WithEventHook(func(_ context.Context, e event.Event) {
		fmt.Println("event:", e.Type)
	}))
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "pushed to GitHub", Environment: keys.Live, AccountID: "acct_1"})
	rep, err := m.ReportLeak(ctx, string(k.Key), event.Leak{URL: "https://github.com/acme/app/blob/main/.env", Source: "content"}, keys.LeakRevoke)
	fmt.Println(rep.Found, rep.Acted, err)
	_, err = m.Verify(ctx, string(k.Key))
	fmt.Println(errors.Is(err, keys.ErrKeyRevoked))
	// Output:
	// event: key.created
	// event: key.revoked
	// event: key.leaked
	// true true <nil>
	// true
}

// A host serving requests without the adapters records each one itself;
// the account's customer reads it back by its request ID.
func ExampleManager_LogRequest() {
	ctx := context.Background()
	m, err := keys.New(memstore.New())
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)
	m.LogRequest(&reqlog.Entry{RequestID: "req_EXAMPLE", Timestamp: time.Now(), AccountID: "acct_1", KeyID: "key_1",
		Method: "GET", Path: "GET /v1/ping", Status: 429, ErrorCode: "rate_limit_exceeded", Limit: "key"})
	e, err := m.As(keys.Principal{AccountID: "acct_1", Subject: "key_1"}).Log(ctx, "req_EXAMPLE")
	fmt.Println(e.Status, e.Limit, err)
	_, err = m.As(keys.Principal{AccountID: "acct_2", Subject: "key_2"}).Log(ctx, "req_EXAMPLE")
	fmt.Println(errors.Is(err, keys.ErrNotFound))
	// Output:
	// 429 key <nil>
	// true
}
