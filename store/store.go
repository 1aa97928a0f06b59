// Package store is the contract between a keys.Manager and where its keys
// are kept, as database/sql/driver is for database/sql: what a store
// author implements. A host never needs it; it picks a store (memstore,
// in memory; the pgstore and sqlitestore modules) and hands it to
// keys.New.
//
// A Store keeps Records: the metadata of each key and the Digest of its
// secret, never the secret. Six methods are required. Optional
// capabilities, found by type assertion, add what some stores keep:
// UsageStore (request counts), CreditStore (credit budgets) and Importer
// (bulk import). A wrapper around a store (one that counts or traces its
// calls) keeps them by having an Unwrap method.
//
// Package storetest checks every rule written here, and runs a Manager on
// the store; a Store that passes storetest.Run satisfies this contract.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/txcloud/keys/event"
)

// Store persists key records. Every method takes a context first and must
// be safe for concurrent use. Errors other than the sentinels named below
// are treated as the store being unavailable: the Manager wraps them in
// keys.ErrUnavailable, which the HTTP adapter answers with 503 (never 401,
// which would tell clients their key is bad).
//
// Records are plain data. A Store may hand out one record to every caller
// (the Manager never changes a record it is given: it clones what it
// edits), or a fresh copy on every call; the Manager keeps nothing in a
// record, so either is exact. A store that hands out its own copy must not
// change it after returning it: it replaces a record, it never edits one
// in place.
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
type Store interface {
	// Write applies w all or nothing: every part of it is stored, or none
	// is and an error says why. The store takes ownership of the records
	// and the entries in w: the caller does not use or change them again.
	//
	//  - Insert adds a new record. If a record with its ID or Digest
	//    exists: an error matching ErrDuplicate.
	//  - Replace replaces the stored record with Replace.ID, if the stored
	//    Version is Replace.Version-1: otherwise an error matching ErrStale
	//    (ErrNotFound if there is no such record). Every field is written
	//    except LastUsed (the stored one is kept: only TouchLastUsed moves
	//    it) and Digest, which never changes: a Replace with another Digest
	//    is an error (a roll makes a successor record instead).
	//  - Idempotency stores an idempotency entry. If an entry with its
	//    Scope exists whose ExpiresAt is after Idempotency.CreatedAt: an
	//    error matching ErrIdempotencyKeyExists. An expired entry with that
	//    Scope is replaced.
	//  - Credits and Events: see Write.
	//  - MaxActive and KeepRevoked bound Insert's account: see Write.
	//
	// The Manager sets Insert, Replace or both (with different IDs), and
	// Idempotency only beside Insert, naming it (KeyID is Insert.ID).
	Write(ctx context.Context, w Write) error

	// LookupDigest returns the record whose Digest is d, or an error
	// matching ErrNotFound. It is on the hot path of every verified
	// request: one indexed lookup (or a cache hit), and a repeated lookup
	// of the same digest must not allocate, since Verify's cost is mostly
	// this call's. That rule is about speed alone: the Manager meters
	// exactly on a store that returns a fresh copy every time (storetest's
	// ManagerOnCopies). It finds records whatever their revoked or expired
	// state: the Manager decides about those.
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

// Errors a Store returns, which the Manager handles. Match them with
// errors.Is; a store may wrap them.
var (
	// ErrNotFound: no such record or entry. keys.ErrNotFound is the same
	// value.
	ErrNotFound = errors.New("keys: not found")
	// ErrDuplicate: Write refused to insert a record whose ID or Digest
	// already exists.
	ErrDuplicate = errors.New("keys: duplicate record")
	// ErrStale: Write refused a Replace made against an older version of
	// the record (someone else changed it first). The Manager retries.
	ErrStale = errors.New("keys: record changed concurrently")
	// ErrIdempotencyKeyExists: Write refused an idempotency entry because
	// an unexpired one with the same Scope exists.
	ErrIdempotencyKeyExists = errors.New("keys: idempotency entry exists")
	// ErrKeyLimit: Write refused an Insert past Write.MaxActive.
	// keys.ErrKeyLimit is the same value.
	ErrKeyLimit = errors.New("keys: the account holds the maximum number of active keys")
	// ErrEndpointLimit: Write refused an Endpoint insert past
	// Write.MaxEndpoints.
	ErrEndpointLimit = errors.New("keys: the account holds the maximum number of webhook endpoints")
)

// Record is what a Store keeps for one key: its metadata and the Digest of
// the secret, never the secret itself. It is plain data.
type Record struct {
	// The fields Verify reads come first, together, so that a lookup
	// touches as few cache lines as it can.
	Digest      Digest
	ID          string
	AccountID   string
	Environment string // "live" or "test"
	RateLimit   int    // requests per minute; 0: no limit
	// Disabled says whether, and by whom, the key is disabled: Verify
	// refuses a disabled key until it is enabled again; unlike a
	// revocation, this is reversible.
	Disabled  DisabledBy
	RevokedAt time.Time // zero: not revoked; in the future: revocation scheduled (a rolled key's grace period)
	ExpiresAt time.Time // zero: never expires
	// CreditsID names the key's credit budget (CreditStore); "": the key
	// has no credits. It is the ID of the key the budget was set on: a
	// rolled key's successor names its predecessor's budget, so the two
	// share it.
	CreditsID   string
	Permissions []string       // deduplicated, in the order given
	AllowedIPs  []netip.Prefix // masked; a single address is a /32 or /128; empty: any address
	// OwnerID is the host's own identifier of whoever the key is for (a
	// customer, a user); empty: none.
	OwnerID string
	// Metadata is a JSON object, compact, exactly as validated (at most
	// 4,096 bytes); nil: none. It is handed out as stored, never decoded
	// on the way: Verify returns it without work.
	Metadata json.RawMessage

	Name      string
	Prefix    string    // the non-secret beginning of the key
	CreatedAt time.Time //
	LastUsed  time.Time // zero: never used (as flushed; lags by up to the flush interval)
	// Version counts the record's changes, from 1 at creation; a Replace
	// succeeds only against the version it read, so two concurrent changes
	// cannot undo each other (an update cannot un-revoke a key).
	Version int64
}

// DisabledBy says who disabled a key, which decides who may enable it.
type DisabledBy uint8

// The states of Record.Disabled.
const (
	NotDisabled DisabledBy = iota
	// DisabledByAccount: a principal of the key's account disabled it; a
	// principal may enable it again.
	DisabledByAccount
	// DisabledByHost: the host disabled it (the Manager's own Update, or
	// a leak report). Only the host can enable it again.
	DisabledByHost
)

// Clone returns a deep copy, so that a caller may change it freely.
func (r *Record) Clone() *Record {
	c := *r
	c.Permissions = slices.Clone(r.Permissions)
	c.AllowedIPs = slices.Clone(r.AllowedIPs)
	c.Metadata = slices.Clone(r.Metadata)
	return &c
}

// LogValue logs a record without its digest: a JSON log handler would
// otherwise encode the whole struct.
func (r *Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("account_id", r.AccountID),
		slog.String("prefix", r.Prefix), slog.String("environment", r.Environment))
}

// Digest is the fixed-length hash under which a key is stored: SHA-256 of
// the key, or HMAC-SHA-256 under the Manager's pepper. Stores index
// records by it. It is not the key, but it is still printed redacted: a
// digest in a log is one step closer to an offline guessing attack than
// nothing.
type Digest [sha256.Size]byte

// Format prints a redacted placeholder for every verb.
func (Digest) Format(s fmt.State, _ rune) { _, _ = s.Write([]byte("[digest redacted]")) }

// LogValue keeps the digest out of log/slog output.
func (Digest) LogValue() slog.Value { return slog.StringValue("[digest redacted]") }

// MarshalJSON writes a redacted placeholder: nothing needs a digest in
// JSON (stores use its bytes), and a log handler that encodes structs as
// JSON would otherwise print it.
func (Digest) MarshalJSON() ([]byte, error) { return []byte(`"[digest redacted]"`), nil }

// Write is one all-or-nothing change for Store.Write.
type Write struct {
	Insert      *Record            // a new record, or nil
	Replace     *Record            // the next version of a stored record, or nil
	Idempotency *IdempotencyRecord // an idempotency entry, or nil
	// Credits, if not nil, sets a credit budget (CreditStore), beside an
	// Insert or Replace whose record names it. A store without the
	// CreditStore capability refuses a Write that sets it.
	Credits *CreditBudget
	// Events are the change's events, appended to the store's event log
	// in the same step, each with its deliveries (EventStore). A store
	// without that capability refuses a Write that carries any, storing
	// nothing, rather than drop them. A Write may carry Events alone.
	Events []event.Event
	// Endpoint inserts a webhook endpoint (Version 1; an ID that exists:
	// ErrDuplicate) or replaces the stored one, as Replace does a record
	// (its Version-1 stored, or ErrStale; no such endpoint: ErrNotFound).
	// A Replace keeps the stored FailingSince, except that one enabling a
	// disabled endpoint clears it. DeleteEndpoint deletes the
	// stored endpoint of its ID and Version (ErrStale, ErrNotFound
	// otherwise) with its deliveries. Both need EventStore. Idempotency
	// may be set beside an Endpoint insert or replace (its KeyID is the
	// endpoint's ID): refused (ErrIdempotencyKeyExists), it refuses the
	// whole Write.
	Endpoint       *Endpoint
	DeleteEndpoint *Endpoint
	// MaxEndpoints, if positive, caps an Endpoint insert's account: if it
	// holds MaxEndpoints endpoints already, nothing is written and the
	// error matches ErrEndpointLimit, in one atomic step with the insert.
	MaxEndpoints int

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

// Check refuses a Write that a store cannot apply whatever it holds: a
// credit budget none of its records names, or one out of range, and
// (since it is for stores without the EventStore capability) any Events
// or endpoint. Every store calls it, or CheckEvents, before it writes
// anything.
func (w *Write) Check() error {
	if len(w.Events) > 0 || w.Endpoint != nil || w.DeleteEndpoint != nil {
		return errors.New("keys: a Write carries events or a webhook endpoint, and this store keeps no event log")
	}
	return w.CheckEvents()
}

// CheckEvents is Check for a store with the EventStore capability: events
// and endpoints are welcome; each event must have an ID, a type and an
// account.
func (w *Write) CheckEvents() error {
	for i := range w.Events {
		if e := &w.Events[i]; e.ID == "" || e.Type == "" || e.AccountID == "" {
			return errors.New("keys: a Write carries an event without an ID, type or account")
		}
	}
	b := w.Credits
	if b == nil {
		return nil
	}
	if b.ID == "" || !(w.Insert != nil && w.Insert.CreditsID == b.ID || w.Replace != nil && w.Replace.CreditsID == b.ID) {
		return errors.New("keys: a Write sets a credit budget that none of its records names")
	}
	if !b.Budget.valid() {
		return fmt.Errorf("keys: a credit budget out of range: %+v", b.Budget)
	}
	return nil
}

// IdempotencyRecord is a stored result of an idempotent create or roll.
// Scope is a digest of (caller, endpoint, idempotency key), so the
// idempotency key itself is not stored; Fingerprint is a digest of the
// request. Sealed holds the original response encrypted under a key
// derived from the Manager's idempotency secret and the idempotency key: a
// copy of the store alone cannot open it.
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
	AccountID   string // only this account's records; required unless ExpiresBefore is set
	Environment string // "": both
	// Revoked filters on RevokedAt being set (revoked, or scheduled to be
	// by a roll): nil for all records.
	Revoked *bool
	OwnerID string // "": any owner; otherwise only records with this OwnerID
	// ExpiresBefore, if not zero, selects records with an ExpiresAt at or
	// after ExpiresFrom and before ExpiresBefore (records that never
	// expire are not selected). With it, AccountID may be "": every
	// account's records (the host's keys.Manager.NotifyExpiring).
	ExpiresFrom, ExpiresBefore time.Time
	// After, if not nil, is the position of the last record of the
	// previous page: only records strictly after it in the order are
	// returned.
	After *ListPosition
	Limit int // at least 1
}

// ListPosition is a place in an order newest first: by CreatedAt (an
// event's At) descending, then ID descending. List pages keys by it, and
// Events and Deliveries page events and deliveries.
type ListPosition struct {
	CreatedAt time.Time
	ID        string
}

// LastUsed is one entry of a TouchLastUsed batch.
type LastUsed struct {
	ID string
	At time.Time
}

// Capability returns s's optional capability T (UsageStore, CreditStore,
// Importer), looking through wrappers: a Store that wraps another (to
// count or trace its calls) keeps the capabilities of the one it wraps by
// having an Unwrap() Store method. The Manager looks for each capability
// this way, and calls a capability found by unwrapping directly, skipping
// the wrapper.
func Capability[T any](s Store) (T, bool) {
	for range 16 { // a bound: a wrapper that unwraps to itself cannot hang
		if c, ok := s.(T); ok {
			return c, true
		}
		w, ok := s.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		s = w.Unwrap()
	}
	var zero T
	return zero, false
}
