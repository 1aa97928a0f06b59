package keys

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/internal/marks"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/webhook"
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
	// OwnerID is the host's identifier of whoever the key is for: 1 to
	// 128 printable ASCII characters, no spaces; "": none.
	OwnerID string `json:"owner_id,omitempty"`
	// Metadata is a JSON object of the host's (at most maxMetadataBytes
	// once compacted, nested at most maxMetadataDepth deep, no name twice
	// in one object), returned by Verify, get and list.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Credits gives the key a budget of uses (package credits); nil:
	// none. RefillsAt is ignored.
	Credits *credits.Budget `json:"credits,omitempty"`
	// Disabled creates the key disabled (the API's "enabled": false): by
	// the host for the Manager's own Create, by the account for a Scoped
	// one.
	Disabled bool `json:"-"`
	// AccountID is the account the key belongs to. It is not part of the
	// JSON body. The Manager's own Create requires it; a Scoped Create
	// takes the principal's account, and refuses any other.
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
	RevokedAt *time.Time      `json:"revoked_at,omitempty"`
	OwnerID   string          `json:"owner_id,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	// Enabled is false for a disabled key, which Verify refuses until it
	// is enabled again.
	Enabled bool `json:"enabled"`
	// Credits is the key's budget as it stands; nil: the key has none.
	Credits *credits.Budget `json:"credits,omitempty"`
}

// APIKeyCreated is the 201 response of a create or a roll: the key plus
// its secret, shown this once. string(c.Key) is the key.
type APIKeyCreated struct {
	APIKey
	Key Secret `json:"key"`
	// Replayed is true when an idempotent retry returned the stored result
	// of an earlier request instead of creating a key.
	Replayed bool `json:"-"`
	// events are the ones stored with the key, handed on once stored.
	events []event.Event
}

// LogValue logs the created key without its secret. Without it, a JSON log
// handler would encode the struct with encoding/json, which writes the key:
// Secret's own LogValue applies only when the Secret is the logged value
// itself, not a field of one.
func (c APIKeyCreated) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.String("prefix", c.Prefix),
		slog.String("environment", string(c.Environment)), slog.String("key", "[key redacted]"))
}

// apiKeyOf is rec as the API shows it, without its credits (which the
// store keeps apart: see Manager.shown).
func apiKeyOf(r *store.Record) APIKey { return apiKeyWith(r, nil) }

// apiKeyWith is apiKeyOf, with the record's allowlist as text already
// (validateAllowedIPs' own, a slice of the caller's), if not nil.
func apiKeyWith(r *store.Record, ipText []string) APIKey {
	k := APIKey{
		ID:          r.ID,
		Name:        r.Name,
		Prefix:      r.Prefix,
		Environment: Environment(r.Environment),
		Permissions: slices.Clone(r.Permissions),
		AllowedIPs:  ipText,
		CreatedAt:   r.CreatedAt,
		OwnerID:     r.OwnerID,
		Metadata:    r.Metadata,
		Enabled:     r.Disabled == store.NotDisabled,
	}
	if k.Permissions == nil {
		k.Permissions = []string{}
	}
	if ipText == nil {
		k.AllowedIPs = make([]string, len(r.AllowedIPs))
		for i, p := range r.AllowedIPs {
			k.AllowedIPs[i] = formatPrefix(p)
		}
	}
	if r.RateLimit > 0 {
		n := r.RateLimit
		k.RateLimit = &n
	}
	if !r.ExpiresAt.IsZero() {
		t := r.ExpiresAt
		k.ExpiresAt = &t
	}
	if !r.LastUsed.IsZero() {
		t := r.LastUsed
		k.LastUsed = &t
	}
	if !r.RevokedAt.IsZero() {
		t := r.RevokedAt
		k.RevokedAt = &t
	}
	return k
}

// Principal is whoever acts on keys through Manager.As: an authenticated
// API key (Verified.Principal), or a user that the host authenticated
// another way.
type Principal struct {
	AccountID string
	// Subject identifies the credential that acted (the key ID for an API
	// key, a user ID for a dashboard session). Idempotency keys are scoped
	// to it, and events name it as their Actor.
	Subject string
	// Environment is the environment the principal acts in; "" means both
	// (a dashboard user). A test principal cannot touch live keys.
	Environment Environment
	Permissions []string
}

// Has reports whether the principal holds perm.
func (p Principal) Has(perm string) bool { return slices.Contains(p.Permissions, perm) }

// Manager issues, verifies and manages keys on a Store. It is safe for
// concurrent use. Close it to flush pending last-used times and stop its
// goroutine.
//
// Its own methods (Create, Get, List, Update, Revoke, Roll) are for a
// trusted Go caller: they see every account and check no permission.
// As(p) gives the same methods acting for a principal, with the rules of
// the HTTP endpoints.
type Manager struct {
	store            store.Store
	now              func() time.Time
	format           keyFormat
	digest           digester
	vocabulary       map[string]struct{}
	vocabularyList   []string
	maxAllowedIPs    int
	defaultRateLimit int
	limiter          limit.Limiter
	marks            marks.Set // Deduplicate's memory, on a store that is no store.Marker
	onEvent          func(context.Context, event.Event)
	idem             idempotency
	states           *states          // what the Manager keeps per key it has verified
	lastUsed         *lastUsed        // last-used times noted, not flushed yet
	meter            *meter           // nil: the store keeps no usage
	rlog             *logBook         // the request log; nil: none kept or exported
	obs              observe.Observer // nil: none
	epoch            time.Time        // when New ran: Verify's timer reads the monotonic clock against it
	logger           *slog.Logger
	maxKeys          int
	maxLifetime      time.Duration
	foreign          []string          // WithForeignPrefixes
	plans            *plans            // WithPlans; nil: none
	credits          store.CreditStore // the store's, or nil: it keeps no credits
	currency         string
	prices           map[string]int64 // WithPrices
	costs            map[string]int64 // WithCreditCosts
	background       *background
	closed           atomic.Bool

	events         store.EventStore // the store's, or nil: no event log, no webhooks
	eventRetention time.Duration
	eventsPruned   atomic.Int64 // when events were last pruned (Unix ns)
	creditsLow     int64
	webhooks       webhook.Config // with its defaults
	hooks          *deliverer     // nil: this instance delivers nothing
	seen           observations   // crossings and quotas, to become events
	ephemeral      bool           // the sealing secret is random, this process's alone
	warnEphemeral  sync.Once
}

// New returns a Manager on st (memstore.New(), or a shared store such as
// the pgstore module's). Close it when done; the store is the caller's to
// close.
func New(st store.Store, opts ...Option) (*Manager, error) {
	if st == nil {
		return nil, errors.New("keys: New: nil store")
	}
	c := config{
		now:           time.Now,
		brand:         "txc",
		vocabulary:    DefaultVocabulary(),
		maxAllowedIPs: defaultMaxAllowedIPs,
		flushInterval: time.Minute,
		logger:        slog.Default(),
		maxKeys:       10_000,
	}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("keys: New: nil option")
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	format, err := newKeyFormat(c.brand)
	if err != nil {
		return nil, err
	}
	if c.limiter == nil {
		c.limiter = limit.NewMemory()
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
		store:            st,
		now:              c.now,
		format:           format,
		digest:           newDigester(c.pepper),
		vocabulary:       make(map[string]struct{}, len(c.vocabulary)),
		vocabularyList:   slices.Clone(c.vocabulary),
		maxAllowedIPs:    c.maxAllowedIPs,
		defaultRateLimit: c.defaultRateLimit,
		limiter:          c.limiter,
		onEvent:          c.onEvent,
		idem:             idempotency{secret: idemSecret},
		logger:           c.logger,
		maxKeys:          c.maxKeys,
		maxLifetime:      c.maxLifetime,
		foreign:          c.foreign,
		currency:         cmp.Or(c.currency, "USD"),
		prices:           c.prices,
		costs:            c.costs,
		obs:              c.observer,
		epoch:            time.Now(),
	}
	m.credits, _ = store.Capability[store.CreditStore](st)
	if c.plans != nil {
		m.plans = &plans{fetch: c.plans, ttl: int64(c.planTTL)}
		if m.credits != nil {
			m.plans.budget = m.hasAccountBudget
		}
	}
	for _, p := range c.foreign {
		if strings.HasPrefix(p, format.brand) || strings.HasPrefix(format.brand, p) {
			return nil, fmt.Errorf("keys: WithForeignPrefixes: %q overlaps this Manager's own prefix %q", p, format.brand)
		}
	}
	for _, p := range c.vocabulary {
		m.vocabulary[p] = struct{}{}
	}
	m.states = newStates()
	m.lastUsed = &lastUsed{}
	if us, ok := store.Capability[store.UsageStore](st); ok {
		m.meter = &meter{store: us, maxPending: maxPendingRows, batchRows: maxBatchRows}
	}
	m.rlog = newLogBook(st, c.logs, append([]string{format.brand}, c.foreign...))
	if m.webhooks, err = c.webhooks.WithDefaults(); err != nil {
		return nil, fmt.Errorf("keys: WithWebhooks: %w", err)
	}
	m.eventRetention, m.creditsLow = cmp.Or(c.events.Retention, defaultEventRetention), c.events.CreditsLow
	m.seen = observations{crossings: make(chan crossing, maxObserved), quota: map[string]quotaSeen{}}
	if m.events, _ = store.Capability[store.EventStore](st); m.events != nil && !c.webhooks.Disabled {
		m.ephemeral = c.pepper == nil && c.idemSecret == nil
		m.hooks = newDeliverer(m, m.webhooks)
		go m.hooks.run()
	}
	m.startBackground(c.flushInterval)
	return m, nil
}

// Vocabulary returns the permissions a key of this Manager may hold.
func (m *Manager) Vocabulary() []string { return slices.Clone(m.vocabularyList) }

// Limiter returns the limiter the Manager counts with (WithLimiter's, or
// its in-memory one), for limits of the host's that must hold where the
// keys' do: the HTTP adapter counts its management limit in it.
func (m *Manager) Limiter() limit.Limiter { return m.limiter }

// Close stops the Manager's background work and writes pending last-used
// times and usage counts to the store, within ctx's deadline. It does not
// close the Store, which the caller opened and closes. Close is
// idempotent; after it, every method returns ErrClosed.
func (m *Manager) Close(ctx context.Context) error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	if m.hooks != nil {
		err = m.hooks.close(ctx)
	}
	return errors.Join(err, m.background.stop(ctx, m))
}

// Format prints the Manager without its secrets (the HMAC pads derived from
// the pepper, the idempotency secret), which fmt would otherwise print by
// reflection.
func (m *Manager) Format(s fmt.State, _ rune) {
	fmt.Fprintf(s, "keys.Manager{prefix: %s, peppered: %t, secrets: [redacted]}", m.format.live, m.digest.peppered)
}

// LogValue keeps the Manager's secrets out of log/slog output.
func (m *Manager) LogValue() slog.Value {
	return slog.GroupValue(slog.String("prefix", m.format.live), slog.Bool("peppered", m.digest.peppered))
}

// caller is who makes a call: the Manager's trusted Go caller, or a
// principal (through Scoped). A zero caller is a principal with no
// account, which may do nothing: trust is never the default.
type caller struct {
	p       Principal
	trusted bool
}

var trusted = caller{trusted: true}

// account resolves the account a create or list is for: a trusted caller
// names it, a principal may only name its own.
func (c caller) account(asked string) (string, error) {
	switch {
	case c.trusted && asked == "":
		return "", missing("account_id")
	case c.trusted:
		return asked, nil
	case asked != "" && asked != c.p.AccountID:
		return "", &PermissionError{Param: "account_id", Message: "a principal acts only on its own account"}
	}
	return c.p.AccountID, nil
}

// sees reports whether the caller may see a record: a principal sees only
// its account's keys, and a test principal only test keys.
func (c caller) sees(r *store.Record) bool {
	return c.trusted || r.AccountID == c.p.AccountID && (c.p.Environment == "" || r.Environment == string(c.p.Environment))
}

// mayGrant is the no-escalation rule: a principal grants only permissions it
// holds, and a test principal creates only test keys. A trusted caller may
// grant anything in the vocabulary.
func (c caller) mayGrant(env Environment, perms []string) error {
	if c.trusted {
		return nil
	}
	if c.p.Environment == Test && env == Live {
		return &PermissionError{Param: "environment", Message: "a test key cannot create or change live keys"}
	}
	for i, perm := range perms {
		if !c.p.Has(perm) {
			return &PermissionError{Param: fmt.Sprintf("permissions[%d]", i), Message: fmt.Sprintf("cannot grant %q, which the caller does not hold", perm)}
		}
	}
	return nil
}

// valid refuses a principal with no account before it touches anything.
func (c caller) valid() error {
	if !c.trusted && c.p.AccountID == "" {
		return &PermissionError{Message: "the principal has no account"}
	}
	return nil
}

// Scoped is a Manager acting for a principal, as the HTTP endpoints do:
// the Manager's methods, with two rules added. Isolation: it sees and
// changes only the principal's account's keys, and a test principal only
// test keys; any other key is ErrNotFound, exactly as if it did not exist.
// No escalation: it grants only permissions the principal holds, and a
// test principal creates only test keys (a *PermissionError otherwise).
//
// Whether the principal may manage keys at all (developers:read,
// developers:write) is the endpoint's decision, which the HTTP adapter
// makes before calling.
type Scoped struct {
	m *Manager
	c caller
}

// As returns the Manager acting for p. A principal with no AccountID may
// do nothing (every call is a *PermissionError).
func (m *Manager) As(p Principal) Scoped { return Scoped{m: m, c: caller{p: p}} }

// Create issues a key as a trusted caller: req.AccountID names the
// account, and any permission of the vocabulary may be granted. It
// validates req (a *ValidationError on failure, nothing stored), stores
// only the key's digest, and returns the key in plain text this once.
func (m *Manager) Create(ctx context.Context, req APIKeyCreate, opts ...IssueOption) (*APIKeyCreated, error) {
	return m.create(ctx, trusted, req, opts)
}

// Create issues a key in the principal's account, granting only what the
// principal holds. See Manager.Create and IdempotencyKey.
func (s Scoped) Create(ctx context.Context, req APIKeyCreate, opts ...IssueOption) (*APIKeyCreated, error) {
	return s.m.create(ctx, s.c, req, opts)
}

func (m *Manager) create(ctx context.Context, c caller, req APIKeyCreate, opts []IssueOption) (_ *APIKeyCreated, err error) {
	ctx, end := m.op(ctx, observe.Create)
	defer func() { end(err) }()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if err := c.valid(); err != nil {
		return nil, err
	}
	idemKey, idempotent, err := issueOptions(opts)
	if err != nil {
		return nil, err
	}
	// One clock read serves validation and the key: the clock can cost as
	// much as a map lookup on virtual machines.
	now := m.now()
	spec, err := m.validateCreate(&req, now)
	if err != nil {
		return nil, err
	}
	account, err := c.account(req.AccountID)
	if err != nil {
		return nil, err
	}
	if err := c.mayGrant(spec.environment, spec.permissions); err != nil {
		return nil, err
	}
	if spec.rateLimit, spec.maxKeys, err = m.planLimits(ctx, account, spec.rateLimit, req.RateLimit != nil); err != nil {
		return nil, err
	}
	if spec.disabled != store.NotDisabled && !c.trusted {
		spec.disabled = store.DisabledByAccount
	}
	if spec.credits != nil {
		spec.credits.ByHost = c.trusted // the provider's budget is the provider's to change
	}
	var created *APIKeyCreated
	if idempotent {
		created, err = m.createIdempotent(ctx, c, account, spec, idemKey, now)
	} else {
		created, err = m.issue(ctx, c, spec, account, now)
	}
	if err == nil && !created.Replayed {
		m.stored(ctx, created.events)
	}
	return created, err
}

// createdEvents are a new key's events, for its Write.
func (m *Manager) createdEvents(ctx context.Context, c caller, created *APIKeyCreated, account string, now time.Time) []event.Event {
	if !m.listens() {
		return nil
	}
	created.events = []event.Event{keyEvent(ctx, event.KeyCreated, c, &created.APIKey, account, now)}
	return m.eventsFor(created.events)
}

// eventsFor is evs if the store keeps them, nil otherwise (a Write to a
// store without an event log carries none).
func (m *Manager) eventsFor(evs []event.Event) []event.Event {
	if m.events == nil {
		return nil
	}
	return evs
}

// issue creates and stores a key without idempotency.
func (m *Manager) issue(ctx context.Context, c caller, s keySpec, accountID string, now time.Time) (*APIKeyCreated, error) {
	created, rec, err := m.newKey(s, accountID, now)
	if err != nil {
		return nil, err
	}
	evs := m.createdEvents(ctx, c, created, accountID, now)
	switch err := m.store.Write(ctx, store.Write{Insert: rec, Credits: s.budget(rec), MaxActive: s.maxKeys, KeepRevoked: s.maxKeys, Events: evs}); {
	case errors.Is(err, ErrKeyLimit):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: storing key: %w", ErrUnavailable, err)
	}
	return created, nil
}

// newKey generates a secret and the record that stores its digest.
func (m *Manager) newKey(s keySpec, accountID string, now time.Time) (*APIKeyCreated, *store.Record, error) {
	secret, id, err := m.format.generate(s.environment, now)
	if err != nil {
		return nil, nil, err
	}
	var buf [maxKeyLen]byte
	n := copy(buf[:], secret)
	rec := &store.Record{
		ID:          id,
		AccountID:   accountID,
		Name:        s.name,
		Prefix:      m.format.displayPrefix(secret),
		Environment: string(s.environment),
		Permissions: s.permissions,
		AllowedIPs:  s.allowedIPs,
		RateLimit:   s.rateLimit,
		Digest:      m.digest.sum(buf[:n]),
		CreatedAt:   storedTime(now),
		ExpiresAt:   s.expiresAt,
		OwnerID:     s.ownerID,
		Metadata:    s.metadata,
		Disabled:    s.disabled,
		Version:     1,
	}
	created := &APIKeyCreated{APIKey: apiKeyWith(rec, s.ipText), Key: secret}
	if s.credits != nil {
		rec.CreditsID = id
		created.Credits = shownBudget(*s.credits, now)
	}
	return created, rec, nil
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
