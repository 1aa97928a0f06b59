package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/store"
)

var _ store.EventStore = (*Store)(nil)

// writeEvents applies w's endpoint change and events in tx: the endpoint
// first (checked against its version and the account's cap), then each
// event with its deliveries.
func writeEvents(ctx context.Context, tx *sql.Tx, w *store.Write) error {
	if e := w.Endpoint; e != nil {
		if err := putEndpoint(ctx, tx, e, w.MaxEndpoints); err != nil {
			return err
		}
	}
	if e := w.DeleteEndpoint; e != nil {
		var v int64
		err := tx.QueryRowContext(ctx, `SELECT version FROM webhook_endpoints WHERE id = ?`, e.ID).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return store.ErrNotFound
		case err != nil:
			return err
		case v != e.Version:
			return fmt.Errorf("sqlitestore: endpoint %s: %w", e.ID, store.ErrStale)
		}
		for _, q := range []string{`DELETE FROM webhook_deliveries WHERE endpoint_id = ?`, `DELETE FROM webhook_endpoints WHERE id = ?`} {
			if _, err := tx.ExecContext(ctx, q, e.ID); err != nil {
				return err
			}
		}
	}
	accounts := map[string][]*store.Endpoint{}
	for i := range w.Events {
		e := &w.Events[i]
		if _, err := tx.ExecContext(ctx, `INSERT INTO events (id, account_id, type, key_id, environment, ts, actor, request_id, client_ip, data, to_endpoint)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, e.ID, e.AccountID, string(e.Type), e.KeyID, e.Environment, e.At.UnixNano(), e.Actor, e.RequestID, e.ClientIP, dataText(e.Data), e.To); err != nil {
			return insertError(err)
		}
		eps, ok := accounts[e.AccountID]
		if !ok {
			var err error
			if eps, err = endpointsIn(ctx, tx, e.AccountID); err != nil {
				return err
			}
			accounts[e.AccountID] = eps
		}
		for _, d := range store.NewDeliveries(e, eps) {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO webhook_deliveries (id, event_id, endpoint_id, account_id, status, next_at, created_at, attempts, tries, lease, lease_until)
VALUES (?, ?, ?, ?, ?, ?, ?, '[]', 0, '', 0)`, d.ID, d.EventID, d.EndpointID, d.AccountID, string(d.Status), nanos(d.NextAt), d.CreatedAt.UnixNano()); err != nil {
				return err
			}
		}
	}
	return nil
}

func dataText(d json.RawMessage) string {
	if len(d) == 0 {
		return "{}"
	}
	return string(d)
}

// nanos is t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanosOrZero(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return fromNanos(n)
}

func putEndpoint(ctx context.Context, tx *sql.Tx, e *store.Endpoint, maxEndpoints int) error {
	types, err := json.Marshal(e.Events)
	if err != nil {
		return err
	}
	if e.Version == 1 {
		if maxEndpoints > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM webhook_endpoints WHERE account_id = ?`, e.AccountID).Scan(&n); err != nil {
				return err
			}
			if n >= maxEndpoints {
				return fmt.Errorf("sqlitestore: %w", store.ErrEndpointLimit)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO webhook_endpoints (id, account_id, environment, url, events, description, enabled, disabled_reason, secret, previous_secret, previous_until, created_at, updated_at, failing_since, version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 1)`, e.ID, e.AccountID, e.Environment, e.URL, string(types), e.Description, e.Enabled, e.DisabledReason,
			nonNilBytes(e.Secret), e.PreviousSecret, toNull(e.PreviousUntil), e.CreatedAt.UnixNano(), e.UpdatedAt.UnixNano())
		return insertError(err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET url = ?, events = ?, description = ?, disabled_reason = ?, secret = ?, previous_secret = ?,
	previous_until = ?, updated_at = ?, version = ?, failing_since = CASE WHEN enabled = 0 AND ? THEN NULL ELSE failing_since END, enabled = ?
WHERE id = ? AND version = ?`, e.URL, string(types), e.Description, e.DisabledReason, nonNilBytes(e.Secret), e.PreviousSecret,
		toNull(e.PreviousUntil), e.UpdatedAt.UnixNano(), e.Version, e.Enabled, e.Enabled, e.ID, e.Version-1)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var v int64
	if err := tx.QueryRowContext(ctx, `SELECT version FROM webhook_endpoints WHERE id = ?`, e.ID).Scan(&v); errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return fmt.Errorf("sqlitestore: endpoint %s: %w", e.ID, store.ErrStale)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

const endpointCols = `id, account_id, environment, url, events, description, enabled, disabled_reason, secret, previous_secret, previous_until, created_at, updated_at, failing_since, version`

func endpointsIn(ctx context.Context, q querier, account string) ([]*store.Endpoint, error) {
	return scanEndpoints(q.QueryContext(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE account_id = ? ORDER BY created_at, id`, account))
}

func scanEndpoints(rows *sql.Rows, err error) ([]*store.Endpoint, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*store.Endpoint{}
	for rows.Next() {
		var e store.Endpoint
		var types string
		var prevUntil, failing sql.NullInt64
		var created, updated int64
		if err := rows.Scan(&e.ID, &e.AccountID, &e.Environment, &e.URL, &types, &e.Description, &e.Enabled, &e.DisabledReason, &e.Secret, &e.PreviousSecret,
			&prevUntil, &created, &updated, &failing, &e.Version); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(types), &e.Events); err != nil {
			return nil, err
		}
		e.PreviousUntil, e.FailingSince = fromNull(prevUntil), fromNull(failing)
		e.CreatedAt, e.UpdatedAt = fromNanos(created), fromNanos(updated)
		out = append(out, &e)
	}
	return out, rows.Err()
}

// Events implements store.EventStore.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]event.Event, error) {
	where, args := []string{"account_id = ?"}, []any{q.AccountID}
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
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
		add("ts >= ?", q.Start.UnixNano())
	}
	if !q.End.IsZero() {
		add("ts < ?", q.End.UnixNano())
	}
	if a := q.After; a != nil {
		where = append(where, "(ts < ? OR ts = ? AND id < ?)")
		args = append(args, a.CreatedAt.UnixNano(), a.CreatedAt.UnixNano(), a.ID)
	}
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, `SELECT id, account_id, type, key_id, environment, ts, actor, request_id, client_ip, data, to_endpoint FROM events
WHERE `+strings.Join(where, " AND ")+` ORDER BY ts DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []event.Event{}
	for rows.Next() {
		var e event.Event
		var typ, data string
		var ts int64
		if err := rows.Scan(&e.ID, &e.AccountID, &typ, &e.KeyID, &e.Environment, &ts, &e.Actor, &e.RequestID, &e.ClientIP, &data, &e.To); err != nil {
			return nil, err
		}
		e.Type, e.At, e.Data = event.Type(typ), fromNanos(ts), json.RawMessage(data)
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneEvents implements store.EventStore: 10,000 events (and their
// deliveries) a statement, until none is older than before.
func (s *Store) PruneEvents(ctx context.Context, before time.Time) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.wmu.Lock()
		res, err := s.db.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE created_at < ? AND id IN (SELECT id FROM webhook_deliveries WHERE created_at < ? LIMIT 10000)`, before.UnixNano(), before.UnixNano())
		var n1, n2 int64
		if err == nil {
			n1, _ = res.RowsAffected()
			res, err = s.db.ExecContext(ctx, `DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts < ? ORDER BY ts LIMIT 10000)`, before.UnixNano())
			if err == nil {
				n2, _ = res.RowsAffected()
			}
		}
		s.wmu.Unlock()
		if err != nil || n1 < 10000 && n2 < 10000 {
			return err
		}
	}
}

// Endpoints implements store.EventStore.
func (s *Store) Endpoints(ctx context.Context, accountID string) ([]*store.Endpoint, error) {
	return endpointsIn(ctx, s.db, accountID)
}

// Endpoint implements store.EventStore.
func (s *Store) Endpoint(ctx context.Context, id string) (*store.Endpoint, error) {
	eps, err := scanEndpoints(s.db.QueryContext(ctx, `SELECT `+endpointCols+` FROM webhook_endpoints WHERE id = ?`, id))
	switch {
	case err != nil:
		return nil, err
	case len(eps) == 0:
		return nil, store.ErrNotFound
	}
	return eps[0], nil
}

const deliveryCols = `id, event_id, endpoint_id, account_id, status, next_at, created_at, attempts, tries, lease, lease_until`

func scanDeliveries(rows *sql.Rows, err error) ([]*store.Delivery, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*store.Delivery{}
	for rows.Next() {
		var d store.Delivery
		var status, attempts string
		var next, created, leaseUntil int64
		if err := rows.Scan(&d.ID, &d.EventID, &d.EndpointID, &d.AccountID, &status, &next, &created, &attempts, &d.Tries, &d.Lease, &leaseUntil); err != nil {
			return nil, err
		}
		if d.Attempts, err = store.DecodeAttempts([]byte(attempts)); err != nil {
			return nil, err
		}
		d.Status, d.NextAt, d.CreatedAt, d.LeaseUntil = store.DeliveryStatus(status), fromNanosOrZero(next), fromNanos(created), fromNanosOrZero(leaseUntil)
		out = append(out, &d)
	}
	return out, rows.Err()
}

// ClaimDeliveries implements store.EventStore. The file has one writer
// (this process), so a transaction under the write lock is the claim.
func (s *Store) ClaimDeliveries(ctx context.Context, c store.Claim) ([]*store.Delivery, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	// Of the store.ClaimWindow oldest due deliveries (of the endpoints not
	// skipped), at most PerEndpoint of each endpoint: a claim's cost stays
	// bounded, and an endpoint with thousands due hides no other's once
	// it is skipped.
	args := []any{c.Now.UnixNano(), c.Now.UnixNano()}
	skip := ""
	if len(c.Skip) > 0 {
		skip = " AND endpoint_id NOT IN (?" + strings.Repeat(", ?", len(c.Skip)-1) + ")"
		for _, id := range c.Skip {
			args = append(args, id)
		}
	}
	per := c.PerEndpoint
	if per <= 0 {
		per = c.Limit
	}
	args = append(args, per, c.Limit)
	due, err := scanDeliveries(tx.QueryContext(ctx, `SELECT `+deliveryCols+` FROM (
	SELECT `+deliveryCols+`, row_number() OVER (PARTITION BY endpoint_id ORDER BY next_at, id) AS n FROM (
		SELECT `+deliveryCols+` FROM webhook_deliveries WHERE status = 'pending' AND next_at <= ? AND lease_until <= ?`+skip+`
		ORDER BY next_at, id LIMIT `+strconv.Itoa(store.ClaimWindow)+`))
WHERE n <= ? ORDER BY next_at, id LIMIT ?`, args...))
	if err != nil {
		return nil, err
	}
	var out []*store.Delivery
	for _, d := range due {
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET lease = ?, lease_until = ? WHERE id = ?`, c.Lease, c.Until.UnixNano(), d.ID); err != nil {
			return nil, err
		}
		d.Lease, d.LeaseUntil = c.Lease, c.Until
		out = append(out, d)
	}
	return out, tx.Commit()
}

// FinishDelivery implements store.EventStore.
func (s *Store) FinishDelivery(ctx context.Context, d *store.Delivery) (time.Time, error) {
	b := store.EncodeAttempts(d.Attempts)
	attempts := d.Attempts
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return time.Time{}, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, next_at = ?, attempts = ?, tries = ?, lease = '', lease_until = 0
WHERE id = ? AND lease = ? AND lease <> ''`, string(d.Status), nanos(d.NextAt), string(b), d.Tries, d.ID, d.Lease)
	if err != nil {
		return time.Time{}, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return time.Time{}, fmt.Errorf("sqlitestore: delivery %s: %w", d.ID, store.ErrStale)
	}
	if len(attempts) > 0 {
		last := attempts[len(attempts)-1]
		if last.Code >= 200 && last.Code < 300 {
			_, err = tx.ExecContext(ctx, `UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?`, d.EndpointID)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, ?) WHERE id = ?`, last.At.UnixNano(), d.EndpointID)
		}
		if err != nil {
			return time.Time{}, err
		}
	}
	var failing sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT failing_since FROM webhook_endpoints WHERE id = ?`, d.EndpointID).Scan(&failing); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, err
	}
	return fromNull(failing), tx.Commit()
}

// Deliveries implements store.EventStore.
func (s *Store) Deliveries(ctx context.Context, q store.DeliveryQuery) ([]*store.Delivery, error) {
	where, args := []string{"endpoint_id = ?"}, []any{q.EndpointID}
	if q.ID != "" {
		where, args = append(where, "id = ?"), append(args, q.ID)
	}
	if q.EventID != "" {
		where, args = append(where, "event_id = ?"), append(args, q.EventID)
	}
	if a := q.After; a != nil {
		where = append(where, "(created_at < ? OR created_at = ? AND id < ?)")
		args = append(args, a.CreatedAt.UnixNano(), a.CreatedAt.UnixNano(), a.ID)
	}
	args = append(args, q.Limit)
	return scanDeliveries(s.db.QueryContext(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries WHERE `+strings.Join(where, " AND ")+`
ORDER BY created_at DESC, id DESC LIMIT ?`, args...))
}

// RetryDelivery implements store.EventStore.
func (s *Store) RetryDelivery(ctx context.Context, id string, at time.Time) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	res, err := s.db.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'pending', next_at = ?, lease = '', lease_until = 0 WHERE id = ? AND lease_until <= ?`,
		at.UnixNano(), id, at.UnixNano())
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var x int
	if err := s.db.QueryRowContext(ctx, `SELECT 1 FROM webhook_deliveries WHERE id = ?`, id).Scan(&x); errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return fmt.Errorf("sqlitestore: delivery %s is being attempted: %w", id, store.ErrStale)
}
