package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/store"
)

var _ store.EventStore = (*Store)(nil)

// eventsCTE is the part of a statement that writes a Write's events
// (eleven arrays from parameter $base: id, account, type, key, time,
// actor, request, client address, data, addressee, environment) when cond holds, and a
// delivery of each to every endpoint of its account subscribed to its
// type (or to the one it is addressed to): pending if the endpoint is
// enabled, skipped otherwise. The delivery's ID is store.DeliveryID's.
// It ends with a comma: a statement's final SELECT follows.
func eventsCTE(base int, cond string) string {
	p := func(i int, typ string) string { return "$" + strconv.Itoa(base+i) + "::" + typ + "[]" }
	return `ev AS (
	INSERT INTO {{schema}}.events (id, account_id, type, key_id, ts, actor, request_id, client_ip, data, to_endpoint, environment)
	SELECT * FROM unnest(` + p(0, "text") + `, ` + p(1, "text") + `, ` + p(2, "text") + `, ` + p(3, "text") + `, ` + p(4, "timestamptz") + `, ` +
		p(5, "text") + `, ` + p(6, "text") + `, ` + p(7, "text") + `, ` + p(8, "text") + `, ` + p(9, "text") + `, ` + p(10, "text") + `) WHERE ` + cond + `
	RETURNING id, account_id, type, ts, to_endpoint, environment
), dl AS (
	INSERT INTO {{schema}}.webhook_deliveries (id, event_id, endpoint_id, account_id, status, next_at, created_at, attempts, tries, lease)
	SELECT 'dlv_' || left(encode(sha256(convert_to(ev.id || ':' || e.id, 'UTF8')), 'hex'), 26), ev.id, e.id, ev.account_id,
		CASE WHEN e.enabled THEN 'pending' ELSE 'skipped' END, CASE WHEN e.enabled THEN ev.ts END, ev.ts, '[]', 0, ''
	FROM ev JOIN {{schema}}.webhook_endpoints e ON e.account_id = ev.account_id AND e.environment = ev.environment AND
		CASE WHEN ev.to_endpoint <> '' THEN e.id = ev.to_endpoint ELSE e.events @> ARRAY[ev.type] OR e.events @> ARRAY['*'] END
	ON CONFLICT (id) DO NOTHING
) `
}

// eventArgs are eventsCTE's eleven arrays for evs.
func eventArgs(evs []event.Event) []any {
	n := len(evs)
	ids, accts, types, keys, actors, reqs, ips, data, to, envs := make([]string, n), make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ts := make([]time.Time, n)
	for i, e := range evs {
		ids[i], accts[i], types[i], keys[i], ts[i], actors[i], reqs[i], ips[i], to[i] = e.ID, e.AccountID, string(e.Type), e.KeyID, e.At, e.Actor, e.RequestID, e.ClientIP, e.To
		data[i], envs[i] = string(e.Data), e.Environment
		if data[i] == "" {
			data[i] = "{}"
		}
	}
	return []any{ids, accts, types, keys, ts, actors, reqs, ips, data, to, envs}
}

// writeEvents writes events alone, in one statement.
func (s *Store) writeEvents(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return errors.New("pgstore: an empty Write")
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	_, err = c.Exec(ctx, s.qEvents, eventArgs(evs)...)
	return insertError(err)
}

// writeEndpoint writes an endpoint's change (with its idempotency entry,
// if any, and its events) in one transaction.
func (s *Store) writeEndpoint(ctx context.Context, w store.Write) error {
	if w.Insert != nil || w.Replace != nil || w.Credits != nil {
		return errors.New("pgstore: a Write changes a key or a webhook endpoint, not both")
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if idem := w.Idempotency; idem != nil {
			var n int
			if err := tx.QueryRow(ctx, s.qIdemEndpoint, idem.Scope[:], idem.Fingerprint[:], idem.KeyID, idem.Sealed, idem.CreatedAt, idem.ExpiresAt).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return store.ErrIdempotencyKeyExists
			}
		}
		if e := w.Endpoint; e != nil {
			if err := s.putEndpoint(ctx, tx, e, w.MaxEndpoints); err != nil {
				return err
			}
		}
		if e := w.DeleteEndpoint; e != nil {
			var deleted, exists int
			if err := tx.QueryRow(ctx, s.sql(`WITH d AS (DELETE FROM {{schema}}.webhook_endpoints WHERE id = $1 AND version = $2 RETURNING id),
x AS (DELETE FROM {{schema}}.webhook_deliveries WHERE endpoint_id IN (SELECT id FROM d))
SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM {{schema}}.webhook_endpoints WHERE id = $1)`), e.ID, e.Version).Scan(&deleted, &exists); err != nil {
				return err
			}
			switch {
			case deleted == 1:
			case exists == 0:
				return store.ErrNotFound
			default:
				return fmt.Errorf("pgstore: endpoint %s: %w", e.ID, store.ErrStale)
			}
		}
		if len(w.Events) > 0 {
			if _, err := tx.Exec(ctx, s.qEvents, eventArgs(w.Events)...); err != nil {
				return insertError(err)
			}
		}
		return nil
	})
}

// putEndpoint inserts (Version 1, under the account's cap) or replaces an
// endpoint in tx. The account's endpoints are locked for the count, so
// that concurrent inserts cannot pass the cap together.
func (s *Store) putEndpoint(ctx context.Context, tx pgx.Tx, e *store.Endpoint, maxEndpoints int) error {
	if e.Version == 1 {
		if maxEndpoints > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "txcloud-keys-endpoints:"+s.schema+":"+e.AccountID); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRow(ctx, s.sql(`SELECT count(*) FROM {{schema}}.webhook_endpoints WHERE account_id = $1`), e.AccountID).Scan(&n); err != nil {
				return err
			}
			if n >= maxEndpoints {
				return fmt.Errorf("pgstore: %w", store.ErrEndpointLimit)
			}
		}
		_, err := tx.Exec(ctx, s.sql(`INSERT INTO {{schema}}.webhook_endpoints (id, account_id, url, events, description, enabled, disabled_reason, secret,
	previous_secret, previous_until, created_at, updated_at, environment, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1)`),
			e.ID, e.AccountID, e.URL, nonNil(e.Events), e.Description, e.Enabled, e.DisabledReason, nonNilBytes(e.Secret), e.PreviousSecret,
			nullTime(e.PreviousUntil), e.CreatedAt, e.UpdatedAt, e.Environment)
		return insertError(err)
	}
	tag, err := tx.Exec(ctx, s.sql(`UPDATE {{schema}}.webhook_endpoints SET url = $3, events = $4, description = $5, disabled_reason = $7, secret = $8,
	previous_secret = $9, previous_until = $10, updated_at = $11, version = $2,
	failing_since = CASE WHEN NOT enabled AND $6 THEN NULL ELSE failing_since END, enabled = $6
WHERE id = $1 AND version = $2 - 1`), e.ID, e.Version, e.URL, nonNil(e.Events), e.Description, e.Enabled, e.DisabledReason, nonNilBytes(e.Secret),
		e.PreviousSecret, nullTime(e.PreviousUntil), e.UpdatedAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var v int64
	if err := tx.QueryRow(ctx, s.sql(`SELECT version FROM {{schema}}.webhook_endpoints WHERE id = $1`), e.ID).Scan(&v); errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return fmt.Errorf("pgstore: endpoint %s: %w", e.ID, store.ErrStale)
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Events implements store.EventStore: one index range of the account's
// events (or its key's) read backwards.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]event.Event, error) {
	where, args := []string{"account_id = $1"}, []any{q.AccountID}
	add := func(cond string, v ...any) {
		for _, x := range v {
			args = append(args, x)
			cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(args)), 1)
		}
		where = append(where, cond)
	}
	if q.ID != "" {
		add("id = ?", q.ID)
	}
	if q.Type != "" {
		add("type = ?", string(q.Type))
	}
	if q.KeyID != "" {
		add("key_id = ?", q.KeyID)
	}
	if q.Environment != "" {
		add("environment = ?", q.Environment)
	}
	if !q.Start.IsZero() {
		add("ts >= ?", q.Start)
	}
	if !q.End.IsZero() {
		add("ts < ?", q.End)
	}
	if a := q.After; a != nil {
		add("(ts, id) < (?, ?)", a.CreatedAt, a.ID)
	}
	args = append(args, q.Limit)
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := c.Query(ctx, s.sql(`SELECT id, account_id, type, key_id, environment, ts, actor, request_id, client_ip, data, to_endpoint FROM {{schema}}.events
WHERE `+strings.Join(where, " AND ")+` ORDER BY ts DESC, id DESC LIMIT $`+strconv.Itoa(len(args))), args...)
	if err != nil {
		return nil, err
	}
	out := []event.Event{}
	for rows.Next() {
		var e event.Event
		var typ, data string
		if err := rows.Scan(&e.ID, &e.AccountID, &typ, &e.KeyID, &e.Environment, &e.At, &e.Actor, &e.RequestID, &e.ClientIP, &data, &e.To); err != nil {
			rows.Close()
			return nil, err
		}
		e.Type, e.At, e.Data = event.Type(typ), e.At.UTC(), []byte(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneEvents implements store.EventStore: 10,000 events, and 10,000
// deliveries, a statement, until none is older than before.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) error {
	for {
		c, cctx, done, err := s.conn(ctx)
		if err != nil {
			return err
		}
		t1, err := c.Exec(cctx, s.sql(`DELETE FROM {{schema}}.webhook_deliveries WHERE id IN (
	SELECT id FROM {{schema}}.webhook_deliveries WHERE created_at < $1 ORDER BY created_at LIMIT 10000)`), before)
		var t2 int64
		if err == nil {
			var tag2 interface{ RowsAffected() int64 }
			tag2, err = c.Exec(cctx, s.sql(`DELETE FROM {{schema}}.events WHERE id IN (
	SELECT id FROM {{schema}}.events WHERE ts < $1 ORDER BY ts LIMIT 10000)`), before)
			if err == nil {
				t2 = tag2.RowsAffected()
			}
		}
		done()
		if err != nil || t1.RowsAffected() < 10000 && t2 < 10000 {
			return err
		}
	}
}

const endpointCols = `id, account_id, environment, url, events, description, enabled, disabled_reason, secret, previous_secret, previous_until, created_at, updated_at, failing_since, version`

func scanEndpoints(rows pgx.Rows, err error) ([]*store.Endpoint, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*store.Endpoint{}
	for rows.Next() {
		var e store.Endpoint
		var prevUntil, failing *time.Time
		if err := rows.Scan(&e.ID, &e.AccountID, &e.Environment, &e.URL, &e.Events, &e.Description, &e.Enabled, &e.DisabledReason, &e.Secret, &e.PreviousSecret,
			&prevUntil, &e.CreatedAt, &e.UpdatedAt, &failing, &e.Version); err != nil {
			return nil, err
		}
		if prevUntil != nil {
			e.PreviousUntil = prevUntil.UTC()
		}
		if failing != nil {
			e.FailingSince = failing.UTC()
		}
		e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
		out = append(out, &e)
	}
	return out, rows.Err()
}

// Endpoints implements store.EventStore.
func (s *Store) Endpoints(ctx context.Context, accountID string) ([]*store.Endpoint, error) {
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return scanEndpoints(c.Query(ctx, s.sql(`SELECT `+endpointCols+` FROM {{schema}}.webhook_endpoints WHERE account_id = $1 ORDER BY created_at, id`), accountID))
}

// Endpoint implements store.EventStore.
func (s *Store) Endpoint(ctx context.Context, id string) (*store.Endpoint, error) {
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	eps, err := scanEndpoints(c.Query(ctx, s.sql(`SELECT `+endpointCols+` FROM {{schema}}.webhook_endpoints WHERE id = $1`), id))
	switch {
	case err != nil:
		return nil, err
	case len(eps) == 0:
		return nil, store.ErrNotFound
	}
	return eps[0], nil
}

const deliveryCols = `id, event_id, endpoint_id, account_id, status, next_at, created_at, attempts, tries, lease, lease_until`

func scanDeliveries(rows pgx.Rows, err error) ([]*store.Delivery, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*store.Delivery{}
	for rows.Next() {
		var d store.Delivery
		var status, attempts string
		var next, leaseUntil *time.Time
		if err := rows.Scan(&d.ID, &d.EventID, &d.EndpointID, &d.AccountID, &status, &next, &d.CreatedAt, &attempts, &d.Tries, &d.Lease, &leaseUntil); err != nil {
			return nil, err
		}
		if d.Attempts, err = store.DecodeAttempts([]byte(attempts)); err != nil {
			return nil, err
		}
		d.Status, d.CreatedAt = store.DeliveryStatus(status), d.CreatedAt.UTC()
		if next != nil {
			d.NextAt = next.UTC()
		}
		if leaseUntil != nil {
			d.LeaseUntil = leaseUntil.UTC()
		}
		out = append(out, &d)
	}
	return out, rows.Err()
}

// ClaimDeliveries implements store.EventStore in one statement: of the
// store.ClaimWindow oldest due deliveries (an index range of the pending
// ones), PerEndpoint at most of each endpoint not skipped,
// leased if no other claim took them first. Two instances claiming at
// once may pick the same rows: the UPDATE locks each row and checks its
// lease again once the other's commit is visible, so the second skips it.
func (s *Store) ClaimDeliveries(ctx context.Context, cl store.Claim) ([]*store.Delivery, error) {
	per := cl.PerEndpoint
	if per <= 0 {
		per = cl.Limit
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	ds, err := scanDeliveries(c.Query(ctx, s.sql(`WITH due AS (
	SELECT id FROM (
		SELECT id, next_at, row_number() OVER (PARTITION BY endpoint_id ORDER BY next_at, id) AS n FROM (
			SELECT id, endpoint_id, next_at FROM {{schema}}.webhook_deliveries
			WHERE status = 'pending' AND next_at <= $1 AND (lease_until IS NULL OR lease_until <= $1) AND NOT (endpoint_id = ANY($2))
			ORDER BY next_at, id LIMIT `+strconv.Itoa(store.ClaimWindow)+`
		) w
	) d WHERE n <= $3 ORDER BY next_at, id LIMIT $4
)
UPDATE {{schema}}.webhook_deliveries w SET lease = $5, lease_until = $6 FROM due
WHERE w.id = due.id AND w.status = 'pending' AND (w.lease_until IS NULL OR w.lease_until <= $1)
RETURNING w.id, w.event_id, w.endpoint_id, w.account_id, w.status, w.next_at, w.created_at, w.attempts, w.tries, w.lease, w.lease_until`),
		cl.Now, nonNil(cl.Skip), per, cl.Limit, cl.Lease, cl.Until))
	if err != nil {
		return nil, err
	}
	sort.Slice(ds, func(i, j int) bool {
		return ds[i].NextAt.Before(ds[j].NextAt) || ds[i].NextAt.Equal(ds[j].NextAt) && ds[i].ID < ds[j].ID
	})
	return ds, nil
}

// FinishDelivery implements store.EventStore in one statement: the
// delivery, if this claim still holds it, and its endpoint's health.
func (s *Store) FinishDelivery(ctx context.Context, d *store.Delivery) (time.Time, error) {
	var ok bool
	var at time.Time
	if n := len(d.Attempts); n > 0 {
		last := d.Attempts[n-1]
		ok, at = last.Code >= 200 && last.Code < 300, last.At
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer done()
	var finished, changed int
	var after, before *time.Time
	err = c.QueryRow(ctx, s.sql(`WITH d AS (
	UPDATE {{schema}}.webhook_deliveries SET status = $3, next_at = $4, attempts = $5, tries = $6, lease = '', lease_until = NULL
	WHERE id = $1 AND lease = $2 AND lease <> '' RETURNING endpoint_id
), e AS (
	UPDATE {{schema}}.webhook_endpoints SET failing_since = CASE WHEN $7 THEN NULL ELSE coalesce(failing_since, $8) END
	WHERE id = (SELECT endpoint_id FROM d) AND $9 RETURNING failing_since
)
SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM e), (SELECT failing_since FROM e),
	(SELECT failing_since FROM {{schema}}.webhook_endpoints WHERE id = $10)`),
		d.ID, d.Lease, string(d.Status), nullTime(d.NextAt), string(store.EncodeAttempts(d.Attempts)), d.Tries, ok, at, len(d.Attempts) > 0, d.EndpointID).
		Scan(&finished, &changed, &after, &before)
	switch {
	case err != nil:
		return time.Time{}, err
	case finished == 0:
		return time.Time{}, fmt.Errorf("pgstore: delivery %s: %w", d.ID, store.ErrStale)
	}
	f := before
	if changed == 1 {
		f = after
	}
	if f == nil {
		return time.Time{}, nil
	}
	return f.UTC(), nil
}

// Deliveries implements store.EventStore.
func (s *Store) Deliveries(ctx context.Context, q store.DeliveryQuery) ([]*store.Delivery, error) {
	where, args := []string{"endpoint_id = $1"}, []any{q.EndpointID}
	if q.ID != "" {
		args = append(args, q.ID)
		where = append(where, "id = $"+strconv.Itoa(len(args)))
	}
	if q.EventID != "" {
		args = append(args, q.EventID)
		where = append(where, "event_id = $"+strconv.Itoa(len(args)))
	}
	if a := q.After; a != nil {
		args = append(args, a.CreatedAt, a.ID)
		where = append(where, "(created_at, id) < ($"+strconv.Itoa(len(args)-1)+", $"+strconv.Itoa(len(args))+")")
	}
	args = append(args, q.Limit)
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return scanDeliveries(c.Query(ctx, s.sql(`SELECT `+deliveryCols+` FROM {{schema}}.webhook_deliveries WHERE `+strings.Join(where, " AND ")+`
ORDER BY created_at DESC, id DESC LIMIT $`+strconv.Itoa(len(args))), args...))
}

// RetryDelivery implements store.EventStore.
func (s *Store) RetryDelivery(ctx context.Context, id string, at time.Time) error {
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	var changed, exists int
	if err := c.QueryRow(ctx, s.sql(`WITH u AS (
	UPDATE {{schema}}.webhook_deliveries SET status = 'pending', next_at = $2, lease = '', lease_until = NULL
	WHERE id = $1 AND (lease_until IS NULL OR lease_until <= $2) RETURNING 1
) SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM {{schema}}.webhook_deliveries WHERE id = $1)`), id, at).Scan(&changed, &exists); err != nil {
		return err
	}
	switch {
	case changed == 1:
		return nil
	case exists == 0:
		return store.ErrNotFound
	}
	return fmt.Errorf("pgstore: delivery %s is being attempted: %w", id, store.ErrStale)
}
