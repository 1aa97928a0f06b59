// Package pgstore is a PostgreSQL store.Store, for hosts that run several
// instances on one database: every instance sees every key, revocation and
// update.
//
// Lookups by digest go through a bounded in-process cache, so a hot key
// costs no round trip. A Write that replaces a record (update, revoke,
// roll) notifies every instance over LISTEN/NOTIFY in the transaction that
// makes the change, and each instance drops the key from its cache when
// the notification arrives, normally within milliseconds; the instance
// that wrote drops it before Write returns.
//
// Staleness bound (the store.Store contract asks each store to state it):
// none for Writes through the same Store value; for another instance's
// Writes, the notification's delivery time while this instance's listener
// is connected, and the cache TTL (default 5 s) while it is not (it
// reconnects on its own, and empties the cache when it does). A lookup that
// raced an invalidation is not cached, so a stale record cannot slip back
// in. LastUsed in cached records may lag by up to the TTL.
//
// The schema is created by Migrate; the README beside this file gives its
// SQL. The store does not own the pool: close the pool after the store.
package pgstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys/store"
)

// Store is a PostgreSQL store.Store. Use New.
type Store struct {
	pool    *pgxpool.Pool
	schema  string // as given, for the advisory lock and the channel
	quoted  string // quoted identifier, for SQL
	channel string
	cache   *cache
	logger  func(msg string, err error)
	timeout time.Duration // each database call's bound; 0: none

	listening atomic.Bool
	filter    filter       // digests that exist, so forged keys cost no query
	dbLookups atomic.Int64 // LookupDigest's trips to the database
	refusals  atomic.Int64 // digests the filter refused without a query
	lag       lagMeter
	cancel    context.CancelFunc
	done      chan struct{}
	closed    atomic.Bool
	// usageSwept is when AddUsage last deleted old usage (Unix ns).
	usageSwept atomic.Int64
	// The request log (logs.go): the days whose partition exists, and
	// when AddLogs last swept old batch IDs (Unix ns).
	logDays   logDays
	logsSwept atomic.Int64

	qLookup, qGet, qInsert, qInsertIdem, qIdem, qIdemEndpoint, qLookupIdem, qTouch, qReplace, qVersion, qDigests, qExpireIdem string

	// Credits (credits.go): their statements, this instance's last sweep
	// (Unix ns), the budgets it found spent, and its counters.
	qSpend, qReadCredits, qSetCredits, qSweepCredits string
	qMark, qUnmark, qMarked, qExpireMarks            string
	// The event log (events.go): the inserts that write events with
	// their change, and the statement that writes events alone.
	qInsertEv, qInsertIdemEv, qEvents, qNotifyEv string
	creditsSwept                                 atomic.Int64
	spent                                        spentMemo
	spends                                       spendQueues
	creditQueries, spentRefusals                 atomic.Int64

	// Import's temporary table (one per connection, emptied at each
	// commit), its statements and its name.
	qImportTable, qImport, importTable string
}

// recordCols are a record's columns, in the order of recordArgs and
// scanRecord.
const recordCols = "id, account_id, name, prefix, environment, permissions, allowed_ips, rate_limit, digest, created_at, expires_at, revoked_at, last_used, version, owner_id, metadata, disabled, credits_id"

var _ store.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store) error

// WithSchema puts the tables in schema (default "txcloud_keys"). Tests give
// each run its own.
func WithSchema(schema string) Option {
	return func(s *Store) error {
		if schema == "" || len(schema) > 48 {
			return errors.New("pgstore: schema must be 1 to 48 characters")
		}
		s.schema = schema
		return nil
	}
}

// WithCache sizes the lookup cache: at most size records, each trusted for
// at most ttl (the staleness bound while notifications are down). size 0
// turns the cache off.
func WithCache(size int, ttl time.Duration) Option {
	return func(s *Store) error {
		if size < 0 || ttl <= 0 {
			return errors.New("pgstore: cache size must be >= 0 and ttl > 0")
		}
		s.cache = newCache(size, ttl)
		return nil
	}
}

// WithQueryTimeout bounds each database call the store makes (default 5
// s; 0 for none), so that no statement, one tenant's or not, holds a pool
// connection for long: past it the query is cancelled and the call fails
// (the Manager answers 503). Set a server-side statement_timeout on the
// pool's connections as well if you like (the README shows how).
//
// A caller's own cancellation (a client that went away) stops a call
// while it waits for a pool connection, but not a statement already
// running: that runs to completion, under this timeout. pgx closes the
// connection under a statement its context interrupts, so a client
// cancelling in a loop would make the pool reconnect for every request
// and slow every tenant; finishing a short statement costs less, keeps
// the connection, fills the cache with what a lookup found, and holds
// the caller's request (its concurrency slot) until the work ends. With
// a timeout of 0, statements are cancelled with their caller instead.
func WithQueryTimeout(d time.Duration) Option {
	return func(s *Store) error {
		if d < 0 {
			return errors.New("pgstore: query timeout must be >= 0")
		}
		s.timeout = d
		return nil
	}
}

// conn acquires a pool connection for one call, under the caller's ctx
// (bounded by the query timeout), and returns it with the context its
// statements run under: ctx without its cancellation, bounded by the query
// timeout (see WithQueryTimeout). A caller that has left by the time the
// connection comes gets none. done releases both.
func (s *Store) conn(ctx context.Context) (c *pgxpool.Conn, stmt context.Context, done func(), err error) {
	if s.timeout <= 0 {
		if c, err = s.pool.Acquire(ctx); err != nil {
			return nil, nil, nil, err
		}
		return c, ctx, c.Release, nil
	}
	stmt, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	wait, stopWaiting := context.WithDeadline(ctx, time.Now().Add(s.timeout))
	c, err = s.pool.Acquire(wait)
	stopWaiting()
	if err == nil && ctx.Err() != nil {
		// The caller left while the connection came: no statement has
		// started, so none runs for nobody.
		c.Release()
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return c, stmt, func() { c.Release(); cancel() }, nil
}

// WithErrorLog receives the listener's connection failures (it reconnects
// on its own). Default: ignored.
func WithErrorLog(f func(msg string, err error)) Option {
	return func(s *Store) error { s.logger = f; return nil }
}

// New returns a store on pool and starts its invalidation listener; Close
// stops it (the keys.Manager does not: the host closes the store, then the
// pool). Call Migrate before first use.
func New(pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: nil pool")
	}
	s := &Store{pool: pool, schema: "txcloud_keys", cache: newCache(100_000, 5*time.Second), logger: func(string, error) {}, timeout: 5 * time.Second}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.quoted = pgx.Identifier{s.schema}.Sanitize()
	s.channel = "txcloud_keys_invalidate:" + s.schema
	cols := recordCols
	s.qLookup = s.sql(`SELECT ` + cols + ` FROM {{schema}}.api_keys WHERE digest = $1`)
	s.qGet = s.sql(`SELECT ` + cols + ` FROM {{schema}}.api_keys WHERE id = $1`)
	// Every insert is one statement: it locks the account's count row
	// (so that concurrent creates are checked one after another), inserts
	// the key if the account is under store.Write.MaxActive, deletes the
	// account's oldest revoked records beyond store.Write.KeepRevoked, and
	// notifies the other instances' filters, so the notice goes out
	// exactly when the row commits. Parameters: the 18 columns, $19 the
	// channel, $20 MaxActive, $21 KeepRevoked, then (qInsertIdem) the
	// idempotency entry from $22. It returns whether the cap allowed the
	// insert, whether the key (and its entry) went in, and the IDs of the
	// records deleted.
	const head = `WITH c AS (
	INSERT INTO {{schema}}.api_key_counts AS c (account_id, active, revoked) VALUES ($2, 0, 0)
	ON CONFLICT (account_id) DO UPDATE SET active = c.active
	RETURNING active, revoked
), ok AS (SELECT 1 FROM c WHERE $20::int <= 0 OR c.active < $20::int), `
	tail := `, p AS (
	DELETE FROM {{schema}}.api_keys WHERE id IN (
		` + pruneScan + `
		LIMIT coalesce((SELECT least(greatest(c.revoked - $21::int, 0), ` + strconv.Itoa(store.MaxPrunedPerWrite) + `) FROM c WHERE $21::int > 0 AND EXISTS (SELECT 1 FROM k)), 0))
	RETURNING id
), n AS (SELECT pg_notify($19, 'd:' || encode(digest, 'hex')) FROM k),
x AS (SELECT pg_notify($19, id) FROM p)
-- n and x are read only so that they run (a CTE that nothing reads does
-- not; p, which modifies data, always runs). x drops the deleted records
-- from the other instances' caches.
`
	insertKey := `k AS (INSERT INTO {{schema}}.api_keys (` + cols + `)
	SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 FROM %s
	RETURNING digest)`
	s.qInsert = s.sql(head + fmt.Sprintf(insertKey, "ok") + tail +
		`SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM k) + 0 * (SELECT count(*) FROM n) + 0 * (SELECT count(*) FROM x),
	ARRAY(SELECT id FROM p)`)
	// With an idempotency entry: the key goes in only if the entry does
	// (its scope free, or held by an expired entry), so both or neither.
	s.qInsertIdem = s.sql(head + `idem AS (` + upsertIdem(22, "ok") + `), ` + fmt.Sprintf(insertKey, "idem") + tail +
		`SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM idem) + 0 * (SELECT count(*) FROM n) + 0 * (SELECT count(*) FROM x),
	ARRAY(SELECT id FROM p)`)
	s.importTable = "keys_import_" + s.schema
	s.qImportTable = s.sql(`CREATE TEMPORARY TABLE IF NOT EXISTS ` + pgx.Identifier{s.importTable}.Sanitize() + ` (
	LIKE {{schema}}.api_keys INCLUDING DEFAULTS, ord bigserial) ON COMMIT DELETE ROWS`)
	s.qImport = s.sql(`WITH k AS (
	INSERT INTO {{schema}}.api_keys (` + recordCols + `)
	SELECT ` + recordCols + ` FROM pg_temp.` + pgx.Identifier{s.importTable}.Sanitize() + ` ORDER BY ord
	ON CONFLICT DO NOTHING
	RETURNING digest
), n AS (SELECT pg_notify($1, 'd:' || encode(digest, 'hex')) FROM k)
SELECT digest FROM k WHERE (SELECT count(*) FROM n) >= 0`)
	s.qIdem = s.sql(`WITH idem AS (` + upsertIdem(1, "") + `) SELECT count(*) FROM idem`)
	s.qIdemEndpoint = s.sql(`WITH idem AS (` + upsertIdemOf(1, "", "endpoint_id") + `) SELECT count(*) FROM idem`)
	s.qDigests = s.sql(`SELECT digest FROM {{schema}}.api_keys`)
	// Expired entries, oldest first, a chunk at a time (TouchLastUsed).
	s.qExpireIdem = s.sql(`DELETE FROM {{schema}}.api_key_idempotency WHERE scope IN (
	SELECT scope FROM {{schema}}.api_key_idempotency WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)`)
	s.qLookupIdem = s.sql(`SELECT scope, fingerprint, coalesce(key_id, endpoint_id), sealed, created_at, expires_at FROM {{schema}}.api_key_idempotency WHERE scope = $1 AND expires_at > $2`)
	s.qTouch = s.sql(`UPDATE {{schema}}.api_keys AS k SET last_used = greatest(k.last_used, u.at)
FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id`)
	s.qReplace = s.sql(`UPDATE {{schema}}.api_keys SET name = $2, permissions = $3, allowed_ips = $4, rate_limit = $5,
	expires_at = $6, revoked_at = $7, version = $8, owner_id = $10, metadata = $11, disabled = $12, credits_id = $13
WHERE id = $1 AND version = $8 - 1 AND digest = $9`)
	s.qVersion = s.sql(`SELECT version, digest FROM {{schema}}.api_keys WHERE id = $1`)
	s.qSpend, s.qReadCredits, s.qSetCredits, s.qSweepCredits = s.sql(credSpend), s.sql(credRead), s.sql(credSet), s.sql(credSweep)
	s.qMark, s.qUnmark, s.qMarked, s.qExpireMarks = s.sql(markSQL), s.sql(unmarkSQL), s.sql(markedSQL), s.sql(expireMarksSQL)
	// With events: the same insert, and the events (with their
	// deliveries) only if the key went in.
	s.qInsertEv = s.sql(head + fmt.Sprintf(insertKey, "ok") + tail + ", " + eventsCTE(22, "EXISTS (SELECT 1 FROM k)") +
		`SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM k) + 0 * (SELECT count(*) FROM n) + 0 * (SELECT count(*) FROM x),
	ARRAY(SELECT id FROM p)`)
	s.qInsertIdemEv = s.sql(head + `idem AS (` + upsertIdem(22, "ok") + `), ` + fmt.Sprintf(insertKey, "idem") + tail + ", " + eventsCTE(28, "EXISTS (SELECT 1 FROM k)") +
		`SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM idem) + 0 * (SELECT count(*) FROM n) + 0 * (SELECT count(*) FROM x),
	ARRAY(SELECT id FROM p)`)
	s.qEvents = s.sql(`WITH ` + eventsCTE(1, "true") + `SELECT 1`)
	s.qNotifyEv = s.sql(`WITH ` + eventsCTE(3, "true") + `SELECT pg_notify($1, $2)`)

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.listen(ctx)
	return s, nil
}

func (s *Store) sql(q string) string { return strings.ReplaceAll(q, "{{schema}}", s.quoted) }

// pruneScan finds an account's ($2) records revoked by $10, oldest first:
// the records the history bound (store.Write.KeepRevoked) deletes. It reads
// the partial index of revoked records backwards, so the account's active
// keys cost nothing (TestListPlansAreIndexBacked checks the plan).
const pruneScan = `SELECT id FROM {{schema}}.api_keys WHERE account_id = $2 AND revoked_at <= $10 ORDER BY created_at, id`

// upsertIdem inserts an idempotency entry, its six parameters numbered
// from first, when its scope is free or held by an expired entry, and
// returns a row only then; with from, only if that CTE has a row.
func upsertIdem(first int, from string) string { return upsertIdemOf(first, from, "key_id") }

// upsertIdemOf is upsertIdem naming the entry's owner in column owner:
// key_id (a key, deleted with it) or endpoint_id (a webhook endpoint).
func upsertIdemOf(first int, from, owner string) string {
	var ps []string
	for i := range 6 {
		ps = append(ps, "$"+strconv.Itoa(first+i))
	}
	if from != "" {
		from = " FROM " + from
	}
	return `INSERT INTO {{schema}}.api_key_idempotency AS i (scope, fingerprint, ` + owner + `, sealed, created_at, expires_at)
	SELECT ` + strings.Join(ps, ", ") + from + `
	ON CONFLICT (scope) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, key_id = EXCLUDED.key_id, endpoint_id = EXCLUDED.endpoint_id,
		sealed = EXCLUDED.sealed, created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
	WHERE i.expires_at <= EXCLUDED.created_at
	RETURNING 1`
}

// Listening reports whether the invalidation listener is connected; while
// it is not, cached records are trusted only up to the cache TTL.
func (s *Store) Listening() bool { return s.listening.Load() }

// listen keeps a connection LISTENing for invalidations, reconnecting with
// backoff. On every (re)connect it empties the cache: notifications sent
// while it was away are lost.
func (s *Store) listen(ctx context.Context) {
	defer close(s.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		s.listening.Store(false)
		s.filter.ready.Store(false) // notices are lost until it is back
		if ctx.Err() != nil {
			return
		}
		s.logger("pgstore: invalidation listener lost its connection; reconnecting", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	s.cache.clear()
	s.lag.reset()
	// Listening first, then loading: an insert is in the load, in a
	// notification, or both.
	if err := s.loadFilter(ctx, conn); err != nil {
		return err
	}
	s.listening.Store(true)
	s.filter.ready.Store(true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if hexDigest, ok := strings.CutPrefix(n.Payload, "d:"); ok {
			var d store.Digest
			if _, err := hex.Decode(d[:], []byte(hexDigest)); err == nil {
				s.filter.add(&d)
				s.lag.received(&d)
			}
			continue
		}
		s.cache.invalidate(n.Payload)
	}
}

// loadFilter fills a new filter with every digest in the table and puts it
// in place.
func (s *Store) loadFilter(ctx context.Context, conn *pgx.Conn) error {
	var n int
	if err := conn.QueryRow(ctx, s.sql(`SELECT count(*) FROM {{schema}}.api_keys`)).Scan(&n); err != nil {
		return err
	}
	b := newBitset(n)
	rows, err := conn.Query(ctx, s.qDigests)
	if err != nil {
		return err
	}
	defer rows.Close()
	var raw []byte
	var d store.Digest
	for rows.Next() {
		if err := rows.Scan(&raw); err != nil {
			return err
		}
		copy(d[:], raw)
		b.add(&d)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.filter.bits.Store(b)
	return nil
}

// ErrClosed is what a Store's methods return after Close.
var ErrClosed = errors.New("pgstore: closed")

// Close stops the listener. It does not close the pool. After it, Write
// and TouchLastUsed return ErrClosed.
func (s *Store) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// insertError maps an insert's unique violation (a taken ID or digest) to
// store.ErrDuplicate, as the Store contract asks.
func insertError(err error) error {
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Errorf("pgstore: %w", store.ErrDuplicate)
	}
	return err
}

// insertArgs are qInsert's parameters for w: its record's 14 columns,
// the notification channel and the bounds.
func (s *Store) insertArgs(w store.Write) []any {
	return append(recordArgs(w.Insert), s.channel, w.MaxActive, w.KeepRevoked)
}

// recordArgs are r's columns, $1 to $18 of the inserts.
func recordArgs(r *store.Record) []any {
	return []any{r.ID, r.AccountID, r.Name, r.Prefix, string(r.Environment), nonNil(r.Permissions), nonNil(r.AllowedIPs),
		r.RateLimit, r.Digest[:], r.CreatedAt, nullTime(r.ExpiresAt), nullTime(r.RevokedAt), nullTime(r.LastUsed), r.Version,
		nullString(r.OwnerID), []byte(r.Metadata), int16(r.Disabled), nullString(r.CreditsID)}
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Write implements store.Store: one INSERT, or one statement inserting the
// key and its idempotency entry together, when only Insert is set; a
// transaction otherwise (the idempotency entry, the inserted successor,
// the versioned UPDATE and the invalidation notice).
func (s *Store) Write(ctx context.Context, w store.Write) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := w.CheckEvents(); err != nil {
		return err
	}
	var err error
	switch {
	case w.Endpoint != nil || w.DeleteEndpoint != nil:
		err = s.writeEndpoint(ctx, w)
	case w.Insert == nil && w.Replace == nil:
		err = s.writeEvents(ctx, w.Events)
	case w.Replace == nil:
		err = s.insert(ctx, w)
	default:
		err = s.replace(ctx, w)
	}
	if err == nil && w.Credits != nil {
		s.spent.forget(w.Credits.ID) // after the commit: this instance sees a raise at once
	}
	return err
}

func (s *Store) insert(ctx context.Context, w store.Write) error {
	rec, idem := w.Insert, w.Idempotency
	if rec == nil {
		return errors.New("pgstore: a Write with neither Insert nor Replace")
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	q, qEv, args := s.qInsert, s.qInsertEv, s.insertArgs(w)
	if idem != nil {
		q, qEv, args = s.qInsertIdem, s.qInsertIdemEv, append(args, idem.Scope[:], idem.Fingerprint[:], idem.KeyID, idem.Sealed, idem.CreatedAt, idem.ExpiresAt)
	}
	if len(w.Events) > 0 {
		q, args = qEv, append(args, eventArgs(w.Events)...)
	}
	// Timed from before the statement: its notification can arrive
	// before the statement's own answer does.
	s.lag.sent(&rec.Digest)
	var deleted []string
	if w.Credits == nil {
		deleted, err = insertResult(c.QueryRow(ctx, q, args...))
	} else {
		// With a budget: the key and its budget commit together.
		err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if deleted, err = insertResult(tx.QueryRow(ctx, q, args...)); err != nil {
				return err
			}
			return s.setCredits(ctx, tx, w.Credits)
		})
	}
	if err != nil {
		s.lag.forget(&rec.Digest)
		return err
	}
	s.filter.add(&rec.Digest)
	s.dropDeleted(deleted)
	return nil
}

// insertResult reads what qInsert or qInsertIdem reported: the records
// the history bound deleted, or why nothing was written.
func insertResult(row pgx.Row) (deleted []string, err error) {
	var allowed, stored int
	switch err := row.Scan(&allowed, &stored, &deleted); {
	case err != nil:
		return nil, insertError(err)
	case allowed == 0:
		return nil, fmt.Errorf("pgstore: %w", store.ErrKeyLimit)
	case stored == 0:
		return nil, store.ErrIdempotencyKeyExists
	}
	return deleted, nil
}

// dropDeleted takes deleted records out of this instance's cache at once
// (the others hear of it by notification).
func (s *Store) dropDeleted(ids []string) {
	for _, id := range ids {
		s.cache.invalidate(id)
	}
}

// LookupDigest implements store.Store, from the cache when it can. A digest
// the filter has never seen is not found without asking the database,
// beyond a small budget (see filter).
func (s *Store) LookupDigest(ctx context.Context, h store.Digest) (*store.Record, error) {
	if r := s.cache.get(h); r != nil {
		return r, nil
	}
	if s.filter.absent(&h) {
		s.refusals.Add(1)
		return nil, store.ErrNotFound
	}
	return s.lookupMiss(ctx, h)
}

// lookupMiss is LookupDigest's trip to the database. It is a function of
// its own because passing h[:] to pgx moves h to the heap, and in
// LookupDigest that allocation happened on every call, cache hits included.
func (s *Store) lookupMiss(ctx context.Context, h store.Digest) (*store.Record, error) {
	s.dbLookups.Add(1)
	gen := s.cache.generation()
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	r, err := s.scanOne(c.QueryRow(ctx, s.qLookup, h[:]))
	if err != nil {
		return nil, err
	}
	s.cache.put(r, gen)
	return r, nil
}

// Get implements store.Store. It always reads the database.
func (s *Store) Get(ctx context.Context, id string) (*store.Record, error) {
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return s.scanOne(c.QueryRow(ctx, s.qGet, id))
}

func (s *Store) scanOne(row pgx.Row) (*store.Record, error) {
	r, err := scanRecord(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	return r, err
}

func scanRecord(row pgx.Row) (*store.Record, error) {
	var r store.Record
	var env string
	var digest []byte
	var expires, revoked, used *time.Time
	var owner, credits *string
	var meta []byte
	var disabled int16
	if err := row.Scan(&r.ID, &r.AccountID, &r.Name, &r.Prefix, &env, &r.Permissions, &r.AllowedIPs, &r.RateLimit,
		&digest, &r.CreatedAt, &expires, &revoked, &used, &r.Version, &owner, &meta, &disabled, &credits); err != nil {
		return nil, err
	}
	r.Disabled = store.DisabledBy(disabled)
	if owner != nil {
		r.OwnerID = *owner
	}
	if credits != nil {
		r.CreditsID = *credits
	}
	if meta != nil {
		r.Metadata = meta
	}
	r.Environment = env
	if len(digest) != len(r.Digest) {
		return nil, fmt.Errorf("pgstore: stored digest of %d bytes", len(digest))
	}
	copy(r.Digest[:], digest)
	r.CreatedAt = r.CreatedAt.UTC()
	r.ExpiresAt, r.RevokedAt, r.LastUsed = fromNull(expires), fromNull(revoked), fromNull(used)
	if len(r.Permissions) == 0 {
		r.Permissions = nil
	}
	if len(r.AllowedIPs) == 0 {
		r.AllowedIPs = nil
	}
	return &r, nil
}

// LookupIdempotency implements store.Store.
func (s *Store) LookupIdempotency(ctx context.Context, scope store.Digest, now time.Time) (*store.IdempotencyRecord, error) {
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	var e store.IdempotencyRecord
	var sc, fp []byte
	err = c.QueryRow(ctx, s.qLookupIdem, scope[:], now).Scan(&sc, &fp, &e.KeyID, &e.Sealed, &e.CreatedAt, &e.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	copy(e.Scope[:], sc)
	copy(e.Fingerprint[:], fp)
	e.CreatedAt, e.ExpiresAt = e.CreatedAt.UTC(), e.ExpiresAt.UTC()
	return &e, nil
}

// touchChunk bounds the rows one TouchLastUsed statement updates, so a
// large flush holds no long transaction or many row locks at once.
const touchChunk = 1000

// TouchLastUsed implements store.Store: one UPDATE per chunk of the batch.
// It leaves the cache alone: last_used decides no Verify, and cached
// records catch up within the TTL. The Manager flushes once a minute, so
// it then deletes idempotency entries that expired by the batch's latest
// time (the Manager's clock, never the database's), a chunk per statement.
func (s *Store) TouchLastUsed(ctx context.Context, batch []store.LastUsed) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var now time.Time
	for len(batch) > 0 {
		n := min(len(batch), touchChunk)
		ids := make([]string, n)
		ats := make([]time.Time, n)
		for i, e := range batch[:n] {
			ids[i], ats[i] = e.ID, e.At
			if e.At.After(now) {
				now = e.At
			}
		}
		if err := s.touch(ctx, ids, ats); err != nil {
			return err
		}
		batch = batch[n:]
	}
	if now.IsZero() {
		return nil
	}
	if err := s.sweepCredits(ctx, now); err != nil {
		return err
	}
	if err := s.expireMarks(ctx, now); err != nil {
		return err
	}
	return s.expireIdempotency(ctx, now)
}

// expireIdempotency deletes entries expired by now, touchChunk per
// statement, at most 100 statements a flush (the rest wait for the next).
func (s *Store) expireIdempotency(ctx context.Context, now time.Time) error {
	for range 100 {
		tag, err := s.exec(ctx, s.qExpireIdem, now, touchChunk)
		if err != nil || tag.RowsAffected() < touchChunk {
			return err
		}
	}
	return nil
}

func (s *Store) exec(ctx context.Context, q string, args ...any) (pgconn.CommandTag, error) {
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer done()
	return c.Exec(ctx, q, args...)
}

func (s *Store) touch(ctx context.Context, ids []string, ats []time.Time) error {
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	_, err = c.Exec(ctx, s.qTouch, ids, ats)
	return err
}

// replace is a Write with a Replace: one transaction holding the
// idempotency entry, the successor, the versioned update and the
// invalidation notice.
func (s *Store) replace(ctx context.Context, w store.Write) error {
	rec := w.Replace
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	var deleted []string
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.qReplace, rec.ID, rec.Name, nonNil(rec.Permissions), nonNil(rec.AllowedIPs), rec.RateLimit,
			nullTime(rec.ExpiresAt), nullTime(rec.RevokedAt), rec.Version, rec.Digest[:], nullString(rec.OwnerID), []byte(rec.Metadata), int16(rec.Disabled),
			nullString(rec.CreditsID))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var v int64
			var d []byte
			err := tx.QueryRow(ctx, s.qVersion, rec.ID).Scan(&v, &d)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				return store.ErrNotFound
			case err != nil:
				return err
			case string(d) != string(rec.Digest[:]):
				return errors.New("pgstore: a Replace may not change a record's digest")
			}
			return fmt.Errorf("pgstore: %s is at version %d, not %d: %w", rec.ID, v, rec.Version-1, store.ErrStale)
		}
		// The successor after the update, so that the history bound
		// counts the revocation; the entry after the successor it names.
		if w.Insert != nil {
			if deleted, err = insertResult(tx.QueryRow(ctx, s.qInsert, s.insertArgs(w)...)); err != nil {
				return err
			}
			s.filter.add(&w.Insert.Digest) // before commit: a false "present" is harmless
		}
		if err := s.setCredits(ctx, tx, w.Credits); err != nil {
			return err
		}
		if idem := w.Idempotency; idem != nil {
			var n int
			err := tx.QueryRow(ctx, s.qIdem, idem.Scope[:], idem.Fingerprint[:], idem.KeyID, idem.Sealed, idem.CreatedAt, idem.ExpiresAt).Scan(&n)
			if err != nil {
				return err
			}
			if n == 0 {
				return store.ErrIdempotencyKeyExists
			}
		}
		// Delivered to every listener when the transaction commits; the
		// change's events in the same statement.
		if len(w.Events) > 0 {
			_, err = tx.Exec(ctx, s.qNotifyEv, append([]any{s.channel, rec.ID}, eventArgs(w.Events)...)...)
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, rec.ID)
		return err
	})
	if err == nil {
		s.cache.invalidate(rec.ID) // this instance need not wait for its own notice
		s.dropDeleted(deleted)
	}
	return err
}

// listSQL builds q's List statement and its arguments: $1 account (when
// there is one), $2 limit, then one parameter per filter. Every
// combination reads an index made for it (migrations 3 and 6): the
// account's keys in List's order, restricted to an environment, to revoked
// or unrevoked keys, or to an owner, so that a filter that matches nothing
// costs an empty index range, not a scan of the account (the README
// beside this file shows the plans). An expiry window reads the expiry
// index's range and sorts what it finds: the keys expiring in a window.
func (s *Store) listSQL(q store.ListQuery) (string, []any) {
	args := []any{q.AccountID, q.Limit}
	var where []string
	if q.AccountID != "" {
		where = append(where, "account_id = $1")
	} else {
		where = append(where, "$1::text = ''")
	}
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Environment != "" {
		where = append(where, "environment = "+param(string(q.Environment)))
	}
	switch {
	case q.Revoked == nil:
	case *q.Revoked:
		where = append(where, "revoked_at IS NOT NULL")
	default:
		where = append(where, "revoked_at IS NULL")
	}
	if q.OwnerID != "" {
		where = append(where, "owner_id = "+param(q.OwnerID))
	}
	if !q.ExpiresBefore.IsZero() {
		where = append(where, "expires_at IS NOT NULL", "expires_at >= "+param(q.ExpiresFrom), "expires_at < "+param(q.ExpiresBefore))
	}
	if q.After != nil {
		c, id := param(q.After.CreatedAt), param(q.After.ID)
		where = append(where, "(created_at, id) < ("+c+", "+id+")")
	}
	return s.sql(`SELECT ` + recordCols + ` FROM {{schema}}.api_keys WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY created_at DESC, id DESC LIMIT $2`), args
}

// List implements store.Store with keyset pagination on an index in List's
// order for each combination of filters.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	if q.AccountID == "" && q.ExpiresBefore.IsZero() {
		return nil, errors.New("pgstore: List: an account is required unless an expiry window is given")
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	sql, args := s.listSQL(q)
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// nonNil gives pgx an empty array rather than NULL for a nil slice.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// cache holds records by digest, each trusted until its deadline. It is
// sharded by digest, so hits on different keys take different locks (no
// global lock on the Verify path); the ID index, needed only to invalidate,
// sits behind its own lock.
type cache struct {
	size   int // in all
	ttl    time.Duration
	gen    atomic.Uint64 // bumped by every invalidation
	shards [cacheShards]cacheShard
	idMu   sync.Mutex
	byID   map[string]store.Digest
}

const cacheShards = 32

type cacheShard struct {
	mu   sync.RWMutex
	hits atomic.Int64
	byH  map[store.Digest]cached
	_    [32]byte // keep shards on separate cache lines
}

type cached struct {
	rec   *store.Record
	until int64 // Unix ns
}

func newCache(size int, ttl time.Duration) *cache {
	c := &cache{size: size, ttl: ttl, byID: make(map[string]store.Digest)}
	for i := range c.shards {
		c.shards[i].byH = make(map[store.Digest]cached)
	}
	return c
}

func (c *cache) shard(h store.Digest) *cacheShard { return &c.shards[h[0]%cacheShards] }

func (c *cache) get(h store.Digest) *store.Record {
	if c.size == 0 {
		return nil
	}
	sh := c.shard(h)
	sh.mu.RLock()
	e, ok := sh.byH[h]
	sh.mu.RUnlock()
	if !ok || time.Now().UnixNano() > e.until {
		return nil
	}
	sh.hits.Add(1) // the line RLock has just written: no new contention
	return e.rec
}

func (c *cache) generation() uint64 { return c.gen.Load() }

// put caches r unless an invalidation happened since gen was read: the
// record may predate it. idMu is held throughout, so an invalidation cannot
// slip between the check and the insert.
func (c *cache) put(r *store.Record, gen uint64) {
	if c.size == 0 {
		return
	}
	c.idMu.Lock()
	defer c.idMu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if len(c.byID) >= c.size {
		for id, h := range c.byID { // evict one (map order is random)
			c.drop(id, h)
			break
		}
	}
	sh := c.shard(r.Digest)
	sh.mu.Lock()
	sh.byH[r.Digest] = cached{rec: r, until: time.Now().Add(c.ttl).UnixNano()}
	sh.mu.Unlock()
	c.byID[r.ID] = r.Digest
}

// drop removes one entry; idMu is held.
func (c *cache) drop(id string, h store.Digest) {
	sh := c.shard(h)
	sh.mu.Lock()
	delete(sh.byH, h)
	sh.mu.Unlock()
	delete(c.byID, id)
}

func (c *cache) invalidate(id string) {
	c.idMu.Lock()
	c.gen.Add(1)
	if h, ok := c.byID[id]; ok {
		c.drop(id, h)
	}
	c.idMu.Unlock()
}

func (c *cache) clear() {
	c.idMu.Lock()
	c.gen.Add(1)
	for id, h := range c.byID {
		c.drop(id, h)
	}
	c.idMu.Unlock()
}

// Stats counts what LookupDigest did since New, and how fast insert
// notifications travel, for metrics (keysotel reads it).
type Stats struct {
	CacheHits      int64 // answered from the cache
	FilterRefusals int64 // refused by the digest filter without a query
	Queries        int64 // trips to the database (cache misses the filter let through)
	// CreditQueries counts SpendCredits' statements; SpentRefusals, the
	// spends of a budget remembered spent, answered without one.
	CreditQueries int64
	SpentRefusals int64
	// NotificationLag is how long this instance's latest insert took,
	// from its start, to come back to it as a notification: about the time
	// every other instance waits to hear of a new key (0 until one has).
	NotificationLag time.Duration
	Listening       bool // the invalidation listener is connected
}

// Stats reports the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{FilterRefusals: s.refusals.Load(), Queries: s.dbLookups.Load(), CreditQueries: s.creditQueries.Load(), SpentRefusals: s.spentRefusals.Load(),
		NotificationLag: time.Duration(s.lag.last.Load()), Listening: s.listening.Load()}
	for i := range s.cache.shards {
		st.CacheHits += s.cache.shards[i].hits.Load()
	}
	return st
}

// lagMeter times this instance's own insert notifications: from the
// start of the insert to the notification's arrival on the listener, so
// the time every other instance waits to hear of a new key, counted from
// when its create began.
type lagMeter struct {
	mu      sync.Mutex
	pending map[store.Digest]int64 // Unix ns; at most lagPending entries
	last    atomic.Int64           // ns
}

const lagPending = 256

func (l *lagMeter) sent(d *store.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = make(map[store.Digest]int64)
	}
	if len(l.pending) < lagPending {
		l.pending[*d] = time.Now().UnixNano()
	}
}

func (l *lagMeter) received(d *store.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.pending[*d]; ok {
		l.last.Store(max(time.Now().UnixNano()-t, 1))
		delete(l.pending, *d)
	}
}

func (l *lagMeter) forget(d *store.Digest) {
	l.mu.Lock()
	delete(l.pending, *d)
	l.mu.Unlock()
}

// reset forgets the inserts still waiting: their notifications were lost
// with the listener's connection.
func (l *lagMeter) reset() {
	l.mu.Lock()
	clear(l.pending)
	l.mu.Unlock()
}
