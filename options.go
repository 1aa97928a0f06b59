package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/webhook"
)

// Every option of the package is in this file: Option configures a
// Manager, VerifyOption adds a check to one Verify, and IssueOption applies
// to the two calls that issue a secret (Create and Roll).

// Option configures a Manager (New). Each refuses a value it cannot use,
// so New returns the error instead of a Manager that misbehaves later.
type Option func(*config) error

type config struct {
	now              func() time.Time
	brand            string
	pepper           []byte
	idemSecret       []byte
	vocabulary       []string
	maxAllowedIPs    int
	defaultRateLimit int
	limiter          limit.Limiter
	flushInterval    time.Duration
	logger           *slog.Logger
	onEvent          func(context.Context, event.Event)
	maxKeys          int
	observer         observe.Observer
	maxLifetime      time.Duration
	foreign          []string
	plans            func(ctx context.Context, accountID string) (Plan, error)
	planTTL          time.Duration
	currency         string
	prices           map[string]int64 // millionths of currency per successful request
	costs            map[string]int64 // credits per request, by API
	logs             reqlog.Config
	events           event.Config
	webhooks         webhook.Config
}

// WithForeignPrefixes names the prefixes of keys another system issued
// that Manager.Import may bring in, and that Verify then accepts: each 2
// to 32 letters, digits, '_' and '-', at most 8. A foreign key has no
// checksum to check; it must carry at least 16 characters after its
// prefix and at most 256 in all. A prefix may not overlap this Manager's
// own ("txc_"), so a malformed key of ours is still refused without a
// lookup.
func WithForeignPrefixes(prefixes ...string) Option {
	return func(c *config) error {
		if len(prefixes) == 0 || len(prefixes) > 8 {
			return errors.New("keys: WithForeignPrefixes: give 1 to 8 prefixes")
		}
		for _, p := range prefixes {
			if !validForeignPrefix(p) {
				return fmt.Errorf("keys: WithForeignPrefixes: %q is not 2 to 32 letters, digits, '_' and '-'", truncate(p, 40))
			}
		}
		c.foreign = slices.Clone(prefixes)
		return nil
	}
}

// WithMaxKeyLifetime bounds how long a key may live, from its creation
// (GitHub's fine-grained tokens: 366 days). A create that names no
// expires_at gets creation+d; one asking for later, or an update asking
// for later than creation+d or for no expiry, is refused with a
// *ValidationError on expires_at (never silently shortened). A roll's
// successor keeps its predecessor's expiry, brought within now+d. Keys
// created before the option was set keep their expiry until changed.
// 0, the default, bounds nothing.
func WithMaxKeyLifetime(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 || d > 0 && d < time.Minute {
			return fmt.Errorf("keys: WithMaxKeyLifetime: %v is not a lifetime (0 for none, or a minute or more)", d)
		}
		c.maxLifetime = d
		return nil
	}
}

// WithClock replaces time.Now, for tests. The Manager reads it from
// every goroutine that calls it and from its own (the flushers, the
// webhook deliverer): it must be safe for concurrent use.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("keys: WithClock: nil clock")
		}
		c.now = now
		return nil
	}
}

// WithKeyPrefix sets the brand keys start with ("txc" gives txc_live_…):
// 1 to 16 lowercase letters and digits.
func WithKeyPrefix(brand string) Option {
	return func(c *config) error {
		if _, err := newKeyFormat(brand); err != nil {
			return fmt.Errorf("keys: WithKeyPrefix: %w", err)
		}
		c.brand = brand
		return nil
	}
}

// WithPepper stores keys as HMAC-SHA-256 under pepper instead of SHA-256,
// so a stolen copy of the store is useless without the pepper. Keep the
// pepper outside the database; losing or changing it makes every existing
// key fail to verify. It must be at least 32 bytes. Unless
// WithIdempotencySecret is given, the idempotency secret is derived from it.
func WithPepper(pepper []byte) Option {
	return func(c *config) error {
		if len(pepper) < 32 {
			return errors.New("keys: WithPepper: the pepper must be at least 32 bytes")
		}
		c.pepper = slices.Clone(pepper)
		return nil
	}
}

// WithIdempotencySecret sets the secret that idempotent replays are sealed
// under (at least 32 bytes). Every instance sharing a Store must use the
// same one, or a retry landing on another instance cannot be replayed and
// fails. Without it (and without WithPepper) each Manager draws a random
// secret, which suits a process-local store.
func WithIdempotencySecret(secret []byte) Option {
	return func(c *config) error {
		if len(secret) < 32 {
			return errors.New("keys: WithIdempotencySecret: the secret must be at least 32 bytes")
		}
		c.idemSecret = slices.Clone(secret)
		return nil
	}
}

// WithVocabulary replaces DefaultVocabulary: the permissions a key may
// hold, each "resource:action".
func WithVocabulary(perms ...string) Option {
	return func(c *config) error {
		for _, p := range perms {
			if !validPermissionName(p) {
				return fmt.Errorf("keys: WithVocabulary: %q is not resource:action", p)
			}
		}
		c.vocabulary = slices.Clone(perms)
		return nil
	}
}

// WithMaxAllowedIPs bounds the allowed_ips of one key (default 100).
func WithMaxAllowedIPs(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("keys: WithMaxAllowedIPs: must be at least 1")
		}
		c.maxAllowedIPs = n
		return nil
	}
}

// WithDefaultRateLimit is the rate limit (requests per minute) a key gets
// when its create request has none. It is copied into the key when the key
// is created, so a response always shows the limit that applies. Default:
// no limit.
func WithDefaultRateLimit(perMinute int) Option {
	return func(c *config) error {
		if _, err := validateRateLimit(perMinute); err != nil {
			return fmt.Errorf("keys: WithDefaultRateLimit: %w", err)
		}
		c.defaultRateLimit = perMinute
		return nil
	}
}

// WithMaxKeysPerAccount bounds what an account holds (default 10,000).
// At most n active (unrevoked) keys: a create beyond it is ErrKeyLimit,
// exactly, however many creates race (the store checks and inserts in one
// step). A roll is not a create (the old key is retired as the successor
// comes), so rotation is never refused. And at most n revoked records,
// kept for audit: a create or roll beyond that deletes the account's
// oldest revoked records, and their idempotency entries, so that a loop
// of create and revoke cannot grow the store without bound. A rolled key
// in its grace period is never deleted.
func WithMaxKeysPerAccount(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("keys: WithMaxKeysPerAccount: must be at least 1")
		}
		c.maxKeys = n
		return nil
	}
}

// WithLimiter replaces the in-memory limiter (limit.NewMemory), with a
// shared one when several instances must hold one limit between them
// (the redislimit module).
func WithLimiter(l limit.Limiter) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("keys: WithLimiter: nil limiter")
		}
		c.limiter = l
		return nil
	}
}

// WithLastUsedFlushInterval sets how often last-used times are written to
// the store (default one minute). Verify records them in memory only.
func WithLastUsedFlushInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("keys: WithLastUsedFlushInterval: must be positive")
		}
		c.flushInterval = d
		return nil
	}
}

// WithLogger sets where the Manager reports failures it cannot return (a
// failed background flush). Default: slog.Default(). Nothing the Manager
// logs contains a key or a digest.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("keys: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithEventHook calls hook after every change to a key (package event),
// in the goroutine that made the change: forward to a webhook or an audit
// log, and return quickly.
func WithEventHook(hook func(context.Context, event.Event)) Option {
	return func(c *config) error {
		if hook == nil {
			return errors.New("keys: WithEventHook: nil hook")
		}
		c.onEvent = hook
		return nil
	}
}

// WithObserver reports every verification and operation to o (package
// observe; the keysotel module is the Observer for OpenTelemetry).
func WithObserver(o observe.Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("keys: WithObserver: nil Observer")
		}
		c.observer = o
		return nil
	}
}

// WithRequestLogs configures the request log (package reqlog): how long
// entries are kept, how many one account keeps a day, the buffer, how
// much of the client's address is kept, an Exporter, or none at all. On a
// store that keeps logs (store.LogStore) the log is on with the defaults
// without this option; on another, it is on only with an Exporter.
func WithRequestLogs(cfg reqlog.Config) Option {
	return func(c *config) error {
		switch {
		case cfg.Retention != 0 && (cfg.Retention < time.Hour || cfg.Retention > 400*24*time.Hour):
			return errors.New("keys: WithRequestLogs: Retention is from one hour to 400 days")
		case cfg.PerAccountDay < 0 || cfg.PerAccountDay > 1_000_000_000:
			return errors.New("keys: WithRequestLogs: PerAccountDay is from 1 to 1,000,000,000 (0: the default)")
		case cfg.Buffer < 0 || cfg.Buffer > 1<<24:
			return errors.New("keys: WithRequestLogs: Buffer is from 1 to 16,777,216 entries (0: the default)")
		case cfg.IP > reqlog.IPNone:
			return errors.New("keys: WithRequestLogs: unknown IPMode")
		}
		c.logs = cfg
		return nil
	}
}

// WithEvents configures the event log (package event): how long events
// are kept, and the credits.low threshold. On a store that keeps events
// (store.EventStore) the log is on without this option.
func WithEvents(cfg event.Config) Option {
	return func(c *config) error {
		switch {
		case cfg.Retention != 0 && (cfg.Retention < time.Hour || cfg.Retention > 400*24*time.Hour):
			return errors.New("keys: WithEvents: Retention is from one hour to 400 days")
		case cfg.CreditsLow < 0:
			return errors.New("keys: WithEvents: CreditsLow is not negative")
		}
		c.events = cfg
		return nil
	}
}

// WithWebhooks configures webhook delivery (package webhook): its retry
// schedule, when a failing endpoint is disabled, timeouts, how many
// endpoints an account may hold, and which addresses may be reached. On
// a store that keeps events, webhooks are on with the defaults without
// this option: https only, to public addresses only.
func WithWebhooks(cfg webhook.Config) Option {
	return func(c *config) error {
		if _, err := cfg.WithDefaults(); err != nil {
			return fmt.Errorf("keys: WithWebhooks: %w", err)
		}
		c.webhooks = cfg
		return nil
	}
}

// WithPlans makes every account's limits its plan's, from plans, which
// returns an account's plan (the zero Plan, for no limits). Answers are
// kept for ttl (at least a second), and Manager.InvalidatePlan drops one
// at once, so a plan change reaches this instance within ttl, or at once
// on the instance told. When an answer is due again, one request asks
// plans while the others go on with the answer they have. An error from
// plans fails the requests that need the plan with ErrUnavailable,
// unless an earlier answer is at hand; so does a plan that cannot be
// applied (a negative limit, a malformed pattern): a host's mistake must
// not lift a customer's limits.
func WithPlans(plans func(ctx context.Context, accountID string) (Plan, error), ttl time.Duration) Option {
	return func(c *config) error {
		if plans == nil {
			return errors.New("keys: WithPlans: nil plans")
		}
		if ttl < time.Second {
			return fmt.Errorf("keys: WithPlans: ttl %v is under a second", ttl)
		}
		c.plans, c.planTTL = plans, ttl
		return nil
	}
}

// WithPrices sets what a successful request to each API costs in money,
// for the usage summary's estimated_cost: prices maps an API name (as
// OnAPI gives it; "*" for any other API) to a decimal amount of currency
// (an ISO 4217 code) with at most 6 decimals, e.g. "0.002". Failed and
// rate-limited requests cost nothing. Without prices, every request costs
// nothing: the amount is 0 in currency "USD".
func WithPrices(currency string, prices map[string]string) Option {
	return func(c *config) error {
		if len(currency) != 3 || strings.ToUpper(currency) != currency {
			return fmt.Errorf("keys: WithPrices: currency %q is not an ISO 4217 code", truncate(currency, 10))
		}
		c.currency = currency
		c.prices = make(map[string]int64, len(prices))
		for api, p := range prices {
			micros, err := parseMicros(p)
			if err != nil {
				return fmt.Errorf("keys: WithPrices: the price of %q: %w", truncate(api, 40), err)
			}
			c.prices[api] = micros
		}
		return nil
	}
}

// WithCreditCosts sets what a request to each API costs in credits, for
// keys that have a budget (package credits): costs maps an API name (as
// OnAPI gives it, the names usage counts by and WithPrices prices) to a
// cost from 0 to credits.MaxCost. An API not named costs 1; 0 makes an
// API free, even for a key whose credits are spent. CreditCost overrides
// it for one request. The key endpoints cost nothing (OutsidePlan).
func WithCreditCosts(costs map[string]int64) Option {
	return func(c *config) error {
		for api, n := range costs {
			if n < 0 || n > credits.MaxCost {
				return fmt.Errorf("keys: WithCreditCosts: %q costs %d, outside 0 to %d", truncate(api, 40), n, credits.MaxCost)
			}
		}
		c.costs = maps.Clone(costs)
		return nil
	}
}

// VerifyOption adds a check to Verify. Options are plain values, not
// closures, so that passing them allocates nothing.
type VerifyOption struct {
	ip           netip.Addr
	perms        []string
	env          Environment
	method, path string
	api          string
	outsidePlan  bool
	cost         int64
	hasCost      bool
	inFlight     *func()
}

// FromIP gives the client's address, checked against the key's allowed_ips.
// A key with an allowlist fails with ErrIPNotAllowed when no address is
// given: a restriction the caller forgot to feed is not lifted.
func FromIP(ip netip.Addr) VerifyOption { return VerifyOption{ip: ip} }

// Require fails verification with ErrPermissionDenied unless the key holds
// every one of perms. The key's rate limit is not spent on a refusal.
func Require(perms ...string) VerifyOption { return VerifyOption{perms: perms} }

// InEnvironment fails verification with ErrWrongEnvironment unless the key
// belongs to env.
func InEnvironment(env Environment) VerifyOption { return VerifyOption{env: env} }

// OnEndpoint gives the request's method and path, which the plan's
// endpoint limits (Plan.Endpoints) are matched against.
func OnEndpoint(method, path string) VerifyOption { return VerifyOption{method: method, path: path} }

// OnAPI names the API the request is for: its usage is counted under
// that name (CountUsage), WithPrices prices it, and WithCreditCosts says
// what it costs in credits. The name should come from a small set (a
// route, never a path with IDs in it). The HTTP middleware names a
// request by its ServeMux pattern, the gRPC interceptors by the full
// method name.
func OnAPI(name string) VerifyOption { return VerifyOption{api: name} }

// OutsidePlan leaves the request out of the account's plan limits (the
// key's own rate_limit still applies). The key endpoints use it: an
// account that spent its quota, or whose leaked key an attacker is
// flooding, can still list and revoke its keys and read its usage. They
// have their own per-account limit (httpadapter.WithManagementLimit).
func OutsidePlan() VerifyOption { return VerifyOption{outsidePlan: true} }

// CreditCost is what the request costs in credits, for a key that has a
// budget: 0 to credits.MaxCost, in place of the cost WithCreditCosts gives
// its API (by default 1), for a cost only the request knows (a batch of n
// items, say). CreditCost(0) verifies without spending, even a spent
// budget. A cost outside the range fails Verify (the host's mistake, not
// the key's). The key endpoints spend nothing (OutsidePlan).
func CreditCost(n int64) VerifyOption { return VerifyOption{cost: n, hasCost: true} }

// InFlight counts the request in flight against its account's plan's
// Concurrent limit (as Acquire does) before its limits and credits, so
// that a request refused for concurrency spends neither, and sets
// *release to the function that gives its place back: call it once, when
// the request ends (defer it). When Verify succeeds, *release is set (to
// a function doing nothing when no plan limits the account's requests in
// flight); on an error, nothing is held. The HTTP middleware and the gRPC
// interceptors pass it.
func InFlight(release *func()) VerifyOption { return VerifyOption{inFlight: release} }

// IssueOption applies to the calls that issue a secret: Create and Roll.
type IssueOption struct {
	idempotencyKey *string
}

// IdempotencyKey makes a Create or Roll idempotent: a retry by the same
// caller with the same key and the same request returns the first result,
// secret included (with Replayed set), for 24 hours, and a different
// request is ErrIdempotencyConflict. The key is 10 to 255 letters, digits,
// '-' and '_'; anything else (the empty string included) is a
// *ValidationError.
func IdempotencyKey(key string) IssueOption { return IssueOption{idempotencyKey: &key} }

// issueOptions folds opts; the last IdempotencyKey wins.
func issueOptions(opts []IssueOption) (idempotencyKey string, idempotent bool, err error) {
	for _, o := range opts {
		if o.idempotencyKey != nil {
			idempotencyKey, idempotent = *o.idempotencyKey, true
		}
	}
	if idempotent {
		err = validateIdempotencyKey(idempotencyKey)
	}
	return idempotencyKey, idempotent, err
}
