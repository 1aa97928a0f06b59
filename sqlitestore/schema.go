package sqlitestore

import (
	"context"
	"fmt"
)

// migrations are applied in order, each once, recorded in keys_migrations.
// Never edit one that has shipped: add the next.
var migrations = []string{
	// 1: keys, their counts per account (kept by triggers, for
	// store.Write's bounds), and idempotency entries, deleted with the key
	// they name. Times are Unix nanoseconds; permissions and allowed_ips
	// JSON arrays of strings.
	`CREATE TABLE api_keys (
	id          TEXT    PRIMARY KEY,
	account_id  TEXT    NOT NULL,
	name        TEXT    NOT NULL,
	prefix      TEXT    NOT NULL,
	environment TEXT    NOT NULL CHECK (environment IN ('live', 'test')),
	permissions TEXT    NOT NULL,
	allowed_ips TEXT    NOT NULL,
	rate_limit  INTEGER NOT NULL CHECK (rate_limit >= 0),
	digest      BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER,
	revoked_at  INTEGER,
	last_used   INTEGER,
	version     INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_account_newest ON api_keys (account_id, created_at DESC, id DESC);
CREATE INDEX api_keys_account_env_newest ON api_keys (account_id, environment, created_at DESC, id DESC);
CREATE INDEX api_keys_account_revoked_newest ON api_keys (account_id, created_at DESC, id DESC) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_keys_account_unrevoked_newest ON api_keys (account_id, created_at DESC, id DESC) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_account_env_revoked_newest ON api_keys (account_id, environment, created_at DESC, id DESC) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_keys_account_env_unrevoked_newest ON api_keys (account_id, environment, created_at DESC, id DESC) WHERE revoked_at IS NULL;
CREATE TABLE api_key_counts (
	account_id TEXT    PRIMARY KEY,
	active     INTEGER NOT NULL,
	revoked    INTEGER NOT NULL
) STRICT;
CREATE TRIGGER api_keys_count_insert AFTER INSERT ON api_keys BEGIN
	INSERT INTO api_key_counts (account_id, active, revoked) VALUES (NEW.account_id, NEW.revoked_at IS NULL, NEW.revoked_at IS NOT NULL)
	ON CONFLICT (account_id) DO UPDATE SET active = active + excluded.active, revoked = revoked + excluded.revoked;
END;
CREATE TRIGGER api_keys_count_revocation AFTER UPDATE OF revoked_at ON api_keys
WHEN (OLD.revoked_at IS NULL) <> (NEW.revoked_at IS NULL) BEGIN
	UPDATE api_key_counts SET active = active + (NEW.revoked_at IS NULL) - (OLD.revoked_at IS NULL),
		revoked = revoked + (NEW.revoked_at IS NOT NULL) - (OLD.revoked_at IS NOT NULL)
	WHERE account_id = NEW.account_id;
END;
CREATE TRIGGER api_keys_count_delete AFTER DELETE ON api_keys BEGIN
	UPDATE api_key_counts SET active = active - (OLD.revoked_at IS NULL), revoked = revoked - (OLD.revoked_at IS NOT NULL)
	WHERE account_id = OLD.account_id;
END;
CREATE TABLE api_key_idempotency (
	scope       BLOB    PRIMARY KEY CHECK (length(scope) = 32),
	fingerprint BLOB    NOT NULL,
	key_id      TEXT    NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
	sealed      BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX api_key_idempotency_key ON api_key_idempotency (key_id);
CREATE INDEX api_key_idempotency_expires ON api_key_idempotency (expires_at);`,
	// 2: owner, metadata (the compact JSON text, as validated) and
	// reversible disable. No index: reads are served from memory.
	`ALTER TABLE api_keys ADD COLUMN owner_id TEXT;
ALTER TABLE api_keys ADD COLUMN metadata TEXT;
ALTER TABLE api_keys ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1, 2)); -- store.DisabledBy`,
	// 3: the request log (store.LogStore). Its indexes serve the reads,
	// newest first (scanned backwards); request_log_counts caps an
	// account's entries a day, request_log_totals its window;
	// request_log_batches makes AddLogs idempotent. ts is Unix
	// nanoseconds; ip '' when none was kept.
	`CREATE TABLE request_logs (
	ts             INTEGER NOT NULL,
	account_id     TEXT    NOT NULL,
	request_id     TEXT    NOT NULL,
	key_id         TEXT    NOT NULL,
	environment    TEXT    NOT NULL,
	method         TEXT    NOT NULL,
	path           TEXT    NOT NULL,
	api            TEXT    NOT NULL,
	status         INTEGER NOT NULL,
	error_type     TEXT    NOT NULL,
	error_code     TEXT    NOT NULL,
	limit_name     TEXT    NOT NULL,
	latency_us     INTEGER NOT NULL,
	ip             TEXT    NOT NULL,
	user_agent     TEXT    NOT NULL,
	request_bytes  INTEGER NOT NULL,
	response_bytes INTEGER NOT NULL
) STRICT;
CREATE INDEX request_logs_account_time ON request_logs (account_id, ts, request_id);
CREATE INDEX request_logs_account_key_time ON request_logs (account_id, key_id, ts, request_id);
CREATE INDEX request_logs_request ON request_logs (request_id);
CREATE INDEX request_logs_time ON request_logs (ts);
CREATE TABLE request_log_counts (
	account_id TEXT    NOT NULL,
	day        INTEGER NOT NULL,
	n          INTEGER NOT NULL,
	PRIMARY KEY (account_id, day)
) STRICT;
CREATE TABLE request_log_totals (
	account_id TEXT    PRIMARY KEY,
	n          INTEGER NOT NULL
) STRICT;
CREATE TABLE request_log_batches (
	id       TEXT    PRIMARY KEY,
	added_at INTEGER NOT NULL
) STRICT;
CREATE INDEX request_log_batches_added ON request_log_batches (added_at);`,
	// 4: the failed requests' own indexes (partial), so that listing an
	// account's 4xx and 5xx reads them alone.
	`CREATE INDEX request_logs_account_failed ON request_logs (account_id, ts, request_id) WHERE status >= 400;
CREATE INDEX request_logs_account_key_failed ON request_logs (account_id, key_id, ts, request_id) WHERE status >= 400;`,
	// 5: the event log, webhook endpoints and their deliveries
	// (store.EventStore), read from the file (not the memory copy).
	// Times are Unix nanoseconds; events and attempts are JSON text.
	`CREATE TABLE events (
	id          TEXT    PRIMARY KEY,
	account_id  TEXT    NOT NULL,
	type        TEXT    NOT NULL,
	key_id      TEXT    NOT NULL,
	environment TEXT    NOT NULL,
	ts          INTEGER NOT NULL,
	actor       TEXT    NOT NULL,
	request_id  TEXT    NOT NULL,
	client_ip   TEXT    NOT NULL,
	data        TEXT    NOT NULL,
	to_endpoint TEXT    NOT NULL
) STRICT;
CREATE INDEX events_account_time ON events (account_id, ts, id);
CREATE INDEX events_account_key_time ON events (account_id, key_id, ts, id);
CREATE INDEX events_time ON events (ts);
CREATE TABLE webhook_endpoints (
	id              TEXT    PRIMARY KEY,
	account_id      TEXT    NOT NULL,
	environment     TEXT    NOT NULL,
	url             TEXT    NOT NULL,
	events          TEXT    NOT NULL, -- a JSON array of types, or ["*"]
	description     TEXT    NOT NULL,
	enabled         INTEGER NOT NULL,
	disabled_reason TEXT    NOT NULL,
	secret          BLOB    NOT NULL, -- sealed
	previous_secret BLOB,             -- sealed
	previous_until  INTEGER,
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL,
	failing_since   INTEGER,
	version         INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id, created_at, id);
CREATE TABLE webhook_deliveries (
	id          TEXT    PRIMARY KEY,
	event_id    TEXT    NOT NULL,
	endpoint_id TEXT    NOT NULL,
	account_id  TEXT    NOT NULL,
	status      TEXT    NOT NULL,
	next_at     INTEGER NOT NULL, -- 0 unless pending
	created_at  INTEGER NOT NULL,
	attempts    TEXT    NOT NULL, -- JSON
	tries       INTEGER NOT NULL,
	lease       TEXT    NOT NULL,
	lease_until INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);`,
	// 6: an idempotency entry may name a webhook endpoint (an idempotent
	// create or roll of its secret) instead of a key: key_id's foreign key
	// refused every such entry. SQLite cannot drop a NOT NULL, so the
	// table is made again. No foreign key for endpoint_id: the entry of a
	// deleted endpoint replays its first answer until it expires, as a
	// revoked key's does.
	`CREATE TABLE api_key_idempotency_6 (
	scope       BLOB    PRIMARY KEY CHECK (length(scope) = 32),
	fingerprint BLOB    NOT NULL,
	key_id      TEXT    REFERENCES api_keys (id) ON DELETE CASCADE,
	endpoint_id TEXT,
	sealed      BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	CHECK ((key_id IS NULL) <> (endpoint_id IS NULL))
) STRICT;
INSERT INTO api_key_idempotency_6 (scope, fingerprint, key_id, sealed, created_at, expires_at)
	SELECT scope, fingerprint, key_id, sealed, created_at, expires_at FROM api_key_idempotency;
DROP TABLE api_key_idempotency;
ALTER TABLE api_key_idempotency_6 RENAME TO api_key_idempotency;
CREATE INDEX api_key_idempotency_key ON api_key_idempotency (key_id);
CREATE INDEX api_key_idempotency_expires ON api_key_idempotency (expires_at);`,
}

// migrate creates or upgrades the schema in one transaction (BEGIN
// IMMEDIATE: it is a write, which takes and keeps the file's lock).
func (s *Store) migrate(ctx context.Context) error { return s.migrateTo(ctx, len(migrations)) }

// migrateTo applies the migrations up to version last (migrate: all of
// them; a test: the schema an earlier version left).
func (s *Store) migrateTo(ctx context.Context, last int) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS keys_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT`); err != nil {
		return err
	}
	var done int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM keys_migrations`).Scan(&done); err != nil {
		return err
	}
	if done > len(migrations) {
		return fmt.Errorf("sqlitestore: the file is at schema version %d, newer than this code's %d", done, len(migrations))
	}
	for v := done + 1; v <= last; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("sqlitestore: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO keys_migrations (version, applied_at) VALUES (?, unixepoch())`, v); err != nil {
			return err
		}
	}
	return tx.Commit()
}
