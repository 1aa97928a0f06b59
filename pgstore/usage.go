package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys/store"
)

var _ store.UsageStore = (*Store)(nil)

// addUsageSQL adds a batch in one statement: the batch's ID is recorded
// first, and the rows are added only if it was new, so a retried flush
// counts nothing twice. Each minute row is added to its minute, its hour
// and its UTC day, for its key and for the account's total (an empty key_id),
// so that an account's usage reads as many rows as it has buckets and
// APIs, however many keys it has; rows are summed per bucket first, since
// one statement may not update a row twice.
const addUsageSQL = `WITH batch AS (
	INSERT INTO {{schema}}.usage_batches (id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id
), r AS (
	SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[], $7::bigint[], $8::bigint[])
		AS r(account_id, key_id, api, minute, successful, failed, rate_limited)
	WHERE EXISTS (SELECT 1 FROM batch)
), k AS (
	SELECT * FROM r
	UNION ALL SELECT account_id, '', api, minute, successful, failed, rate_limited FROM r
), g AS (
	SELECT 0 AS granularity, minute AS bucket, * FROM k
	UNION ALL SELECT 1, date_trunc('hour', minute, 'UTC'), * FROM k
	UNION ALL SELECT 2, date_trunc('day', minute, 'UTC'), * FROM k
)
INSERT INTO {{schema}}.usage_counts AS u (account_id, granularity, bucket, key_id, api, successful, failed, rate_limited)
SELECT account_id, granularity, bucket, key_id, api, sum(successful), sum(failed), sum(rate_limited)
FROM g GROUP BY account_id, granularity, bucket, key_id, api
ON CONFLICT (account_id, granularity, bucket, key_id, api) DO UPDATE SET
	successful = u.successful + excluded.successful,
	failed = u.failed + excluded.failed,
	rate_limited = u.rate_limited + excluded.rate_limited`

// usageSQL sums an account's buckets in a period by bucket and API: one
// key's rows, or the account's totals (an empty key_id); api filters when given.
// The primary key's prefix (account, granularity, bucket) bounds the read
// to the period.
const usageSQL = `SELECT bucket, api, sum(successful)::bigint, sum(failed)::bigint, sum(rate_limited)::bigint
FROM {{schema}}.usage_counts
WHERE account_id = $1 AND granularity = $2 AND bucket >= $3 AND bucket < $4
	AND key_id = $5 AND ($6 = '' OR api = $6)
GROUP BY bucket, api ORDER BY bucket, api`

// AddUsage implements store.UsageStore, in one statement; once an hour it
// also deletes minute buckets past store.MinuteRetention and batch IDs past 7
// days, a chunk at a time.
func (s *Store) AddUsage(ctx context.Context, b store.UsageBatch) error {
	if s.closed.Load() {
		return ErrClosed
	}
	n := len(b.Rows)
	accounts, keyIDs, apis := make([]string, n), make([]string, n), make([]string, n)
	minutes := make([]time.Time, n)
	succ, fail, lim := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, r := range b.Rows {
		accounts[i], keyIDs[i], apis[i], minutes[i] = r.AccountID, r.KeyID, r.API, r.Bucket.UTC()
		// The failed column counts the failures other than a limit's
		// (the rows of migration 7 kept them apart): the contract's
		// Failed includes RateLimited.
		succ[i], fail[i], lim[i] = r.Successful, r.Failed-r.RateLimited, r.RateLimited
	}
	if _, err := s.exec(ctx, s.sql(addUsageSQL), b.ID, accounts, keyIDs, apis, minutes, succ, fail, lim); err != nil {
		return fmt.Errorf("pgstore: adding usage: %w", err)
	}
	if now, last := time.Now(), s.usageSwept.Load(); now.UnixNano()-last > int64(time.Hour) && s.usageSwept.CompareAndSwap(last, now.UnixNano()) {
		return s.sweepUsage(ctx, now)
	}
	return nil
}

// sweepUsage deletes old minute buckets and batch IDs, 1,000 rows a
// statement, at most 100 statements.
func (s *Store) sweepUsage(ctx context.Context, now time.Time) error {
	for _, q := range []struct {
		sql    string
		before time.Time
	}{
		{`DELETE FROM {{schema}}.usage_counts WHERE ctid IN (SELECT ctid FROM {{schema}}.usage_counts WHERE granularity = 0 AND bucket < $1 LIMIT 1000)`, now.Add(-store.MinuteRetention)},
		{`DELETE FROM {{schema}}.usage_batches WHERE id IN (SELECT id FROM {{schema}}.usage_batches WHERE added_at < $1 LIMIT 1000)`, now.Add(-7 * 24 * time.Hour)},
	} {
		for range 100 {
			tag, err := s.exec(ctx, s.sql(q.sql), q.before)
			if err != nil {
				return fmt.Errorf("pgstore: deleting old usage: %w", err)
			}
			if tag.RowsAffected() < 1000 {
				break
			}
		}
	}
	return nil
}

// Usage implements store.UsageStore.
func (s *Store) Usage(ctx context.Context, q store.UsageQuery) ([]store.UsageRow, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading usage: %w", err)
	}
	defer done()
	rows, err := c.Query(ctx, s.sql(usageSQL), q.AccountID, int16(q.Granularity), q.From.UTC(), q.To.UTC(), q.KeyID, q.API)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading usage: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.UsageRow, error) {
		r := store.UsageRow{AccountID: q.AccountID}
		err := row.Scan(&r.Bucket, &r.API, &r.Successful, &r.Failed, &r.RateLimited)
		r.Bucket, r.Failed = r.Bucket.UTC(), r.Failed+r.RateLimited
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading usage: %w", err)
	}
	return out, nil
}
