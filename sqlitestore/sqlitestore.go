// Package sqlitestore is a store.Store in one SQLite file, for a host that
// runs one instance and wants its keys to outlive the process without a
// database server. It uses modernc.org/sqlite, a translation of SQLite's C
// source to Go: no cgo, so the host still cross-compiles and builds static
// binaries.
//
// # Durability
//
// The file is in WAL mode with synchronous=FULL: a Write returns only after
// its transaction is in the write-ahead log and the log is synced. A crash
// of the process, or of the machine (power loss included), loses no Write
// that returned; a Write in progress is rolled back whole. (With
// synchronous=NORMAL, which WithSynchronousNormal selects, a power loss may
// lose the last Writes that returned, never corrupt the file; a process
// crash still loses nothing.)
//
// # Reads from memory, writes to the file
//
// The file is the truth; a memstore.Store in front of it is a copy that
// every read answers from, so Verify never queries the file (and Get,
// List and LookupIdempotency have memstore's costs: no tenant's keys slow
// another's). Open loads the copy from the file; each Write is committed
// to the file first and then applied to the copy, under one lock, so the
// copy makes the same decisions (the contract fixes every one of them) on
// the same state. Should the copy ever refuse what the file accepted, it
// is reloaded from the file.
//
// # One process per file
//
// The copy is only right while this process is the file's only writer, so
// Open takes an exclusive lock on the database (locking_mode=EXCLUSIVE)
// and holds it until Close: a second Store on the same file, in this
// process or another, fails to open with ErrLocked instead of serving a
// stale copy. For the same reason, the webhook deliveries a process had
// claimed when it died are due again as soon as the file is opened, not
// after their lease.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrLocked: another Store (in this process or another) holds the file.
var ErrLocked = errors.New("sqlitestore: the database file is in use by another store")

// Store is a store.Store on one SQLite file. Use Open.
type Store struct {
	db     *sql.DB
	path   string
	closed atomic.Bool

	// wmu serialises Writes and TouchLastUsed, so that the copy follows
	// the file's order.
	wmu sync.Mutex
	mem atomic.Pointer[memstore.Store] // the copy reads answer from
	// reloads counts the copy's reloads after it refused a committed
	// Write (never, unless a bug makes the two disagree).
	reloads atomic.Int64
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

type config struct {
	synchronous string
	busy        time.Duration
}

// Option configures Open.
type Option func(*config)

// WithSynchronousNormal trades durability on power loss for faster Writes:
// the last Writes that returned before a power loss may be lost (a process
// crash still loses none). The default is synchronous=FULL.
func WithSynchronousNormal() Option { return func(c *config) { c.synchronous = "NORMAL" } }

// Open opens (creating if need be) the SQLite file at path, migrates its
// schema, checks its integrity, and loads every record into memory. A file
// that is not an SQLite database, or fails the integrity check, is an
// error, never an empty store; a file another Store holds is ErrLocked.
// Close releases it.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	c := config{synchronous: "FULL", busy: 100 * time.Millisecond}
	for _, o := range opts {
		o(&c)
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlitestore: path %q: want a file name without ? or #", path)
	}
	// Pragmas in the DSN apply to every connection the pool opens.
	dsn := "file:" + path + "?_txlock=immediate" +
		"&_pragma=locking_mode(EXCLUSIVE)" +
		"&_pragma=busy_timeout(" + fmt.Sprint(c.busy.Milliseconds()) + ")" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(" + c.synchronous + ")" +
		"&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s := &Store{db: db, path: path}
	if err := s.open(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	// A write takes the exclusive lock, which locking_mode=EXCLUSIVE keeps
	// until the connection closes.
	if err := s.migrate(ctx); err != nil {
		return s.openError(err)
	}
	var check string
	if err := s.db.QueryRowContext(ctx, `PRAGMA quick_check(1)`).Scan(&check); err != nil {
		return s.openError(err)
	}
	if check != "ok" {
		return fmt.Errorf("sqlitestore: %s fails its integrity check: %s", s.path, strings.TrimSpace(check))
	}
	// One process holds the file: a delivery claimed in it is a claim of
	// a process that died (or closed mid-attempt). It is due again now,
	// not after its lease.
	if _, err := s.db.ExecContext(ctx, `UPDATE webhook_deliveries SET lease = '', lease_until = 0 WHERE lease <> ''`); err != nil {
		return s.openError(err)
	}
	mem, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.mem.Store(mem)
	return nil
}

// openError names what went wrong opening the file.
func (s *Store) openError(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%w: %s (%v)", ErrLocked, s.path, err)
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("sqlitestore: %s is not a usable SQLite database: %w", s.path, err)
		}
	}
	return fmt.Errorf("sqlitestore: opening %s: %w", s.path, err)
}

// load builds the copy from the file: each record, in the order they were
// created, with the idempotency entry that names it, if one does; then the
// entries that name webhook endpoints.
func (s *Store) load(ctx context.Context) (*memstore.Store, error) {
	entries, endpoints, err := s.loadEntries(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+cols+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, s.openError(err)
	}
	defer rows.Close()
	mem := memstore.New()
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: loading %s: %w", s.path, err)
		}
		if err := mem.Write(ctx, store.Write{Insert: r, Idempotency: entries[r.ID]}); err != nil {
			return nil, fmt.Errorf("sqlitestore: loading %s: record %s: %w", s.path, r.ID, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.openError(err)
	}
	for _, e := range endpoints {
		if err := mem.Write(ctx, store.Write{Idempotency: e}); err != nil {
			return nil, fmt.Errorf("sqlitestore: loading %s: idempotency entry of %s: %w", s.path, e.KeyID, err)
		}
	}
	return mem, nil
}

// loadEntries reads the idempotency entries: those of keys by the key
// each names, and those of webhook endpoints.
func (s *Store) loadEntries(ctx context.Context) (keyed map[string]*store.IdempotencyRecord, endpoints []*store.IdempotencyRecord, err error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key_id, endpoint_id, scope, fingerprint, sealed, created_at, expires_at FROM api_key_idempotency`)
	if err != nil {
		return nil, nil, s.openError(err)
	}
	defer rows.Close()
	keyed = map[string]*store.IdempotencyRecord{}
	for rows.Next() {
		var e store.IdempotencyRecord
		var key, endpoint sql.NullString
		var scope, fp []byte
		var created, expires int64
		if err := rows.Scan(&key, &endpoint, &scope, &fp, &e.Sealed, &created, &expires); err != nil {
			return nil, nil, fmt.Errorf("sqlitestore: loading %s: %w", s.path, err)
		}
		copy(e.Scope[:], scope)
		copy(e.Fingerprint[:], fp)
		e.CreatedAt, e.ExpiresAt = fromNanos(created), fromNanos(expires)
		if key.Valid {
			e.KeyID = key.String
			keyed[e.KeyID] = &e
		} else {
			e.KeyID = endpoint.String
			endpoints = append(endpoints, &e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, s.openError(err)
	}
	return keyed, endpoints, nil
}

// ErrClosed is what a Store's methods return after Close.
var ErrClosed = errors.New("sqlitestore: closed")

// Close releases the file. Calls after Close fail with ErrClosed.
func (s *Store) Close(context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.wmu.Lock() // wait for a Write in progress
	defer s.wmu.Unlock()
	return s.db.Close()
}

// LookupDigest implements store.Store, from the copy: no query, no lock.
func (s *Store) LookupDigest(ctx context.Context, d store.Digest) (*store.Record, error) {
	return s.mem.Load().LookupDigest(ctx, d)
}

// Get implements store.Store, from the copy.
func (s *Store) Get(ctx context.Context, id string) (*store.Record, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.mem.Load().Get(ctx, id)
}

// List implements store.Store, from the copy.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.mem.Load().List(ctx, q)
}

// LookupIdempotency implements store.Store, from the copy.
func (s *Store) LookupIdempotency(ctx context.Context, scope store.Digest, now time.Time) (*store.IdempotencyRecord, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return s.mem.Load().LookupIdempotency(ctx, scope, now)
}

const cols = `id, account_id, name, prefix, environment, permissions, allowed_ips, rate_limit, digest, created_at, expires_at, revoked_at, last_used, version, owner_id, metadata, disabled`

// scanRecord reads a row of cols.
func scanRecord(rows *sql.Rows) (*store.Record, error) {
	var r store.Record
	var env, perms, ips string
	var digest []byte
	var created int64
	var expires, revoked, used sql.NullInt64
	var owner, meta sql.NullString
	var disabled int64
	if err := rows.Scan(&r.ID, &r.AccountID, &r.Name, &r.Prefix, &env, &perms, &ips, &r.RateLimit, &digest, &created, &expires, &revoked, &used, &r.Version,
		&owner, &meta, &disabled); err != nil {
		return nil, err
	}
	r.Disabled = store.DisabledBy(disabled)
	r.OwnerID = owner.String
	if meta.Valid {
		r.Metadata = []byte(meta.String)
	}
	if len(digest) != len(r.Digest) {
		return nil, fmt.Errorf("record %s: a digest of %d bytes", r.ID, len(digest))
	}
	copy(r.Digest[:], digest)
	r.Environment = env
	if err := json.Unmarshal([]byte(perms), &r.Permissions); err != nil {
		return nil, fmt.Errorf("record %s: permissions: %w", r.ID, err)
	}
	var prefixes []string
	if err := json.Unmarshal([]byte(ips), &prefixes); err != nil {
		return nil, fmt.Errorf("record %s: allowed_ips: %w", r.ID, err)
	}
	for _, p := range prefixes {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("record %s: allowed_ips: %w", r.ID, err)
		}
		r.AllowedIPs = append(r.AllowedIPs, pfx)
	}
	r.CreatedAt = fromNanos(created)
	r.ExpiresAt, r.RevokedAt, r.LastUsed = fromNull(expires), fromNull(revoked), fromNull(used)
	return &r, nil
}

// Times are Unix nanoseconds, so a record reads back at the instant it was
// written; NULL is the zero time.
func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromNanos(n.Int64)
}

func toNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// lists encodes r's permissions and allowed_ips as their columns hold them.
func lists(r *store.Record) (perms, ips string, err error) {
	p, err := json.Marshal(nonNil(r.Permissions))
	if err != nil {
		return "", "", err
	}
	prefixes := make([]string, len(r.AllowedIPs))
	for i, pfx := range r.AllowedIPs {
		prefixes[i] = pfx.String()
	}
	i, err := json.Marshal(prefixes)
	return string(p), string(i), err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Write implements store.Store: one transaction, in the contract's order of
// checks (the cap, the idempotency scope, the replaced version, the
// insert), then the history bound; the memory index follows the commit.
func (s *Store) Write(ctx context.Context, w store.Write) error {
	if w.Insert == nil && w.Replace == nil && len(w.Events) == 0 && w.Endpoint == nil && w.DeleteEndpoint == nil {
		return errors.New("sqlitestore: an empty Write")
	}
	if err := w.CheckEvents(); err != nil {
		return fmt.Errorf("sqlitestore: %w", err)
	}
	if w.Credits != nil || w.Insert != nil && w.Insert.CreditsID != "" || w.Replace != nil && w.Replace.CreditsID != "" {
		// Not a store.CreditStore (the Manager refuses credits on it
		// before any Write): never drop a budget without saying so.
		return errors.New("sqlitestore: this store keeps no credits")
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	pruned, err := write(ctx, tx, w)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// The copy keeps the records and the idempotency entries (an
	// endpoint's too); the events and endpoints are read from the file.
	w.Events, w.Endpoint, w.DeleteEndpoint = nil, nil, nil
	if w.Insert == nil && w.Replace == nil && w.Idempotency == nil {
		return nil
	}
	mem := s.mem.Load()
	if err := mem.Write(ctx, w); err != nil {
		return s.reload(ctx, fmt.Errorf("the copy refused a committed write: %w", err))
	}
	for _, d := range pruned {
		if _, err := mem.LookupDigest(ctx, d); err == nil {
			return s.reload(ctx, errors.New("the copy kept a record the file's history bound deleted"))
		}
	}
	return nil
}

// reload rebuilds the copy from the file after it disagreed with it
// (why); the Write that found out is committed, so it succeeded.
func (s *Store) reload(ctx context.Context, why error) error {
	s.reloads.Add(1)
	mem, err := s.load(ctx)
	if err != nil {
		return fmt.Errorf("sqlitestore: %w; reloading: %w", why, err)
	}
	s.mem.Store(mem)
	return nil
}

// write applies w in tx and returns the digests of the records the
// history bound deleted.
func write(ctx context.Context, tx *sql.Tx, w store.Write) ([]store.Digest, error) {
	if r := w.Insert; r != nil && w.MaxActive > 0 {
		var active int
		err := tx.QueryRowContext(ctx, `SELECT active FROM api_key_counts WHERE account_id = ?`, r.AccountID).Scan(&active)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, err
		case active >= w.MaxActive:
			return nil, fmt.Errorf("sqlitestore: account holds %d active keys: %w", active, store.ErrKeyLimit)
		}
	}
	if e := w.Idempotency; e != nil {
		var expires int64
		err := tx.QueryRowContext(ctx, `SELECT expires_at FROM api_key_idempotency WHERE scope = ?`, e.Scope[:]).Scan(&expires)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, err
		case expires > e.CreatedAt.UnixNano():
			return nil, store.ErrIdempotencyKeyExists
		}
	}
	if r := w.Replace; r != nil {
		if err := replace(ctx, tx, r); err != nil {
			return nil, err
		}
	}
	if r := w.Insert; r != nil {
		if _, err := insertRecord(ctx, tx, "INSERT", r); err != nil {
			return nil, insertError(err)
		}
	}
	if e := w.Idempotency; e != nil {
		owner := "key_id"
		if w.Endpoint != nil {
			owner = "endpoint_id"
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO api_key_idempotency (scope, fingerprint, `+owner+`, sealed, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
			e.Scope[:], e.Fingerprint[:], e.KeyID, nonNilBytes(e.Sealed), e.CreatedAt.UnixNano(), e.ExpiresAt.UnixNano()); err != nil {
			return nil, err
		}
	}
	if err := writeEvents(ctx, tx, &w); err != nil {
		return nil, err
	}
	if r := w.Insert; r != nil && w.KeepRevoked > 0 {
		return prune(ctx, tx, r.AccountID, w.KeepRevoked, r.CreatedAt)
	}
	return nil, nil
}

// insertRecord inserts r with verb (INSERT, or INSERT OR IGNORE to skip a
// record whose ID or digest is stored) and reports whether it went in.
func insertRecord(ctx context.Context, tx *sql.Tx, verb string, r *store.Record) (bool, error) {
	perms, ips, err := lists(r)
	if err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, verb+` INTO api_keys (`+cols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.AccountID, r.Name, r.Prefix, string(r.Environment), perms, ips, r.RateLimit,
		r.Digest[:], r.CreatedAt.UnixNano(), toNull(r.ExpiresAt), toNull(r.RevokedAt), toNull(r.LastUsed), r.Version,
		nullString(r.OwnerID), metadataArg(r), int64(r.Disabled))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// metadataArg is the metadata column's value: its JSON text, or NULL.
func metadataArg(r *store.Record) any {
	if r.Metadata == nil {
		return nil
	}
	return string(r.Metadata)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Import implements store.Importer: the batch in one transaction (one sync
// to disk), each record skipped if its ID or digest is stored; then the
// copy in memory, which skips the same ones.
func (s *Store) Import(ctx context.Context, recs []*store.Record) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	n := 0
	for _, r := range recs {
		in, err := insertRecord(ctx, tx, "INSERT OR IGNORE", r)
		if err != nil {
			return 0, err
		}
		if in {
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	if m, err := s.mem.Load().Import(ctx, recs); err != nil || m != n {
		return n, s.reload(ctx, fmt.Errorf("the copy imported %d records of the file's %d (%v)", m, n, err))
	}
	return n, nil
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func insertError(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return fmt.Errorf("sqlitestore: %w", store.ErrDuplicate)
	}
	return err
}

// replace writes r over the stored record if that is at r.Version-1.
func replace(ctx context.Context, tx *sql.Tx, r *store.Record) error {
	var version int64
	var digest []byte
	err := tx.QueryRowContext(ctx, `SELECT version, digest FROM api_keys WHERE id = ?`, r.ID).Scan(&version, &digest)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case err != nil:
		return err
	case string(digest) != string(r.Digest[:]):
		return errors.New("sqlitestore: a Replace may not change a record's digest")
	case version != r.Version-1:
		return fmt.Errorf("sqlitestore: %s is at version %d, not %d: %w", r.ID, version, r.Version-1, store.ErrStale)
	}
	perms, ips, err := lists(r)
	if err != nil {
		return err
	}
	// Every column but id, account_id, prefix, environment, digest,
	// created_at (which never change) and last_used (TouchLastUsed's).
	_, err = tx.ExecContext(ctx, `UPDATE api_keys SET name = ?, permissions = ?, allowed_ips = ?, rate_limit = ?, expires_at = ?, revoked_at = ?, version = ?,
	owner_id = ?, metadata = ?, disabled = ? WHERE id = ?`,
		r.Name, perms, ips, r.RateLimit, toNull(r.ExpiresAt), toNull(r.RevokedAt), r.Version, nullString(r.OwnerID), metadataArg(r), int64(r.Disabled), r.ID)
	return err
}

// prune deletes the account's oldest records revoked by now beyond keep
// (at most store.MaxPrunedPerWrite), with their idempotency entries (by
// the foreign key), and returns their digests.
func prune(ctx context.Context, tx *sql.Tx, account string, keep int, now time.Time) ([]store.Digest, error) {
	var revoked int
	if err := tx.QueryRowContext(ctx, `SELECT revoked FROM api_key_counts WHERE account_id = ?`, account).Scan(&revoked); err != nil || revoked <= keep {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `DELETE FROM api_keys WHERE id IN (
	SELECT id FROM api_keys WHERE account_id = ? AND revoked_at IS NOT NULL AND revoked_at <= ? ORDER BY created_at, id LIMIT ?)
RETURNING digest`, account, now.UnixNano(), min(revoked-keep, store.MaxPrunedPerWrite))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Digest
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var d store.Digest
		copy(d[:], b)
		out = append(out, d)
	}
	return out, rows.Err()
}

// touchChunk bounds the rows one transaction of TouchLastUsed updates, so
// a large flush holds up a Write for one chunk at most.
const touchChunk = 1000

// TouchLastUsed implements store.Store: a transaction per chunk of the
// batch. Then, as the Manager flushes once a minute, it deletes the
// idempotency entries expired by the batch's latest time (the Manager's
// clock), touchChunk at a time.
func (s *Store) TouchLastUsed(ctx context.Context, batch []store.LastUsed) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var now time.Time
	for len(batch) > 0 {
		n := min(len(batch), touchChunk)
		if err := s.touch(ctx, batch[:n]); err != nil {
			return err
		}
		for _, e := range batch[:n] {
			if e.At.After(now) {
				now = e.At
			}
		}
		batch = batch[n:]
	}
	if now.IsZero() {
		return nil
	}
	for range 100 {
		res, err := s.db.ExecContext(ctx, `DELETE FROM api_key_idempotency WHERE scope IN (
	SELECT scope FROM api_key_idempotency WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)`, now.UnixNano(), touchChunk)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n < touchChunk {
			return err
		}
	}
	return nil
}

// touch applies one chunk to the file, under wmu so that the copy
// follows in the file's order.
func (s *Store) touch(ctx context.Context, batch []store.LastUsed) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	st, err := tx.PrepareContext(ctx, `UPDATE api_keys SET last_used = max(coalesce(last_used, 0), ?) WHERE id = ?`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, e := range batch {
		if _, err := st.ExecContext(ctx, e.At.UnixNano(), e.ID); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	return s.mem.Load().TouchLastUsed(ctx, batch)
}
