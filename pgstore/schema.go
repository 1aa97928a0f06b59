package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are applied in order, each once, recorded in
// keys_migrations. Never edit one that has shipped: add the next.
// {{schema}} is replaced by the store's quoted schema name.
var migrations = []string{
	// 1: keys and idempotency entries.
	`CREATE TABLE {{schema}}.api_keys (
	id          text        PRIMARY KEY,
	account_id  text        NOT NULL,
	name        text        NOT NULL,
	prefix      text        NOT NULL,
	environment text        NOT NULL CHECK (environment IN ('live', 'test')),
	permissions text[]      NOT NULL DEFAULT '{}',
	allowed_ips cidr[]      NOT NULL DEFAULT '{}',
	rate_limit  integer     NOT NULL DEFAULT 0 CHECK (rate_limit >= 0),
	hash        bytea       NOT NULL CHECK (length(hash) = 32),
	created_at  timestamptz NOT NULL,
	expires_at  timestamptz,
	revoked_at  timestamptz,
	last_used   timestamptz,
	version     bigint      NOT NULL
);
CREATE UNIQUE INDEX api_keys_hash ON {{schema}}.api_keys (hash);
CREATE INDEX api_keys_account_newest ON {{schema}}.api_keys (account_id, created_at DESC, id DESC);
CREATE TABLE {{schema}}.api_key_idempotency (
	scope       bytea       PRIMARY KEY CHECK (length(scope) = 32),
	fingerprint bytea       NOT NULL,
	key_id      text        NOT NULL,
	sealed      bytea       NOT NULL,
	created_at  timestamptz NOT NULL,
	expires_at  timestamptz NOT NULL
);
CREATE INDEX api_key_idempotency_expires ON {{schema}}.api_key_idempotency (expires_at);`,
	// 2: one name for the concept, as in the Go API (store.Record.Digest).
	`ALTER TABLE {{schema}}.api_keys RENAME COLUMN hash TO digest;
ALTER INDEX {{schema}}.api_keys_hash RENAME TO api_keys_digest;`,
	// 3: an index for every List filter, so a filter that matches nothing
	// reads an empty range instead of the whole account (issue 11).
	`CREATE INDEX api_keys_account_env_newest ON {{schema}}.api_keys (account_id, environment, created_at DESC, id DESC);
CREATE INDEX api_keys_account_revoked_newest ON {{schema}}.api_keys (account_id, created_at DESC, id DESC) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_keys_account_unrevoked_newest ON {{schema}}.api_keys (account_id, created_at DESC, id DESC) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_account_env_revoked_newest ON {{schema}}.api_keys (account_id, environment, created_at DESC, id DESC) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_keys_account_env_unrevoked_newest ON {{schema}}.api_keys (account_id, environment, created_at DESC, id DESC) WHERE revoked_at IS NULL;`,
	// 4: each account's count of active (unrevoked) keys, kept by a
	// trigger in the transaction of every insert and revocation, so that
	// counting reads one row however many keys there are.
	`CREATE TABLE {{schema}}.api_key_counts (
	account_id text   PRIMARY KEY,
	active     bigint NOT NULL
);
INSERT INTO {{schema}}.api_key_counts (account_id, active)
	SELECT account_id, count(*) FILTER (WHERE revoked_at IS NULL) FROM {{schema}}.api_keys GROUP BY account_id;
-- Inserts are counted once per statement from its transition table, so a
-- bulk insert costs one upsert per account, not one per row (repeated
-- updates of one row in a transaction grow a chain of its versions).
CREATE FUNCTION {{schema}}.api_keys_count_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO {{schema}}.api_key_counts AS c (account_id, active)
		SELECT account_id, count(*) FROM inserted WHERE revoked_at IS NULL GROUP BY account_id
	ON CONFLICT (account_id) DO UPDATE SET active = c.active + EXCLUDED.active;
	RETURN NULL;
END $$;
CREATE TRIGGER api_keys_count_inserts AFTER INSERT ON {{schema}}.api_keys
	REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.api_keys_count_inserts();
-- A revocation (revoked_at set) or its reverse moves the count by one.
CREATE FUNCTION {{schema}}.api_keys_count_revocations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF (OLD.revoked_at IS NULL) <> (NEW.revoked_at IS NULL) THEN
		INSERT INTO {{schema}}.api_key_counts AS c (account_id, active)
			VALUES (NEW.account_id, CASE WHEN NEW.revoked_at IS NULL THEN 1 ELSE -1 END)
		ON CONFLICT (account_id) DO UPDATE SET active = c.active + EXCLUDED.active;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER api_keys_count_revocations AFTER UPDATE OF revoked_at ON {{schema}}.api_keys
	FOR EACH ROW EXECUTE FUNCTION {{schema}}.api_keys_count_revocations();`,
	// 5: revoked records counted beside active ones, so that an insert can
	// bound an account's history (store.Write.KeepRevoked) and the cap on
	// active keys is checked inside the insert (store.Write.MaxActive);
	// deletes counted too; an idempotency entry deleted with the key it
	// names, so entries are bounded by records.
	`ALTER TABLE {{schema}}.api_key_counts ADD COLUMN revoked bigint NOT NULL DEFAULT 0;
UPDATE {{schema}}.api_key_counts AS c SET revoked = r.n
	FROM (SELECT account_id, count(*) AS n FROM {{schema}}.api_keys WHERE revoked_at IS NOT NULL GROUP BY account_id) AS r
	WHERE c.account_id = r.account_id;
CREATE OR REPLACE FUNCTION {{schema}}.api_keys_count_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO {{schema}}.api_key_counts AS c (account_id, active, revoked)
		SELECT account_id, count(*) FILTER (WHERE revoked_at IS NULL), count(*) FILTER (WHERE revoked_at IS NOT NULL)
		FROM inserted GROUP BY account_id
	ON CONFLICT (account_id) DO UPDATE SET active = c.active + EXCLUDED.active, revoked = c.revoked + EXCLUDED.revoked;
	RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION {{schema}}.api_keys_count_revocations() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE d integer := CASE WHEN NEW.revoked_at IS NULL THEN 1 ELSE -1 END;
BEGIN
	IF (OLD.revoked_at IS NULL) <> (NEW.revoked_at IS NULL) THEN
		INSERT INTO {{schema}}.api_key_counts AS c (account_id, active, revoked) VALUES (NEW.account_id, d, -d)
		ON CONFLICT (account_id) DO UPDATE SET active = c.active + EXCLUDED.active, revoked = c.revoked + EXCLUDED.revoked;
	END IF;
	RETURN NULL;
END $$;
-- Row by row: a statement-level trigger would run on every insert's
-- (nearly always empty) history deletion, and a deletion is at most 100
-- rows (store.MaxPrunedPerWrite).
CREATE FUNCTION {{schema}}.api_keys_count_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	UPDATE {{schema}}.api_key_counts SET active = active - (OLD.revoked_at IS NULL)::int, revoked = revoked - (OLD.revoked_at IS NOT NULL)::int
	WHERE account_id = OLD.account_id;
	RETURN NULL;
END $$;
CREATE TRIGGER api_keys_count_deletes AFTER DELETE ON {{schema}}.api_keys
	FOR EACH ROW EXECUTE FUNCTION {{schema}}.api_keys_count_deletes();
DELETE FROM {{schema}}.api_key_idempotency AS i WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.api_keys AS k WHERE k.id = i.key_id);
CREATE INDEX api_key_idempotency_key ON {{schema}}.api_key_idempotency (key_id);
ALTER TABLE {{schema}}.api_key_idempotency ADD CONSTRAINT api_key_idempotency_key_fk
	FOREIGN KEY (key_id) REFERENCES {{schema}}.api_keys (id) ON DELETE CASCADE;`,
	// 6: owner, metadata (json keeps the text exactly as validated: it is
	// handed out as stored) and reversible disable; an index for the owner
	// filter and two for expiry windows (one account's, every account's
	// unrevoked keys).
	`ALTER TABLE {{schema}}.api_keys ADD COLUMN owner_id text, ADD COLUMN metadata json,
	ADD COLUMN disabled smallint NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1, 2)); -- store.DisabledBy
CREATE INDEX api_keys_account_owner_newest ON {{schema}}.api_keys (account_id, owner_id, created_at DESC, id DESC) WHERE owner_id IS NOT NULL;
CREATE INDEX api_keys_account_expires ON {{schema}}.api_keys (account_id, expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX api_keys_expires_unrevoked ON {{schema}}.api_keys (expires_at) WHERE expires_at IS NOT NULL AND revoked_at IS NULL;`,
	// 7: usage counts in minute, hour and UTC day buckets (granularity
	// 0, 1, 2: usage.Granularity), and the IDs of the batches added, so a
	// retried flush counts once.
	`CREATE TABLE {{schema}}.usage_counts (
	account_id   text        NOT NULL,
	granularity  smallint    NOT NULL CHECK (granularity IN (0, 1, 2)),
	bucket       timestamptz NOT NULL,
	key_id       text        NOT NULL,
	api          text        NOT NULL,
	successful   bigint      NOT NULL,
	failed       bigint      NOT NULL,
	rate_limited bigint      NOT NULL,
	PRIMARY KEY (account_id, granularity, bucket, key_id, api)
);
CREATE INDEX usage_counts_minutes ON {{schema}}.usage_counts (bucket) WHERE granularity = 0;
CREATE TABLE {{schema}}.usage_batches (
	id       text        PRIMARY KEY,
	added_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_batches_added ON {{schema}}.usage_batches (added_at);`,
	// 8: credit budgets (store.CreditStore). A key names its budget in
	// credits_id (a rolled key's successor names its predecessor's); the
	// CHECK makes a budget below zero impossible whatever the code does.
	`ALTER TABLE {{schema}}.api_keys ADD COLUMN credits_id text;
CREATE INDEX api_keys_credits_id ON {{schema}}.api_keys (credits_id) WHERE credits_id IS NOT NULL;
CREATE TABLE {{schema}}.key_credits (
	id              text        PRIMARY KEY,
	remaining       bigint      NOT NULL CHECK (remaining >= 0),
	refill_interval text        CHECK (refill_interval IN ('daily', 'monthly')),
	refill_amount   bigint      CHECK (refill_amount > 0),
	period          timestamptz NOT NULL,
	by_host         boolean     NOT NULL,
	CHECK ((refill_interval IS NULL) = (refill_amount IS NULL))
);`,
	// 9: marks (store.Marker), each until its expiry; the index serves
	// the sweep of expired ones.
	`CREATE TABLE {{schema}}.marks (
	mark  bytea       PRIMARY KEY,
	until timestamptz NOT NULL
);
CREATE INDEX marks_until ON {{schema}}.marks (until);`,
	// 10: budgets set on their own (store.CreditStore.SetCredits: an
	// account's), which the sweep of unnamed budgets leaves alone.
	`ALTER TABLE {{schema}}.key_credits ADD COLUMN standalone boolean NOT NULL DEFAULT false;`,
	// 11: the request log (store.LogStore), partitioned by UTC day so
	// that retention drops whole partitions (AddLogs creates each day's
	// partition before its first entry). Its indexes serve the reads
	// newest first (scanned backwards): an account's, an account's key's,
	// and one request's. request_log_counts caps an account's entries a
	// day; request_log_batches makes AddLogs idempotent.
	`CREATE TABLE {{schema}}.request_logs (
	ts             timestamptz NOT NULL,
	account_id     text        NOT NULL,
	request_id     text        NOT NULL,
	key_id         text        NOT NULL,
	environment    text        NOT NULL,
	method         text        NOT NULL,
	path           text        NOT NULL,
	api            text        NOT NULL,
	status         smallint    NOT NULL,
	error_type     text        NOT NULL,
	error_code     text        NOT NULL,
	limit_name     text        NOT NULL,
	latency_us     bigint      NOT NULL,
	ip             inet,
	user_agent     text        NOT NULL,
	request_bytes  bigint      NOT NULL,
	response_bytes bigint      NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX request_logs_account_time ON {{schema}}.request_logs (account_id, ts, request_id);
CREATE INDEX request_logs_account_key_time ON {{schema}}.request_logs (account_id, key_id, ts, request_id);
CREATE INDEX request_logs_request ON {{schema}}.request_logs (request_id);
CREATE TABLE {{schema}}.request_log_counts (
	account_id text   NOT NULL,
	day        date   NOT NULL,
	n          bigint NOT NULL,
	PRIMARY KEY (account_id, day)
);
CREATE TABLE {{schema}}.request_log_batches (
	id       text        PRIMARY KEY,
	added_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_log_batches_added ON {{schema}}.request_log_batches (added_at);`,
	// 12: the failed requests' own indexes (partial, so only they pay for
	// them), so that a customer listing its 4xx and 5xx reads them alone,
	// not the successes between them.
	`CREATE INDEX request_logs_account_failed ON {{schema}}.request_logs (account_id, ts, request_id) WHERE status >= 400;
CREATE INDEX request_logs_account_key_failed ON {{schema}}.request_logs (account_id, key_id, ts, request_id) WHERE status >= 400;`,
	// 13: the event log, webhook endpoints and their deliveries
	// (store.EventStore). Events are written in the statement or
	// transaction of the change they report, with a delivery to each
	// endpoint subscribed; data is the event's JSON as written (text, so
	// that it reads back byte for byte). Deliveries due are found by the
	// partial index of pending ones; a claim is a lease (lease,
	// lease_until) that another instance may take once it ends. Each
	// index is one more write per delivery, on every change of an account
	// with endpoints: an endpoint's deliveries are read through its own
	// index (by event too), pruned through created_at.
	`CREATE TABLE {{schema}}.events (
	id          text        PRIMARY KEY,
	account_id  text        NOT NULL,
	type        text        NOT NULL,
	key_id      text        NOT NULL,
	environment text        NOT NULL,
	ts          timestamptz NOT NULL,
	actor       text        NOT NULL,
	request_id  text        NOT NULL,
	client_ip   text        NOT NULL,
	data        text        NOT NULL,
	to_endpoint text        NOT NULL
);
CREATE INDEX events_account_time ON {{schema}}.events (account_id, ts, id);
CREATE INDEX events_account_key_time ON {{schema}}.events (account_id, key_id, ts, id);
CREATE INDEX events_time ON {{schema}}.events (ts);
CREATE TABLE {{schema}}.webhook_endpoints (
	id              text        PRIMARY KEY,
	account_id      text        NOT NULL,
	environment     text        NOT NULL,
	url             text        NOT NULL,
	events          text[]      NOT NULL,
	description     text        NOT NULL,
	enabled         boolean     NOT NULL,
	disabled_reason text        NOT NULL,
	secret          bytea       NOT NULL,
	previous_secret bytea,
	previous_until  timestamptz,
	created_at      timestamptz NOT NULL,
	updated_at      timestamptz NOT NULL,
	failing_since   timestamptz,
	version         bigint      NOT NULL
);
CREATE INDEX webhook_endpoints_account ON {{schema}}.webhook_endpoints (account_id, created_at, id);
CREATE TABLE {{schema}}.webhook_deliveries (
	id          text        PRIMARY KEY,
	event_id    text        NOT NULL,
	endpoint_id text        NOT NULL,
	account_id  text        NOT NULL,
	status      text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'skipped')),
	next_at     timestamptz,
	created_at  timestamptz NOT NULL,
	attempts    text        NOT NULL,
	tries       integer     NOT NULL,
	lease       text        NOT NULL,
	lease_until timestamptz
);
CREATE INDEX webhook_deliveries_endpoint ON {{schema}}.webhook_deliveries (endpoint_id, created_at, id);
CREATE INDEX webhook_deliveries_due ON {{schema}}.webhook_deliveries (next_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_created ON {{schema}}.webhook_deliveries (created_at);`,
	// 14: an idempotency entry may name a webhook endpoint (an idempotent
	// create or roll of its secret) instead of a key: key_id's foreign key
	// refused every such entry. No foreign key for endpoint_id: the entry
	// of a deleted endpoint replays its first answer until it expires, as
	// a revoked key's does.
	`ALTER TABLE {{schema}}.api_key_idempotency ALTER COLUMN key_id DROP NOT NULL,
	ADD COLUMN endpoint_id text,
	ADD CONSTRAINT api_key_idempotency_one_owner CHECK ((key_id IS NULL) <> (endpoint_id IS NULL));`,
}

// Migrate creates or upgrades the schema. It is idempotent, and safe when
// several instances run it at once: a transaction-scoped advisory lock
// serialises them, and each migration is recorded in the same transaction
// that applies it.
func (s *Store) Migrate(ctx context.Context) error { return s.migrateTo(ctx, len(migrations)) }

// migrateTo applies the migrations up to version last (Migrate: all of
// them; a test: the schema an earlier version left).
func (s *Store) migrateTo(ctx context.Context, last int) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('txcloud-keys-migrate:' || $1))`, s.schema); err != nil {
			return err
		}
		q := s.sql(`CREATE SCHEMA IF NOT EXISTS {{schema}};
CREATE TABLE IF NOT EXISTS {{schema}}.keys_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
		var done int
		if err := tx.QueryRow(ctx, s.sql(`SELECT coalesce(max(version), 0) FROM {{schema}}.keys_migrations`)).Scan(&done); err != nil {
			return err
		}
		for v := done + 1; v <= last; v++ {
			if _, err := tx.Exec(ctx, s.sql(migrations[v-1])); err != nil {
				return fmt.Errorf("pgstore: migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, s.sql(`INSERT INTO {{schema}}.keys_migrations (version) VALUES ($1)`), v); err != nil {
				return err
			}
		}
		return nil
	})
}
