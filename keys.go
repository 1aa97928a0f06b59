package keys

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Environment is the environment a key works in.
type Environment string

// The two environments. Keys start with txc_live_ or txc_test_ accordingly.
const (
	Live Environment = "live"
	Test Environment = "test"
)

// APIKeyCreate is the body of POST /developers/keys (schema APIKeyCreate).
type APIKeyCreate struct {
	Name        string      `json:"name"`
	Environment Environment `json:"environment"`
	// Permissions are resource:action strings from the Manager's vocabulary.
	// Empty: the key holds none (it authenticates, and may do nothing that
	// needs a permission).
	Permissions []string `json:"permissions,omitempty"`
	// AllowedIPs are addresses or CIDR prefixes; empty: any address.
	AllowedIPs []string `json:"allowed_ips,omitempty"`
	// RateLimit is requests per minute; nil: the Manager's default.
	RateLimit *int       `json:"rate_limit,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// AccountID is the account the key belongs to. It is not part of the
	// JSON body: over HTTP it is the caller's account; from Go, set it.
	AccountID string `json:"-"`
}

// APIKey is a key as the API shows it (schema APIKey), without its secret.
// Besides the spec's fields it echoes allowed_ips (always an array, empty
// meaning any address), rate_limit and expires_at (omitted when unset).
type APIKey struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Prefix      string      `json:"prefix"`
	Environment Environment `json:"environment"`
	Permissions []string    `json:"permissions"`
	AllowedIPs  []string    `json:"allowed_ips"`
	RateLimit   *int        `json:"rate_limit,omitempty"`
	ExpiresAt   *time.Time  `json:"expires_at,omitempty"`
	LastUsed    *time.Time  `json:"last_used,omitempty"`
	CreatedAt   time.Time   `json:"created_at"`
	// RevokedAt is when the key was (or, after a roll, will be) revoked.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// APIKeyCreated is the 201 response of a create: the key plus its secret,
// shown this once.
type APIKeyCreated struct {
	APIKey
	Key Secret `json:"key"`
	// Replayed is true when an idempotent retry returned the stored result
	// of an earlier request instead of creating a key.
	Replayed bool `json:"-"`
}

// Principal is whoever acts on keys: an authenticated API key, or a user
// that the host authenticated another way.
type Principal struct {
	AccountID string
	// Subject identifies the credential that acted (the key ID for an API
	// key, a user ID for a dashboard session). Idempotency keys are scoped
	// to it.
	Subject string
	// Environment is the environment the principal acts in; "" means both
	// (a dashboard user). A test principal cannot touch live keys.
	Environment Environment
	Permissions []string
}

// Has reports whether the principal holds perm.
func (p Principal) Has(perm string) bool { return slices.Contains(p.Permissions, perm) }

// PrincipalFor is the principal an authenticated key acts as. Its
// Permissions are a copy: r may be a store's shared record.
func PrincipalFor(r *Record) Principal {
	return Principal{AccountID: r.AccountID, Subject: r.ID, Environment: r.Environment, Permissions: slices.Clone(r.Permissions)}
}

// mayGrant is the no-escalation rule: a principal grants only permissions it
// holds, and a test principal creates only test keys. s is already
// validated.
func (p Principal) mayGrant(s keySpec) error {
	if p.Environment == Test && s.environment == Live {
		return &PermissionError{Param: "environment", Message: "a test key cannot create or change live keys"}
	}
	return p.mayGrantPermissions(s.permissions)
}

func (p Principal) mayGrantPermissions(perms []string) error {
	for i, perm := range perms {
		if !p.Has(perm) {
			return &PermissionError{Param: fmt.Sprintf("permissions[%d]", i), Message: fmt.Sprintf("cannot grant %q, which the caller does not hold", perm)}
		}
	}
	return nil
}

// Manager issues and verifies keys on a Store. It is safe for concurrent
// use. Close it to flush pending last-used times and stop its goroutine.
type Manager struct {
	store            Store
	now              func() time.Time
	format           keyFormat
	hash             hasher
	vocabulary       map[string]struct{}
	vocabularyList   []string
	maxAllowedIPs    int
	defaultRateLimit int
	limiter          Limiter
	onEvent          func(context.Context, Event)
	idem             idempotency
	usage            *usageRecorder
	logger           *slog.Logger
	closed           atomic.Bool
}

// Option configures a Manager.
type Option func(*config) error

type config struct {
	now              func() time.Time
	brand            string
	pepper           []byte
	idemSecret       []byte
	vocabulary       []string
	maxAllowedIPs    int
	defaultRateLimit int
	limiter          Limiter
	flushInterval    time.Duration
	logger           *slog.Logger
	onEvent          func(context.Context, Event)
}

// WithClock replaces time.Now, for tests.
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
	return func(c *config) error { c.brand = brand; return nil }
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

// WithPermissionVocabulary replaces DefaultPermissions: the permissions a
// key may hold, each "resource:action".
func WithPermissionVocabulary(perms ...string) Option {
	return func(c *config) error {
		for _, p := range perms {
			if !validPermissionName(p) {
				return fmt.Errorf("keys: WithPermissionVocabulary: %q is not resource:action", p)
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

// WithLimiter replaces the in-memory rate limiter, with a shared one when
// several instances must hold one limit between them.
func WithLimiter(l Limiter) Option {
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

// validPermissionName reports whether p is resource:action: two non-empty
// parts of lowercase letters, digits, '_', '.' and '-', joined by one colon.
func validPermissionName(p string) bool {
	resource, action, ok := strings.Cut(p, ":")
	return ok && permissionPart(resource) && permissionPart(action)
}

func permissionPart(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return s != ""
}

// New returns a Manager on store. Close it when done.
func New(store Store, opts ...Option) (*Manager, error) {
	if store == nil {
		return nil, errors.New("keys: New: nil store")
	}
	c := config{
		now:           time.Now,
		brand:         "txc",
		vocabulary:    DefaultPermissions,
		maxAllowedIPs: DefaultMaxAllowedIPs,
		flushInterval: time.Minute,
	}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	format, err := newKeyFormat(c.brand)
	if err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.limiter == nil {
		c.limiter = NewMemoryLimiter()
	}
	idemSecret := c.idemSecret
	if idemSecret == nil && c.pepper != nil {
		if idemSecret, err = deriveKey(c.pepper, "txcloud-keys idempotency secret v1", nil); err != nil {
			return nil, err
		}
	}
	if idemSecret == nil {
		idemSecret = make([]byte, 32)
		if _, err := rand.Read(idemSecret); err != nil {
			return nil, fmt.Errorf("keys: reading randomness: %w", err)
		}
	}
	m := &Manager{
		store:            store,
		now:              c.now,
		format:           format,
		hash:             newHasher(c.pepper),
		vocabulary:       make(map[string]struct{}, len(c.vocabulary)),
		vocabularyList:   slices.Clone(c.vocabulary),
		maxAllowedIPs:    c.maxAllowedIPs,
		defaultRateLimit: c.defaultRateLimit,
		limiter:          c.limiter,
		onEvent:          c.onEvent,
		idem:             idempotency{secret: idemSecret},
		logger:           c.logger,
	}
	for _, p := range c.vocabulary {
		m.vocabulary[p] = struct{}{}
	}
	m.usage = startUsageRecorder(store, c.flushInterval, c.logger)
	return m, nil
}

// Permissions returns the vocabulary keys' permissions come from.
func (m *Manager) Permissions() []string { return slices.Clone(m.vocabularyList) }

// Close stops the Manager's background flusher and writes pending last-used
// times to the store, within ctx's deadline. It does not close the Store,
// which the caller opened and closes. Close is idempotent; after it, Create
// and Verify return ErrClosed.
func (m *Manager) Close(ctx context.Context) error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	return m.usage.close(ctx)
}

// Create issues a key as asked, with no authorization check and no
// idempotency: a trusted Go caller's entry point. It validates req (a
// *ValidationError on failure, nothing stored), stores only the key's
// digest, and returns the key in plain text this once.
func (m *Manager) Create(ctx context.Context, req APIKeyCreate) (*APIKeyCreated, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	// One clock read serves validation and the key: the clock can cost as
	// much as a map lookup on virtual machines.
	now := m.now()
	spec, err := m.validateCreate(&req, now)
	if err != nil {
		return nil, err
	}
	created, err := m.issue(ctx, spec, req.AccountID, now)
	if err == nil {
		m.emit(ctx, EventKeyCreated, created.APIKey, "", "")
	}
	return created, err
}

// CreateAs issues a key on behalf of p, as the HTTP endpoint does: the key
// belongs to p's account; p may grant only permissions it holds, and a test
// principal only test keys (a *PermissionError otherwise). When
// idempotencyKey is not empty, a retry by the same principal with the same
// key and the same request returns the first result (with Replayed set)
// for IdempotencyTTL, and a different request is ErrIdempotencyConflict.
func (m *Manager) CreateAs(ctx context.Context, p Principal, req APIKeyCreate, idempotencyKey string) (*APIKeyCreated, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if idempotencyKey != "" {
		if err := ValidateIdempotencyKey(idempotencyKey); err != nil {
			return nil, err
		}
	}
	now := m.now()
	req.AccountID = p.AccountID
	spec, err := m.validateCreate(&req, now)
	if err != nil {
		return nil, err
	}
	if err := p.mayGrant(spec); err != nil {
		return nil, err
	}
	var created *APIKeyCreated
	if idempotencyKey == "" {
		created, err = m.issue(ctx, spec, p.AccountID, now)
	} else {
		created, err = m.createIdempotent(ctx, p, spec, idempotencyKey, now)
	}
	if err == nil && !created.Replayed {
		m.emit(ctx, EventKeyCreated, created.APIKey, "", p.Subject)
	}
	return created, err
}

// issue creates and stores a key without idempotency.
func (m *Manager) issue(ctx context.Context, s keySpec, accountID string, now time.Time) (*APIKeyCreated, error) {
	created, rec, err := m.newKey(s, accountID, now)
	if err != nil {
		return nil, err
	}
	if err := m.store.Create(ctx, rec, nil); err != nil {
		return nil, fmt.Errorf("%w: storing key: %w", ErrUnavailable, err)
	}
	return created, nil
}

// newKey generates a secret and the record that stores its digest.
func (m *Manager) newKey(s keySpec, accountID string, now time.Time) (*APIKeyCreated, *Record, error) {
	secret, id, err := m.format.generate(s.environment, now)
	if err != nil {
		return nil, nil, err
	}
	var buf [maxKeyLen]byte
	n := copy(buf[:], secret)
	rec := &Record{
		ID:          id,
		AccountID:   accountID,
		Name:        s.name,
		Prefix:      m.format.displayPrefix(secret),
		Environment: s.environment,
		Permissions: s.permissions,
		AllowedIPs:  s.allowedIPs,
		RateLimit:   s.rateLimit,
		Hash:        m.hash.sum(buf[:n]),
		CreatedAt:   storedTime(now),
		ExpiresAt:   s.expiresAt,
		Version:     1,
	}
	created := &APIKeyCreated{APIKey: rec.APIKey(), Key: secret}
	return created, rec, nil
}
