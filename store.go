package keys

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// Record is what a Store keeps for one key: its metadata and the Digest of
// the secret, never the secret itself.
//
// A Store owns the Records given to Create (the caller does not touch them
// again) and never changes a Record after handing it out: it replaces it.
// That lets LookupHash return a shared pointer without copying on the hot
// path.
type Record struct {
	ID          string
	AccountID   string
	Name        string
	Prefix      string // the non-secret beginning of the key
	Environment Environment
	Permissions []string       // deduplicated, in the order given
	AllowedIPs  []netip.Prefix // masked; a single address is a /32 or /128; empty: any address
	RateLimit   int            // requests per minute; 0: no limit
	Hash        Digest
	CreatedAt   time.Time
	ExpiresAt   time.Time // zero: never expires
	RevokedAt   time.Time // zero: not revoked; in the future: revocation scheduled (a rolled key's grace period)
	LastUsed    time.Time // zero: never used (as flushed; may lag by the flush interval)
	// Version counts the record's updates, from 1 at creation; Update
	// succeeds only against the version it read, so two concurrent changes
	// cannot undo each other (an update cannot un-revoke a key).
	Version int64

	// noted is when a Manager last noted a use of this record in memory
	// (Unix ns). It lets Verify skip the pending-use map, and its lock, for
	// a key it noted within the last second. It is not persisted, and the
	// atomic type makes vet refuse to copy a Record by value: use Clone.
	noted atomic.Int64
}

// Clone returns a deep copy, so that a caller may change it freely.
func (r *Record) Clone() *Record {
	return &Record{
		ID:          r.ID,
		AccountID:   r.AccountID,
		Name:        r.Name,
		Prefix:      r.Prefix,
		Environment: r.Environment,
		Permissions: slices.Clone(r.Permissions),
		AllowedIPs:  slices.Clone(r.AllowedIPs),
		RateLimit:   r.RateLimit,
		Hash:        r.Hash,
		CreatedAt:   r.CreatedAt,
		ExpiresAt:   r.ExpiresAt,
		RevokedAt:   r.RevokedAt,
		LastUsed:    r.LastUsed,
		Version:     r.Version,
	}
}

// HasPermission reports whether the key holds perm.
func (r *Record) HasPermission(perm string) bool { return slices.Contains(r.Permissions, perm) }

// APIKey returns the record as the API shows it.
func (r *Record) APIKey() APIKey {
	k := APIKey{
		ID:          r.ID,
		Name:        r.Name,
		Prefix:      r.Prefix,
		Environment: r.Environment,
		Permissions: slices.Clone(r.Permissions),
		AllowedIPs:  make([]string, len(r.AllowedIPs)),
		CreatedAt:   r.CreatedAt,
	}
	if k.Permissions == nil {
		k.Permissions = []string{}
	}
	for i, p := range r.AllowedIPs {
		k.AllowedIPs[i] = formatPrefix(p)
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

// IdempotencyRecord is a stored result of an idempotent create. Scope is a
// digest of (caller, endpoint, idempotency key), so the idempotency key
// itself is not stored; Fingerprint is a digest of the request. Sealed holds
// the original response encrypted under a key derived from the Manager's
// idempotency secret and the idempotency key: a copy of the store alone
// cannot open it.
type IdempotencyRecord struct {
	Scope       Digest
	Fingerprint Digest
	KeyID       string
	Sealed      []byte
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// ListQuery selects records for Store.List.
type ListQuery struct {
	AccountID   string      // required: only this account's records
	Environment Environment // "": both
	// Revoked filters on RevokedAt being set (revoked, or scheduled to be
	// by a roll): nil for all records.
	Revoked *bool
	// After, if not nil, is the position of the last record of the
	// previous page: only records strictly after it in the order are
	// returned.
	After *ListPosition
	Limit int // at least 1
}

// ListPosition is a place in List's order: newest first, by CreatedAt
// descending, then ID descending.
type ListPosition struct {
	CreatedAt time.Time
	ID        string
}

// LastUsed is one entry of a last-used batch.
type LastUsed struct {
	ID string
	At time.Time
}

// Store persists key records. Every method takes a context first and must be
// safe for concurrent use. Errors other than the sentinels below are treated
// as the store being unavailable: the HTTP adapter answers them with 503
// (never 401, which would tell clients their key is bad).
//
// The conformance suite in package keystest checks every rule written here;
// a Store that passes keystest.Run satisfies this contract.
type Store interface {
	// Create inserts rec and, when idem is not nil, idem, atomically: either
	// both are stored or neither is. The store takes ownership of both:
	// the caller does not use or modify them afterwards.
	//
	// If a record with the same ID or Hash exists it returns an error
	// matching ErrDuplicate. If idem is not nil and an idempotency entry with
	// the same Scope exists whose ExpiresAt is after idem.CreatedAt, it
	// returns an error matching ErrIdempotencyKeyExists; an expired entry
	// with that Scope is replaced. In both error cases nothing is stored.
	Create(ctx context.Context, rec *Record, idem *IdempotencyRecord) error

	// LookupHash returns the record whose Hash is h, or an error matching
	// ErrNotFound. It is on the hot path of every verified request: it must
	// be one indexed lookup, should not allocate, and must find records
	// whatever their revoked or expired state (the Manager decides about
	// those). The caller must not modify the returned Record.
	LookupHash(ctx context.Context, h Digest) (*Record, error)

	// Get returns the record with the given ID, or an error matching
	// ErrNotFound. The caller owns the returned Record.
	Get(ctx context.Context, id string) (*Record, error)

	// LookupIdempotency returns the idempotency entry for scope if one
	// exists and its ExpiresAt is after now; otherwise an error matching
	// ErrNotFound. The caller owns the returned entry.
	LookupIdempotency(ctx context.Context, scope Digest, now time.Time) (*IdempotencyRecord, error)

	// Update replaces the stored record that has rec.ID with rec, if the
	// stored Version is rec.Version-1; otherwise it returns an error
	// matching ErrStale, or ErrNotFound if there is no such record. The
	// stored LastUsed is kept when it is later than rec's, and Hash never
	// changes (a key's secret is fixed; Roll makes a successor instead).
	// When successor is not nil it is inserted in the same atomic step, on
	// Create's terms (ErrDuplicate), and so is idem when not nil
	// (ErrIdempotencyKeyExists): all the changes happen or none does. The
	// store takes ownership of rec, successor and idem.
	Update(ctx context.Context, rec *Record, successor *Record, idem *IdempotencyRecord) error

	// List returns at most q.Limit records of q.AccountID matching the
	// filters, newest first (CreatedAt descending, then ID descending),
	// strictly after q.After when it is set. Paging with After visits
	// every record that existed when paging began exactly once, whatever is
	// inserted meanwhile (new records sort first). The caller owns the
	// returned records.
	List(ctx context.Context, q ListQuery) ([]*Record, error)

	// TouchLastUsed sets, for each entry, the record's LastUsed to At unless
	// it already holds a later time (it never moves backwards). Entries for
	// unknown IDs are ignored. A batch names each ID at most once. The
	// batch is applied as one operation.
	TouchLastUsed(ctx context.Context, batch []LastUsed) error

	// Close releases the store's resources. Methods called after Close may
	// return ErrClosed. Close is idempotent.
	Close(ctx context.Context) error
}
