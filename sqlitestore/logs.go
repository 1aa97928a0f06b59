package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

var _ store.LogStore = (*Store)(nil)

// LogWindow is how many request-log entries the file keeps per account
// at most (besides the Manager's daily cap and retention): the oldest
// past it are deleted, so one account's flood costs only its own older
// entries, and the file stays bounded by the accounts it serves. An
// entry takes about 300 bytes with its indexes: a full window, 30 MB.
const LogWindow = 100_000

// logWindow is LogWindow (tests lower it).
var logWindow int64 = LogWindow

func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

// AddLogs implements store.LogStore in one transaction: the batch's ID,
// the accounts' daily counts (past MaxPerDay an entry is dropped), the
// entries kept, then each account's window.
func (s *Store) AddLogs(ctx context.Context, b store.LogBatch) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if len(b.Entries) == 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	res, err := tx.ExecContext(ctx, `INSERT INTO request_log_batches (id, added_at) VALUES (?, ?) ON CONFLICT DO NOTHING`, b.ID, time.Now().UnixNano())
	if err != nil {
		return 0, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return 0, err // added before
	}
	count, err := tx.PrepareContext(ctx, `INSERT INTO request_log_counts (account_id, day, n) VALUES (?, ?, 1)
ON CONFLICT (account_id, day) DO UPDATE SET n = n + 1 WHERE n < ? RETURNING n`)
	if err != nil {
		return 0, err
	}
	defer count.Close()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO request_logs (ts, account_id, request_id, key_id, environment, method, path, api, status,
	error_type, error_code, limit_name, latency_us, ip, user_agent, request_bytes, response_bytes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	dropped := 0
	added := map[string]int64{}
	for i := range b.Entries {
		e := &b.Entries[i]
		var n int64
		switch err := count.QueryRowContext(ctx, e.AccountID, dayOf(e.Timestamp), b.MaxPerDay).Scan(&n); {
		case err == sql.ErrNoRows: // at the cap: not counted, not kept
			dropped++
			continue
		case err != nil:
			return 0, err
		}
		ip := ""
		if e.IP.IsValid() {
			ip = e.IP.String()
		}
		if _, err := ins.ExecContext(ctx, e.Timestamp.UnixNano(), e.AccountID, e.RequestID, e.KeyID, e.Environment, e.Method, e.Path, e.API,
			e.Status, e.ErrorType, e.ErrorCode, e.Limit, e.Latency.Microseconds(), ip, e.UserAgent, e.RequestBytes, e.ResponseBytes); err != nil {
			return 0, err
		}
		added[e.AccountID]++
	}
	for acct, n := range added {
		var total int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO request_log_totals (account_id, n) VALUES (?, ?)
ON CONFLICT (account_id) DO UPDATE SET n = n + excluded.n RETURNING n`, acct, n).Scan(&total); err != nil {
			return 0, err
		}
		if total > logWindow+logWindow/10 { // trimmed now and then, not at every batch
			if _, err := tx.ExecContext(ctx, `DELETE FROM request_logs WHERE rowid IN (
	SELECT rowid FROM request_logs WHERE account_id = ? ORDER BY ts, request_id LIMIT ?)`, acct, total-logWindow); err != nil {
				return 0, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE request_log_totals SET n = ? WHERE account_id = ?`, logWindow, acct); err != nil {
				return 0, err
			}
		}
	}
	return dropped, tx.Commit()
}

// Logs implements store.LogStore, along the indexes newest first.
func (s *Store) Logs(ctx context.Context, q store.LogQuery) ([]reqlog.Entry, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	query, args := logsSQL(q)
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: reading request logs: %w", err)
	}
	defer rows.Close()
	out := []reqlog.Entry{}
	for rows.Next() {
		e := reqlog.Entry{AccountID: q.AccountID}
		var ts, latency int64
		var ip string
		if err := rows.Scan(&ts, &e.RequestID, &e.KeyID, &e.Environment, &e.Method, &e.Path, &e.API, &e.Status, &e.ErrorType,
			&e.ErrorCode, &e.Limit, &latency, &ip, &e.UserAgent, &e.RequestBytes, &e.ResponseBytes); err != nil {
			return nil, fmt.Errorf("sqlitestore: reading request logs: %w", err)
		}
		e.Timestamp, e.Latency = fromNanos(ts), time.Duration(latency)*time.Microsecond
		if ip != "" {
			if e.IP, err = netip.ParseAddr(ip); err != nil {
				return nil, fmt.Errorf("sqlitestore: reading request logs: %w", err)
			}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneLogs implements store.LogStore: it deletes entries older than
// before, 10,000 at a time (so that no one transaction holds the file
// for long), and the counts and batch IDs past their use.
func (s *Store) PruneLogs(ctx context.Context, before time.Time) error {
	if s.closed.Load() {
		return ErrClosed
	}
	for {
		res, err := s.db.ExecContext(ctx, `DELETE FROM request_logs WHERE rowid IN (SELECT rowid FROM request_logs WHERE ts < ? ORDER BY ts LIMIT 10000)`, before.UnixNano())
		if err != nil {
			return fmt.Errorf("sqlitestore: pruning request logs: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n < 10000 {
			break
		}
	}
	// The windows' totals, counted again (one pass over the index).
	for _, q := range []string{
		`UPDATE request_log_totals SET n = (SELECT count(*) FROM request_logs WHERE request_logs.account_id = request_log_totals.account_id)`,
		`DELETE FROM request_log_totals WHERE n = 0`,
	} {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlitestore: pruning request logs: %w", err)
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM request_log_counts WHERE day < ?`, dayOf(before)-1); err != nil {
		return fmt.Errorf("sqlitestore: pruning request logs: %w", err)
	}
	_, err := s.db.ExecContext(ctx, `DELETE FROM request_log_batches WHERE added_at < ?`, time.Now().Add(-8*24*time.Hour).UnixNano())
	return err
}

// logsSQL is the statement of q, along the indexes newest first.
func logsSQL(q store.LogQuery) (string, []any) {
	var b strings.Builder
	args := []any{q.AccountID}
	b.WriteString(`SELECT ts, request_id, key_id, environment, method, path, api, status, error_type, error_code, limit_name,
	latency_us, ip, user_agent, request_bytes, response_bytes FROM request_logs WHERE account_id = ?`)
	add := func(cond string, vs ...any) {
		b.WriteString(" AND " + cond)
		args = append(args, vs...)
	}
	if q.KeyID != "" {
		add("key_id = ?", q.KeyID)
	}
	if !q.Start.IsZero() {
		add("ts >= ?", q.Start.UnixNano())
	}
	if !q.End.IsZero() {
		add("ts < ?", q.End.UnixNano())
	}
	if q.After != nil {
		add("(ts, request_id) < (?, ?)", q.After.Timestamp.UnixNano(), q.After.RequestID)
	}
	if q.Status.Min != 0 {
		add("status BETWEEN ? AND ?", q.Status.Min, q.Status.Max)
		if q.Status.Min >= 400 {
			add("status >= 400") // a constant: SQLite uses a partial index only when the query implies its WHERE
		}
	}
	if q.Method != "" {
		add("method = ?", q.Method)
	}
	if q.API != "" {
		add("api = ?", q.API)
	}
	if q.RequestID != "" {
		add("request_id = ?", q.RequestID)
	}
	if q.Environment != "" {
		add("environment = ?", q.Environment)
	}
	b.WriteString(" ORDER BY ts DESC, request_id DESC LIMIT ?")
	args = append(args, q.Limit)
	return b.String(), args
}
