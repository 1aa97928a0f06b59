package httpadapter

import (
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/txcloud/keys"
)

// Option configures New and Middleware. Each says which it applies to.
type Option func(*config)

// Authenticator decides who a request comes from. Returning an error
// refuses the request: keys.ErrInvalidKey (or any error this package does
// not know) as 401, keys.ErrPermissionDenied as 403, keys.ErrUnavailable as
// 503.
type Authenticator func(*http.Request) (keys.Principal, error)

type config struct {
	authenticate    Authenticator // nil: the Manager's own keys
	trusted         []netip.Prefix
	forwardedHeader bool
	require         []keys.VerifyOption
	requestID       func(*http.Request) string
	logger          *slog.Logger
	maxBodyBytes    int64
}

func newConfig(opts []Option) *config {
	c := &config{requestID: randomRequestID, logger: slog.Default(), maxBodyBytes: DefaultMaxBodyBytes}
	for _, o := range opts {
		o(c)
	}
	return c
}

// DefaultMaxBodyBytes is the largest request body New accepts.
const DefaultMaxBodyBytes = 64 << 10

// WithAuthenticator (New) replaces key authentication of the create
// endpoint's caller, for hosts whose dashboard users sign in another way.
// The principal it returns must still hold developers:write, and can grant
// only what it holds.
func WithAuthenticator(a Authenticator) Option {
	return func(c *config) { c.authenticate = a }
}

// WithTrustedProxies (New, Middleware) names the reverse proxies whose
// X-Forwarded-For header is believed. The client IP is the right-most
// address in the header that is not a trusted proxy; without this option,
// or when the direct peer is not a trusted proxy, it is the peer
// (RemoteAddr) and the header is ignored, so a client cannot spoof it.
func WithTrustedProxies(proxies ...netip.Prefix) Option {
	return func(c *config) {
		for _, p := range proxies {
			c.trusted = append(c.trusted, p.Masked())
		}
	}
}

// WithForwardedHeader (New, Middleware) reads the RFC 7239 Forwarded
// header instead of X-Forwarded-For from trusted proxies. Only one of the
// two is ever read, so a client cannot smuggle an address in the other.
func WithForwardedHeader() Option {
	return func(c *config) { c.forwardedHeader = true }
}

// RequirePermissions (Middleware) refuses, with 403, keys lacking any of
// perms.
func RequirePermissions(perms ...string) Option {
	return func(c *config) { c.require = append(c.require, keys.Require(perms...)) }
}

// RequireEnvironment (Middleware) refuses, with 401, keys of another
// environment.
func RequireEnvironment(env keys.Environment) Option {
	return func(c *config) { c.require = append(c.require, keys.InEnvironment(env)) }
}

// WithRequestID (New, Middleware) sets how error responses get their
// request_id, to reuse the host's own request IDs. Default: a random
// "req_" ID.
func WithRequestID(f func(*http.Request) string) Option {
	return func(c *config) { c.requestID = f }
}

// WithLogger (New, Middleware) sets where server faults are logged.
// Default: slog.Default(). No key is ever logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithMaxBodyBytes (New) bounds request bodies (default 64 KiB).
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) { c.maxBodyBytes = n }
}

func randomRequestID(*http.Request) string { return "req_" + rand.Text() }
