package httpadapter

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/reqid"
)

// Option configures an Adapter (New). Every option applies to everything
// the Adapter does: the key endpoints, Middleware, and WriteError.
type Option func(*config) error

// Authenticator decides who a request comes from, in place of an API key.
// Returning an error refuses the request: keys.ErrPermissionDenied as 403,
// keys.ErrUnavailable as 503, anything else as 401.
type Authenticator func(*http.Request) (keys.Principal, error)

type config struct {
	authenticate    Authenticator // nil: the Manager's own keys
	trusted         []netip.Prefix
	forwardedHeader bool
	env             keys.Environment // "": both
	requestID       func(*http.Request) string
	logger          *slog.Logger
	maxBodyBytes    int64
	manageLimit     int // requests per minute per account on the key endpoints
	usageReadLimit  int // the same, on the usage endpoints
	apiName         func(*http.Request) string
}

func newConfig(opts []Option) (*config, error) {
	c := &config{requestID: randomRequestID, logger: slog.Default(), maxBodyBytes: DefaultMaxBodyBytes, manageLimit: DefaultManagementLimit, usageReadLimit: DefaultUsageReadLimit}
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("httpadapter: option %d is nil", i)
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// DefaultMaxBodyBytes is the largest request body the endpoints accept
// unless WithMaxBodyBytes says otherwise.
const DefaultMaxBodyBytes = 64 << 10

// WithAuthenticator replaces API-key authentication everywhere: the key
// endpoints and Middleware ask a for the caller instead, for hosts whose
// dashboard users sign in another way. The principal it returns is held to
// the same rules as a key: it needs the route's permissions, and can grant
// only what it holds. Behind Middleware, keys.FromContext gives a Verified
// whose Key describes the principal (ID is its Subject; only AccountID,
// Environment and Permissions besides are set) and whose Principal() is the
// principal itself.
func WithAuthenticator(a Authenticator) Option {
	return func(c *config) error {
		if a == nil {
			return errors.New("httpadapter: WithAuthenticator: nil authenticator")
		}
		c.authenticate = a
		return nil
	}
}

// WithTrustedProxies names the reverse proxies whose X-Forwarded-For header
// is believed. The client IP is the right-most address in the header that
// is not a trusted proxy; without this option, or when the direct peer is
// not a trusted proxy, it is the peer (RemoteAddr) and the header is
// ignored, so a client cannot spoof it.
func WithTrustedProxies(proxies ...netip.Prefix) Option {
	return func(c *config) error {
		for _, p := range proxies {
			if !p.IsValid() {
				return errors.New("httpadapter: WithTrustedProxies: invalid prefix")
			}
			c.trusted = append(c.trusted, p.Masked())
		}
		return nil
	}
}

// WithForwardedHeader reads the RFC 7239 Forwarded header instead of
// X-Forwarded-For from trusted proxies. Only one of the two is ever read,
// so a client cannot smuggle an address in the other.
func WithForwardedHeader() Option {
	return func(c *config) error { c.forwardedHeader = true; return nil }
}

// WithEnvironment accepts only callers of env, on every route: keys of
// another environment are refused with 401, and so are principals from an
// Authenticator whose Environment is not env.
func WithEnvironment(env keys.Environment) Option {
	return func(c *config) error {
		if env != keys.Live && env != keys.Test {
			return fmt.Errorf("httpadapter: WithEnvironment: %q is not live or test", env)
		}
		c.env = env
		return nil
	}
}

// WithRequestID sets the ID each response carries in its Request-Id
// header (every response of Middleware and the key endpoints), which the
// error envelope repeats as request_id and the request log keeps (as
// given, cut to reqlog.MaxRequestIDLen bytes), to reuse the host's own
// request IDs; the ID should start with "req_", as the envelope's schema
// says, and be unique: a customer reading an ID seen twice gets the
// newest entry. Default: "req_" and 130 random bits.
func WithRequestID(f func(*http.Request) string) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("httpadapter: WithRequestID: nil function")
		}
		c.requestID = f
		return nil
	}
}

// WithLogger sets where server faults (5xx) are logged, with their request
// ID. Default: slog.Default(). No key is ever logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("httpadapter: WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithMaxBodyBytes bounds request bodies (default DefaultMaxBodyBytes);
// larger ones are a 413.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("httpadapter: WithMaxBodyBytes: must be at least 1")
		}
		c.maxBodyBytes = n
		return nil
	}
}

// DefaultManagementLimit is how many requests an account may make to the
// key endpoints a minute, all of its keys together, unless
// WithManagementLimit says otherwise: 60,000 (1,000 a second), more than
// scripted provisioning needs, and a bound on how fast one account can
// fill the store.
const DefaultManagementLimit = 60_000

// WithManagementLimit sets how many requests an account may make to the
// key endpoints a minute, all of its keys and principals together
// (GCRA, as keys' own rate limits). Over it the endpoints answer 429
// (limit "management"). It is counted in the Manager's limiter
// (keys.WithLimiter), so with redislimit it holds across instances.
func WithManagementLimit(perMinute int) Option {
	return func(c *config) error {
		if perMinute < 1 || perMinute > 10_000_000 {
			return errors.New("httpadapter: WithManagementLimit: from 1 to 10,000,000 a minute")
		}
		c.manageLimit = perMinute
		return nil
	}
}

// DefaultUsageReadLimit is how many usage reads (GET /developers/usage and
// a key's series) an account may make a minute unless WithUsageReadLimit
// says otherwise: 300, five a second, more than a dashboard needs. A read
// can be a large answer (a day of minutes is 1,440 buckets).
const DefaultUsageReadLimit = 300

// WithUsageReadLimit sets how many usage reads an account may make a
// minute, all of its keys together, within the management limit. Over it
// they answer 429 (limit "management").
func WithUsageReadLimit(perMinute int) Option {
	return func(c *config) error {
		if perMinute < 1 || perMinute > 10_000_000 {
			return errors.New("httpadapter: WithUsageReadLimit: from 1 to 10,000,000 a minute")
		}
		c.usageReadLimit = perMinute
		return nil
	}
}

// usageReads is the group of the usage endpoints in the management limit.
const usageReads = "usage"

// WithAPIName names the API a request belongs to (keys.OnAPI), for usage
// (by_api), prices (keys.WithPrices) and credit costs
// (keys.WithCreditCosts): TXCloud groups its routes into APIs such as
// "identity" and "fraud". The default is the pattern of http.ServeMux's route
// (Request.Pattern, "GET /v1/ping"), or "other" when the middleware runs
// outside a ServeMux route. The name should come from a small set (a
// route, never a path with IDs in it): each key's counters are per name.
func WithAPIName(name func(*http.Request) string) Option {
	return func(c *config) error {
		if name == nil {
			return errors.New("httpadapter: WithAPIName: nil function")
		}
		c.apiName = name
		return nil
	}
}

// apiOf is the request's API name.
func (c *config) apiOf(r *http.Request) string {
	if c.apiName != nil {
		if name := c.apiName(r); name != "" {
			return name
		}
	}
	if r.Pattern != "" {
		return r.Pattern
	}
	return "other"
}

func randomRequestID(*http.Request) string { return reqid.New() }
