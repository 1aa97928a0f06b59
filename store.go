package keys

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// This file is the Store contract: what a store keeps (Record) and the
// six methods the Manager calls. Users of the library need only Record,
// which Verify returns; the other names here (Write, IdempotencyRecord,
// ListQuery, ListPosition, LastUsed, and the errors ErrDuplicate,
// ErrStale and ErrIdempotencyKeyExists) are for store authors.

// Record is what a Store keeps for one key: its metadata and the Digest of
// the secret, never the secret itself.
//
// Records that a Store returns are read-only and may be shared: neither the
// caller nor the store changes one after it is handed out (a store
// replaces a record; it never edits one in place). Clone a record to get a
// copy of your own.
type Record struct {
	ID          string
	AccountID   string
	Name        string
	Prefix      string // the non-secret beginning of the key
	Environment Environment
	Permissions []string       // deduplicated, in the order given
	AllowedIPs  []netip.Prefix // masked; a single address is a /32 or /128; empty: any address
	RateLimit   int            // requests per minute; 0: no limit
	// Disabled says whether, and by whom, the key is disabled: Verify
	// refuses a disabled key (ErrKeyDisabled) until it is enabled again;
	// unlike a revocation, this is reversible. (Beside RateLimit: on a
	// cache line Verify reads anyway.)
	Disabled  DisabledBy
	Digest    Digest
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never expires
	RevokedAt time.Time // zero: not revoked; in the future: revocation scheduled (a rolled key's grace period)
	LastUsed  time.Time // zero: never used (as flushed; lags by up to the flush interval)
	// OwnerID is the host's own identifier of whoever the key is for (a
	// customer, a user); empty: none.
	OwnerID string
	// Metadata is a JSON object, compact, exactly as validated (at most
	// MaxMetadataBytes); nil: none. It is handed out as stored, never
	// decoded on the way: Verify returns it without work.
	Metadata json.RawMessage
	// Version counts the record's changes, from 1 at creation; a Replace
	// succeeds only against the version it read, so two concurrent changes
	// cannot undo each other (an update cannot un-revoke a key).
	Version int64
	// CreditsID names the key's credit budget (CreditStore); "": the key
	// has no credits. It is the ID of the key the budget was set on: a
	// rolled key's successor names its predecessor's budget, so the two
	// share it.
	CreditsID string

	// noted is when a Manager last noted a use of this record in memory
	// (Unix ns): the last-used time the next flush writes. It lets Verify
	// skip the pending list, and its lock, for a key it noted within the
	// last second. queued says the record is on the list. Neither is
	// persisted, and the atomic types make vet refuse to copy a Record by
	// value: use Clone.
	noted  atomic.Int64
	queued atomic.Bool
	// meter is the Manager's usage counters for this record, per API;
	// not persisted either.
	meter atomic.Pointer[keyMeter]
}

// DisabledBy says who disabled a key, which decides who may enable it.
type DisabledBy uint8

// The states of Record.Disabled.
const (
	NotDisabled DisabledBy = iota
	// DisabledByAccount: a principal of the key's account disabled it
	// (Scoped.Update); a principal may enable it again.
	DisabledByAccount
	// DisabledByHost: the host disabled it (the Manager's own Update, or
	// ReportLeak): non-payment, an incident, a leak. Only the host can
	// enable it again; a principal's attempt is a *PermissionError.
	DisabledByHost
)

// Clone returns a deep copy, so that a caller may change it freely.
func (r *Record) Clone() *Record {
	c := &Record{
		ID:          r.ID,
		AccountID:   r.AccountID,
		Name:        r.Name,
		Prefix:      r.Prefix,
		Environment: r.Environment,
		Permissions: slices.Clone(r.Permissions),
		AllowedIPs:  slices.Clone(r.AllowedIPs),
		RateLimit:   r.RateLimit,
		Digest:      r.Digest,
		CreatedAt:   r.CreatedAt,
		ExpiresAt:   r.ExpiresAt,
		RevokedAt:   r.RevokedAt,
		LastUsed:    r.LastUsed,
		OwnerID:     r.OwnerID,
		Metadata:    slices.Clone(r.Metadata),
		Disabled:    r.Disabled,
		Version:     r.Version,
		CreditsID:   r.CreditsID,
	}
	// The clone of the same key keeps its usage counters: a store that
	// replaces a record on every last-used flush (memstore) would
	// otherwise cost each busy key a new set of counters a minute.
	c.meter.Store(r.meter.Load())
	return c
}

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
		OwnerID:     r.OwnerID,
		Metadata:    r.Metadata,
		Enabled:     r.Disabled == NotDisabled,
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

// LogValue logs a record without its digest: a JSON log handler would
// otherwise encode the whole struct.
func (r *Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("account_id", r.AccountID),
		slog.String("prefix", r.Prefix), slog.String("environment", string(r.Environment)))
}

// Store persists key records. Every method takes a context first and must
// be safe for concurrent use. Errors other than the sentinels named below
// are treated as the store being unavailable: the Manager wraps them in
// ErrUnavailable, which the HTTP adapter answers with 503 (never 401, which
// would tell clients their key is bad).
//
// Records a Store returns are read-only: the Manager never changes one
// (it clones what it edits), and the store never changes one after
// returning it. So a store may hand out its own copy without cloning.
//
// Staleness: Get, List and LookupIdempotency see every Write and
// TouchLastUsed that returned before they were called. LookupDigest may
// answer from a cache, but sees every Write made through the same Store
// value that returned before the call; a Write made through another value
// (another instance sharing the database) may take longer, up to a bound
// the store documents (memstore: none, it has no cache; pgstore: the
// delivery of a notification, or its cache TTL while its listener is
// down). The LastUsed of a record from LookupDigest may lag without bound;
// the Manager never reads it there.
//
// The Manager does not close a Store: its owner does, if it needs to.
//
// Package keystest checks every rule written here, and runs a Manager on
// the store; a Store that passes keystest.Run satisfies this contract.
type Store interface {
	// Write applies w all or nothing: every part of it is stored, or none
	// is and an error says why. The store takes ownership of the records
	// and the entry in w: the caller does not use or change them again.
	//
	//  - Insert adds a new record. If a record with its ID or Digest
	//    exists: an error matching ErrDuplicate.
	//  - Replace replaces the stored record with Replace.ID, if the stored
	//    Version is Replace.Version-1: otherwise an error matching ErrStale
	//    (ErrNotFound if there is no such record). Every field is written
	//    except LastUsed (the stored one is kept: only TouchLastUsed moves
	//    it) and Digest, which never changes: a Replace with another Digest
	//    is an error (Roll makes a successor record instead).
	//  - Idempotency stores an idempotency entry. If an entry with its
	//    Scope exists whose ExpiresAt is after Idempotency.CreatedAt: an
	//    error matching ErrIdempotencyKeyExists. An expired entry with that
	//    Scope is replaced.
	//  - MaxActive and KeepRevoked bound Insert's account: see Write.
	//
	// The Manager sets Insert, Replace or both (with different IDs), and
	// Idempotency only beside Insert, naming it (KeyID is Insert.ID).
	Write(ctx context.Context, w Write) error

	// LookupDigest returns the record whose Digest is d, or an error
	// matching ErrNotFound. It is on the hot path of every verified
	// request: one indexed lookup (or a cache hit), and a repeated lookup
	// of the same digest must not allocate. It finds records whatever
	// their revoked or expired state: the Manager decides about those.
	LookupDigest(ctx context.Context, d Digest) (*Record, error)

	// Get returns the record with the given ID, or an error matching
	// ErrNotFound.
	Get(ctx context.Context, id string) (*Record, error)

	// List returns at most q.Limit records of q.AccountID matching the
	// filters, newest first (CreatedAt descending, then ID descending),
	// strictly after q.After when it is set. Paging with After visits
	// every record that existed when paging began exactly once, whatever
	// is inserted meanwhile (new records sort first).
	List(ctx context.Context, q ListQuery) ([]*Record, error)

	// LookupIdempotency returns the idempotency entry for scope if one
	// exists and its ExpiresAt is after now; otherwise an error matching
	// ErrNotFound.
	LookupIdempotency(ctx context.Context, scope Digest, now time.Time) (*IdempotencyRecord, error)

	// TouchLastUsed sets, for each entry, the record's LastUsed to At
	// unless it already holds a later time: LastUsed never moves backwards.
	// Entries for unknown IDs are ignored; a batch names each ID at most
	// once. A store may apply a batch in parts, and on an error some
	// entries may have been applied: the Manager retries the whole batch,
	// which monotonicity makes harmless.
	TouchLastUsed(ctx context.Context, batch []LastUsed) error
}

// A Store wrapper (one that observes or counts calls, say) keeps the
// store's optional capabilities (UsageStore, CreditStore, Importer) by
// having an Unwrap method returning the Store it wraps: the Manager looks
// for each capability on the store, then on what Unwrap returns, and so
// on. Calls to a capability found that way skip the wrapper.
type wrapper interface{ Unwrap() Store }

// capability is store's T, or the first T found by unwrapping it.
func capability[T any](store Store) (T, bool) {
	for range 16 { // a bound: a wrapper that unwraps to itself cannot hang New
		if c, ok := store.(T); ok {
			return c, true
		}
		w, ok := store.(wrapper)
		if !ok {
			break
		}
		store = w.Unwrap()
	}
	var zero T
	return zero, false
}

// Errors a Store returns from Write, which the Manager handles. Match
// them with errors.Is.
var (
	// ErrDuplicate: Write refused to insert a record whose ID or Digest
	// already exists.
	ErrDuplicate = errors.New("keys: duplicate record")
	// ErrStale: Write refused a Replace made against an older version of
	// the record (someone else changed it first). The Manager retries.
	ErrStale = errors.New("keys: record changed concurrently")
	// ErrIdempotencyKeyExists: Write refused an idempotency entry because
	// an unexpired one with the same Scope exists.
	ErrIdempotencyKeyExists = errors.New("keys: idempotency entry exists")
)

// Write's bounds refuse with ErrKeyLimit (errors.go), which the Manager
// passes on to its caller.

// Write is one all-or-nothing change for Store.Write.
type Write struct {
	Insert      *Record            // a new record, or nil
	Replace     *Record            // the next version of a stored record, or nil
	Idempotency *IdempotencyRecord // an idempotency entry, or nil
	// Credits, if not nil, sets a credit budget (CreditStore), beside an
	// Insert or Replace whose record names it. A store without the
	// CreditStore capability refuses a Write that sets it.
	Credits *CreditBudget

	// MaxActive, if positive, caps Insert's account: if the account
	// already holds MaxActive records with a zero RevokedAt, nothing is
	// written and the error matches ErrKeyLimit (checked before the
	// idempotency entry). The check and the insert are one atomic step:
	// concurrent writes cannot pass the cap together. Create sets it.
	MaxActive int
	// KeepRevoked, if positive, bounds Insert's account's history: after
	// the write, while the account holds more than KeepRevoked records
	// with a RevokedAt set, the store deletes its oldest record (by
	// CreatedAt, then ID) whose RevokedAt is at or before
	// Insert.CreatedAt, together with any idempotency entry naming it.
	// A record whose revocation is still scheduled (a rolled key in its
	// grace period) is never deleted. A store may stop after deleting
	// MaxPrunedPerWrite records, so that no write does unbounded work;
	// later writes go on. Create and Roll set it.
	KeepRevoked int
}

// MaxPrunedPerWrite bounds the records one Write deletes for
// Write.KeepRevoked.
const MaxPrunedPerWrite = 100

// IdempotencyRecord is a stored result of an idempotent Create or Roll.
// Scope is a digest of (caller, endpoint, idempotency key), so the
// idempotency key itself is not stored; Fingerprint is a digest of the
// request. Sealed holds the original response encrypted under a key derived
// from the Manager's idempotency secret and the idempotency key: a copy of
// the store alone cannot open it.
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
	AccountID   string      // only this account's records; required unless ExpiresBefore is set
	Environment Environment // "": both
	// Revoked filters on RevokedAt being set (revoked, or scheduled to be
	// by a roll): nil for all records.
	Revoked *bool
	OwnerID string // "": any owner; otherwise only records with this OwnerID
	// ExpiresBefore, if not zero, selects records with an ExpiresAt at or
	// after ExpiresFrom and before ExpiresBefore (records that never
	// expire are not selected). With it, AccountID may be "": every
	// account's records (the host's Manager.NotifyExpiring).
	ExpiresFrom, ExpiresBefore time.Time
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

// LastUsed is one entry of a TouchLastUsed batch.
type LastUsed struct {
	ID string
	At time.Time
}
