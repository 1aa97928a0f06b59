package keys

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
)

// The lifecycle: Get, List, Update, Revoke and Roll, each on the Manager
// (a trusted caller) and on Scoped (a principal), over one implementation
// that takes the caller.

// Patch is one field of an update: the zero Patch leaves the field alone,
// Clear() clears an optional field, Change(v) sets it.
type Patch[T any] struct {
	Set   bool
	Null  bool
	Value T
}

// Change returns a Patch that sets a field to v.
func Change[T any](v T) Patch[T] { return Patch[T]{Set: true, Value: v} }

// Clear returns a Patch that clears an optional field.
func Clear[T any]() Patch[T] { return Patch[T]{Set: true, Null: true} }

// APIKeyUpdate changes a key. Name and Enabled cannot be cleared; cleared
// permissions are none, cleared allowed_ips any address, a cleared
// rate_limit no limit, a cleared expires_at never, a cleared owner_id or
// metadata none. The environment and the secret never change.
type APIKeyUpdate struct {
	Name        Patch[string]
	Permissions Patch[[]string]
	AllowedIPs  Patch[[]string]
	RateLimit   Patch[int]
	ExpiresAt   Patch[time.Time]
	OwnerID     Patch[string]
	Metadata    Patch[json.RawMessage]
	// Enabled disables (false) or enables (true) the key; it cannot be
	// cleared.
	Enabled Patch[bool]
	// Credits sets the key's budget (remaining, and its refill: a refill
	// left out is none; RefillsAt is ignored), or clears it: the key
	// spends no credits.
	Credits Patch[credits.Budget]
}

// fields reports whether u changes a field other than Enabled.
func (u *APIKeyUpdate) fields() bool {
	return u.Name.Set || u.Permissions.Set || u.AllowedIPs.Set || u.RateLimit.Set || u.ExpiresAt.Set ||
		u.OwnerID.Set || u.Metadata.Set || u.Credits.Set
}

// maxExpiringWithin bounds ListFilter.ExpiringWithin: 366 days.
const maxExpiringWithin = 366 * 24 * time.Hour

// maxRollGrace is the longest an old secret may keep working after a
// roll: 7 days.
const maxRollGrace = 7 * 24 * time.Hour

// load reads a key the caller may see, or ErrNotFound.
func (m *Manager) load(ctx context.Context, c caller, id string) (*store.Record, error) {
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if err := c.valid(); err != nil {
		return nil, err
	}
	rec, err := m.store.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("%w: reading key: %w", ErrUnavailable, err)
	case !c.sees(rec):
		return nil, ErrNotFound
	}
	return rec, nil
}

// Get returns one key, without its secret.
func (m *Manager) Get(ctx context.Context, id string) (*APIKey, error) {
	return m.get(ctx, trusted, id)
}

// Get returns one of the principal's keys, without its secret.
func (s Scoped) Get(ctx context.Context, id string) (*APIKey, error) { return s.m.get(ctx, s.c, id) }

func (m *Manager) get(ctx context.Context, c caller, id string) (_ *APIKey, err error) {
	ctx, end := m.op(ctx, observe.Get)
	defer func() { end(err) }()
	rec, err := m.load(ctx, c, id)
	if err != nil {
		return nil, err
	}
	return m.shown(ctx, rec)
}

// shown is rec as the API shows it, its credits read from the store.
func (m *Manager) shown(ctx context.Context, rec *store.Record) (*APIKey, error) {
	k := apiKeyOf(rec)
	if err := m.showCredits(ctx, []*store.Record{rec}, []*APIKey{&k}); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListFilter selects and pages keys for List.
type ListFilter struct {
	// AccountID is the account whose keys are listed: required by the
	// Manager's own List; a Scoped List takes the principal's account,
	// and refuses any other.
	AccountID   string
	Environment Environment // "": both (a test principal sees test keys only)
	Revoked     *bool       // nil: all; true: revoked or scheduled by a roll; false: neither
	OwnerID     string      // "": any owner
	// ExpiringWithin, if positive, selects keys that expire from now to
	// now+ExpiringWithin (at most maxExpiringWithin).
	ExpiringWithin time.Duration
	Limit          int    // 1 to 100; 0 means 20
	Cursor         string // NextCursor of the previous page; "" for the first
}

// KeyList is one page of keys, newest first.
type KeyList struct {
	Data       []APIKey `json:"data"`
	HasMore    bool     `json:"has_more"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// List pages through an account's keys, newest first. Paging with
// NextCursor visits each key that existed when paging began exactly once.
func (m *Manager) List(ctx context.Context, f ListFilter) (*KeyList, error) {
	return m.list(ctx, trusted, f)
}

// List pages through the principal's keys. See Manager.List.
func (s Scoped) List(ctx context.Context, f ListFilter) (*KeyList, error) {
	return s.m.list(ctx, s.c, f)
}

func (m *Manager) list(ctx context.Context, c caller, f ListFilter) (_ *KeyList, err error) {
	ctx, end := m.op(ctx, observe.List)
	defer func() { end(err) }()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	if err := c.valid(); err != nil {
		return nil, err
	}
	q := store.ListQuery{Environment: string(f.Environment), Revoked: f.Revoked, Limit: f.Limit}
	if f.OwnerID != "" {
		if q.OwnerID, err = validateOwnerID(f.OwnerID); err != nil {
			return nil, err
		}
	}
	switch {
	case f.ExpiringWithin < 0 || f.ExpiringWithin > maxExpiringWithin:
		return nil, invalid("expiring_within", "expiring_within must be from 1 second to %d seconds", int(maxExpiringWithin/time.Second))
	case f.ExpiringWithin > 0:
		q.ExpiresFrom = m.now()
		q.ExpiresBefore = q.ExpiresFrom.Add(f.ExpiringWithin)
	}
	switch {
	case q.Limit == 0:
		q.Limit = 20
	case q.Limit < 1 || q.Limit > 100:
		return nil, invalid("limit", "limit must be from 1 to 100")
	}
	if f.Environment != "" {
		if _, err := validateEnvironment(f.Environment); err != nil {
			return nil, err
		}
	}
	if q.AccountID, err = c.account(f.AccountID); err != nil {
		return nil, err
	}
	if env := c.p.Environment; !c.trusted && env != "" {
		if f.Environment != "" && f.Environment != env {
			return &KeyList{Data: []APIKey{}}, nil
		}
		q.Environment = string(env)
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, err
		}
		q.After = &store.ListPosition{CreatedAt: at, ID: id}
	}
	q.Limit++ // one more than asked tells whether there is another page
	recs, err := m.store.List(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%w: listing keys: %w", ErrUnavailable, err)
	}
	out := &KeyList{Data: make([]APIKey, 0, len(recs))}
	if len(recs) == q.Limit {
		out.HasMore = true
		recs = recs[:len(recs)-1]
		last := recs[len(recs)-1]
		out.NextCursor = encodeCursor(last.CreatedAt, last.ID)
	}
	ks := make([]*APIKey, len(recs))
	for i, r := range recs {
		out.Data = append(out.Data, apiKeyOf(r))
		ks[i] = &out.Data[i]
	}
	if err := m.showCredits(ctx, recs, ks); err != nil {
		return nil, err
	}
	return out, nil
}

// A cursor is the position of a page's last key (or log entry), to the
// microsecond. It is opaque to clients; forging one only moves within the
// caller's own keys (or entries).
func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + "|" + id))
}

// decodeCursor reads what encodeCursor wrote: a page of keys' (a key's
// creation time and ID) or of the request log's (an entry's time and
// request ID).
func decodeCursor(c string) (time.Time, string, error) {
	bad := invalid("cursor", "cursor is not one this API returned")
	if len(c) > 200 {
		return time.Time{}, "", bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad
	}
	ts, id, ok := strings.Cut(string(raw), "|")
	if !ok || id == "" {
		return time.Time{}, "", bad
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", bad
	}
	return time.UnixMicro(us).UTC(), id, nil
}

// A change edits next, a copy of the stored record, in place, and returns
// what else to store atomically with it: a successor and its idempotency
// entry (a roll), a credit budget (an update), or an empty Write. nil:
// nothing to store at all.
type change func(next *store.Record) (*store.Write, error)

// updateAttempts bounds the read-modify-write loop; with backoff between
// attempts it spans about a second of contention on one key.
const updateAttempts = 16

// update applies change to the caller's key and stores the result,
// running change again on a fresh copy when another writer got there
// first. It is the one read-modify-write loop of Update, Revoke and Roll.
// Writers that collide back off for a random time that doubles with each
// collision (up to 64 ms), so that concurrent changes of one key
// serialise instead of colliding again and again until one gives up.
//
// events, if not nil, makes the events of the change from the record
// about to be stored: they are stored with it, and handed on after.
func (m *Manager) update(ctx context.Context, c caller, id string, change change, events func(next *store.Record) []event.Event) (*store.Record, error) {
	for attempt := range updateAttempts {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return nil, fmt.Errorf("%w: key %s: %w", ErrUnavailable, id, err)
			}
		}
		rec, err := m.load(ctx, c, id)
		if err != nil {
			return nil, err
		}
		next := rec.Clone()
		w, err := change(next)
		if err != nil || w == nil {
			return next, err
		}
		next.Version = rec.Version + 1
		w.Replace = next
		if w.Insert != nil {
			w.KeepRevoked = m.maxKeys
		}
		var evs []event.Event
		if events != nil && m.listens() {
			evs = events(next)
			w.Events = m.eventsFor(evs)
		}
		err = m.store.Write(ctx, *w)
		switch {
		case err == nil:
			m.stored(ctx, evs)
			return next.Clone(), nil
		case errors.Is(err, store.ErrStale):
			continue
		case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrIdempotencyKeyExists):
			return nil, err
		default:
			return nil, fmt.Errorf("%w: storing key %s: %w", ErrUnavailable, id, err)
		}
	}
	return nil, fmt.Errorf("%w: key %s kept changing under the change", ErrUnavailable, id)
}

// backoff waits before retry attempt n (n >= 1): a random time in
// [0, min(64 ms, 0.5 ms * 2^n)), or until ctx is done.
func backoff(ctx context.Context, n int) error {
	limit := min(64*time.Millisecond, (time.Millisecond/2)<<n)
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errRetired refuses changes to a key that is revoked, or rolled and
// waiting out its grace period: its record stays as it was, for audit. A
// new error each time: callers get their own to wrap or change.
func errRetired() error {
	return &ValidationError{Code: codeInvalidRequest, Message: "the key is revoked or already rolled; it cannot change (roll or change its successor instead)"}
}

// Update changes a key's name, permissions, allowed IPs, rate limit or
// expiry, with the validation of create. Fields absent from u stay as they
// are. A revoked or rolled key cannot change (a *ValidationError).
func (m *Manager) Update(ctx context.Context, id string, u APIKeyUpdate) (*APIKey, error) {
	return m.updateKey(ctx, trusted, id, u)
}

// Update changes one of the principal's keys, granting only permissions
// the principal holds. See Manager.Update.
func (s Scoped) Update(ctx context.Context, id string, u APIKeyUpdate) (*APIKey, error) {
	return s.m.updateKey(ctx, s.c, id, u)
}

func (m *Manager) updateKey(ctx context.Context, c caller, id string, u APIKeyUpdate) (_ *APIKey, err error) {
	return m.updateKeyLeaked(ctx, c, id, u, nil)
}

// updateKeyLeaked is updateKey; with leak, the update reports key.leaked
// too, in the same Write.
func (m *Manager) updateKeyLeaked(ctx context.Context, c caller, id string, u APIKeyUpdate, leak *event.Leak) (_ *APIKey, err error) {
	ctx, end := m.op(ctx, observe.Update)
	defer func() { end(err) }()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	apply, err := m.validateUpdate(ctx, c, u)
	if err != nil {
		return nil, err
	}
	var flipped bool // the update changes whether the key is enabled
	rec, err := m.update(ctx, c, id, func(r *store.Record) (*store.Write, error) {
		if !r.RevokedAt.IsZero() {
			return nil, errRetired()
		}
		flipped = u.Enabled.Set && u.Enabled.Value == (r.Disabled != store.NotDisabled)
		if flipped && u.Enabled.Value && r.Disabled == store.DisabledByHost && !c.trusted {
			return nil, &PermissionError{Param: "enabled", Message: "the key was disabled by the provider; only the provider can enable it"}
		}
		// The host disabling a key its account disabled takes the hold
		// over: no event (the key was disabled and still is).
		held := u.Enabled.Set && !u.Enabled.Value && c.trusted && r.Disabled == store.DisabledByAccount
		if !u.fields() && !flipped && !held {
			return nil, nil // nothing to change: no write, no event
		}
		return apply(r)
	}, func(next *store.Record) []event.Event {
		k := apiKeyOf(next)
		// One change's events are a microsecond apart, in the order
		// they are listed here: the log's order is theirs.
		now := storedTime(m.now())
		var evs []event.Event
		at := func() time.Time { return now.Add(time.Duration(len(evs)) * time.Microsecond) }
		if u.fields() {
			evs = append(evs, keyEvent(ctx, event.KeyUpdated, c, &k, next.AccountID, at()))
		}
		switch {
		case flipped && next.Disabled != store.NotDisabled:
			evs = append(evs, keyEvent(ctx, event.KeyDisabled, c, &k, next.AccountID, at()))
		case flipped:
			evs = append(evs, keyEvent(ctx, event.KeyEnabled, c, &k, next.AccountID, at()))
		}
		if leak != nil {
			evs = append(evs, leakEvent(ctx, &k, next.AccountID, leak, at()))
		}
		return evs
	})
	if err != nil {
		return nil, err
	}
	return m.shown(ctx, rec)
}

// validateUpdate checks every field of u before any record is read, and
// returns the change to apply.
func (m *Manager) validateUpdate(ctx context.Context, c caller, u APIKeyUpdate) (func(*store.Record) (*store.Write, error), error) {
	var s keySpec
	var err error
	if u.Name.Set {
		if u.Name.Null {
			return nil, invalid("name", "name cannot be cleared")
		}
		if s.name, err = validateName(u.Name.Value); err != nil {
			return nil, err
		}
	}
	if u.Permissions.Set {
		if s.permissions, err = m.validatePermissions(u.Permissions.Value); err != nil {
			return nil, err
		}
		if err := c.mayGrant("", s.permissions); err != nil {
			return nil, err
		}
	}
	if u.AllowedIPs.Set {
		if s.allowedIPs, _, err = m.validateAllowedIPs(u.AllowedIPs.Value); err != nil {
			return nil, err
		}
	}
	if u.RateLimit.Set && !u.RateLimit.Null {
		if s.rateLimit, err = validateRateLimit(u.RateLimit.Value); err != nil {
			return nil, err
		}
	}
	now := m.now()
	if u.ExpiresAt.Set && !u.ExpiresAt.Null {
		if s.expiresAt, err = validateExpiresAt(u.ExpiresAt.Value, now); err != nil {
			return nil, err
		}
	}
	if u.OwnerID.Set && !u.OwnerID.Null {
		if s.ownerID, err = validateOwnerID(u.OwnerID.Value); err != nil {
			return nil, err
		}
	}
	if u.Metadata.Set && !u.Metadata.Null {
		if len(u.Metadata.Value) == 0 {
			return nil, invalid("metadata", "metadata must be a JSON object; clear it with null")
		}
		if s.metadata, err = validateMetadata(u.Metadata.Value); err != nil {
			return nil, err
		}
	}
	if u.Enabled.Set && u.Enabled.Null {
		return nil, invalid("enabled", "enabled cannot be cleared; send true or false")
	}
	var budget store.Budget
	if u.Credits.Set && !u.Credits.Null {
		if err := m.keepsCredits(); err != nil {
			return nil, err
		}
		if budget, err = validateCredits(&u.Credits.Value, now); err != nil {
			return nil, err
		}
	}
	return func(r *store.Record) (*store.Write, error) {
		if u.RateLimit.Set && !u.RateLimit.Null {
			if _, _, err := m.planLimits(ctx, r.AccountID, s.rateLimit, true); err != nil {
				return nil, err
			}
		}
		w := &store.Write{}
		if u.ExpiresAt.Set {
			// The lifetime bound counts from the key's creation, so an
			// update cannot stretch a key's life past it.
			exp, err := m.lifetime(s.expiresAt, true, r.CreatedAt, now)
			if err != nil {
				return nil, err
			}
			r.ExpiresAt = exp
		}
		if u.Credits.Set && !c.trusted && r.CreditsID != "" {
			if err := m.mayChangeCredits(ctx, r.CreditsID); err != nil {
				return nil, err
			}
		}
		switch {
		case !u.Credits.Set:
		case u.Credits.Null:
			r.CreditsID = ""
		default:
			if r.CreditsID == "" {
				r.CreditsID = r.ID
			}
			budget.ByHost = c.trusted
			w.Credits = &store.CreditBudget{ID: r.CreditsID, Budget: budget}
		}
		if u.Name.Set {
			r.Name = s.name
		}
		if u.Permissions.Set {
			r.Permissions = s.permissions
		}
		if u.AllowedIPs.Set {
			r.AllowedIPs = s.allowedIPs
		}
		if u.RateLimit.Set {
			r.RateLimit = s.rateLimit
		}
		if u.OwnerID.Set {
			r.OwnerID = s.ownerID
		}
		if u.Metadata.Set {
			r.Metadata = s.metadata
		}
		switch {
		case !u.Enabled.Set:
		case u.Enabled.Value:
			r.Disabled = store.NotDisabled
		case c.trusted:
			r.Disabled = store.DisabledByHost // a host's hold outlasts the account's own
		case r.Disabled == store.NotDisabled:
			r.Disabled = store.DisabledByAccount
		}
		return w, nil
	}, nil
}

// Revoke revokes a key now. It takes effect for the very next Verify
// through the same store (other instances: within the store's staleness
// bound), is idempotent (revoking a revoked key changes nothing), and keeps
// the record, with revoked_at, for audit. A rolled key still in its grace
// period is revoked at once.
func (m *Manager) Revoke(ctx context.Context, id string) (*APIKey, error) {
	return m.revoke(ctx, trusted, id)
}

// Revoke revokes one of the principal's keys. See Manager.Revoke.
func (s Scoped) Revoke(ctx context.Context, id string) (*APIKey, error) {
	return s.m.revoke(ctx, s.c, id)
}

func (m *Manager) revoke(ctx context.Context, c caller, id string) (_ *APIKey, err error) {
	return m.revokeLeaked(ctx, c, id, nil)
}

// revokeLeaked is revoke; with leak, the revocation reports key.leaked
// too, in the same Write.
func (m *Manager) revokeLeaked(ctx context.Context, c caller, id string, leak *event.Leak) (_ *APIKey, err error) {
	ctx, end := m.op(ctx, observe.Revoke)
	defer func() { end(err) }()
	rec, err := m.update(ctx, c, id, func(r *store.Record) (*store.Write, error) {
		now := m.now()
		if !r.RevokedAt.IsZero() && !now.Before(r.RevokedAt) {
			return nil, nil
		}
		r.RevokedAt = storedTime(now)
		return &store.Write{}, nil
	}, func(next *store.Record) []event.Event {
		k := apiKeyOf(next)
		evs := []event.Event{keyEvent(ctx, event.KeyRevoked, c, &k, next.AccountID, next.RevokedAt)}
		if leak != nil {
			evs = append(evs, leakEvent(ctx, &k, next.AccountID, leak, next.RevokedAt.Add(time.Microsecond)))
		}
		return evs
	})
	if err != nil {
		return nil, err
	}
	return m.shown(ctx, rec)
}

// Roll replaces a key's secret. It makes a successor key (a new ID and
// secret, with the old key's name, permissions, allowed IPs, rate limit and
// expiry), returns it with its secret this once, and schedules the old key's
// revocation at now+grace: both work during the grace period, and the old
// one fails after it (grace 0: at once; at most maxRollGrace). A successor
// record rather than a new secret on the same record keeps one digest per
// record, which every store can index; the old record stays, revoked, for
// audit. A revoked, already rolled or expired key cannot be rolled.
//
// With IdempotencyKey, a retry (same caller, key ID and grace) returns the
// first result, secret included, for 24 hours: a client that lost the
// response to a roll is not locked out of the new secret.
func (m *Manager) Roll(ctx context.Context, id string, grace time.Duration, opts ...IssueOption) (*APIKeyCreated, error) {
	return m.rollKey(ctx, trusted, id, grace, opts)
}

// Roll rolls one of the principal's keys, which must hold every permission
// the key has. See Manager.Roll.
func (s Scoped) Roll(ctx context.Context, id string, grace time.Duration, opts ...IssueOption) (*APIKeyCreated, error) {
	return s.m.rollKey(ctx, s.c, id, grace, opts)
}

func (m *Manager) rollKey(ctx context.Context, c caller, id string, grace time.Duration, opts []IssueOption) (_ *APIKeyCreated, err error) {
	ctx, end := m.op(ctx, observe.Roll)
	defer func() { end(err) }()
	if m.closed.Load() {
		return nil, ErrClosed
	}
	idemKey, idempotent, err := issueOptions(opts)
	if err != nil {
		return nil, err
	}
	if grace < 0 || grace > maxRollGrace {
		return nil, invalid("grace_period_seconds", "the grace period must be from 0 to %d seconds", int(maxRollGrace/time.Second))
	}
	run := func(seal sealer) (*APIKeyCreated, error) { return m.roll(ctx, c, id, grace, seal) }
	if !idempotent {
		return run(nil)
	}
	if err := c.valid(); err != nil {
		return nil, err
	}
	fp := store.Digest(sha256.Sum256([]byte(id + "|" + strconv.FormatInt(int64(grace), 10))))
	return m.withIdempotency(ctx, c, rollEndpoint, idemKey, fp, m.now(), run)
}

func (m *Manager) roll(ctx context.Context, c caller, id string, grace time.Duration, seal sealer) (*APIKeyCreated, error) {
	var created *APIKeyCreated
	_, err := m.update(ctx, c, id, func(r *store.Record) (*store.Write, error) {
		now := m.now()
		switch {
		case !r.RevokedAt.IsZero():
			return nil, errRetired()
		case !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt):
			return nil, &ValidationError{Code: codeInvalidRequest, Message: "the key has expired"}
		}
		if err := c.mayGrant("", r.Permissions); err != nil {
			return nil, err
		}
		spec := keySpec{name: r.Name, environment: Environment(r.Environment), permissions: r.Permissions,
			allowedIPs: r.AllowedIPs, rateLimit: r.RateLimit, expiresAt: r.ExpiresAt,
			ownerID: r.OwnerID, metadata: r.Metadata, disabled: r.Disabled}
		if limit := storedTime(now.Add(m.maxLifetime)); m.maxLifetime > 0 && (spec.expiresAt.IsZero() || spec.expiresAt.After(limit)) {
			spec.expiresAt = limit // the successor is a new key: the policy applies to it
		}
		k, successor, err := m.newKey(spec, r.AccountID, now)
		if err != nil {
			return nil, err
		}
		// The successor spends the same budget: a roll cannot double it.
		successor.CreditsID = r.CreditsID
		if err := m.showCredits(ctx, []*store.Record{successor}, []*APIKey{&k.APIKey}); err != nil {
			return nil, err
		}
		var entry *store.IdempotencyRecord
		if seal != nil {
			if entry, err = seal(k, successor.ID); err != nil {
				return nil, err
			}
		}
		r.RevokedAt = storedTime(now.Add(grace))
		created = k
		return &store.Write{Insert: successor, Idempotency: entry}, nil
	}, func(next *store.Record) []event.Event {
		e := newEvent(ctx, event.KeyRolled, next.AccountID, c, m.now(), keyData{APIKey: created.APIKey, Replaces: next.ID})
		e.KeyID, e.Replaces, e.Environment = created.ID, next.ID, string(created.Environment)
		return []event.Event{e}
	})
	if err != nil {
		return nil, err
	}
	return created, nil
}
