package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

var _ store.LogStore = (*Store)(nil)

// logColumns are request_logs' columns, in COPY's order.
var logColumns = []string{"ts", "account_id", "request_id", "key_id", "environment", "method", "path", "api", "status",
	"error_type", "error_code", "limit_name", "latency_us", "ip", "user_agent", "request_bytes", "response_bytes"}

// logDays remembers the days whose partition exists, so that AddLogs
// creates each one statement once per instance.
type logDays struct {
	mu   sync.Mutex
	days map[int64]bool // days since 1970
}

func (d *logDays) has(day int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.days[day]
}

func (d *logDays) set(day int64, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.days == nil {
		d.days = map[int64]bool{}
	}
	if ok {
		d.days[day] = true
	} else {
		delete(d.days, day)
	}
}

func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

// partitionName is a day's partition of request_logs.
func partitionName(day int64) string {
	return "request_logs_p" + time.Unix(day*86400, 0).UTC().Format("20060102")
}

// ensurePartitions creates the partitions of the days of es that this
// instance has not seen yet, under an advisory lock (instances creating
// one day at once would otherwise race in the catalog).
func (s *Store) ensurePartitions(ctx context.Context, es []reqlog.Entry) error {
	var missing []int64
	for i := range es {
		if d := dayOf(es[i].Timestamp); !s.logDays.has(d) && !containsDay(missing, d) {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('txcloud-keys-log-partitions:' || $1))`, s.schema); err != nil {
			return err
		}
		for _, d := range missing {
			from := time.Unix(d*86400, 0).UTC()
			q := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s.%s PARTITION OF %s.request_logs FOR VALUES FROM ('%s') TO ('%s')`,
				s.quoted, pgx.Identifier{partitionName(d)}.Sanitize(), s.quoted, from.Format(time.RFC3339), from.Add(24*time.Hour).Format(time.RFC3339))
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range missing {
		s.logDays.set(d, true)
	}
	return nil
}

func containsDay(days []int64, d int64) bool {
	for _, x := range days {
		if x == d {
			return true
		}
	}
	return false
}

// AddLogs implements store.LogStore in one transaction: the batch's ID
// (a batch seen before adds nothing), the accounts' counts of the day
// (past MaxPerDay an entry is dropped), then one COPY of the entries
// kept. A partition pruned by another instance since this one created it
// is created again, once.
func (s *Store) AddLogs(ctx context.Context, b store.LogBatch) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	if len(b.Entries) == 0 {
		return 0, nil
	}
	dropped, err := s.addLogs(ctx, b)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23514" { // no partition for a row: pruned since
		s.logDays = logDays{}
		dropped, err = s.addLogs(ctx, b)
	}
	if err != nil {
		return 0, fmt.Errorf("pgstore: adding request logs: %w", err)
	}
	if now, last := time.Now(), s.logsSwept.Load(); now.UnixNano()-last > int64(time.Hour) && s.logsSwept.CompareAndSwap(last, now.UnixNano()) {
		if _, err := s.exec(ctx, s.sql(`DELETE FROM {{schema}}.request_log_batches WHERE id IN (
	SELECT id FROM {{schema}}.request_log_batches WHERE added_at < now() - interval '8 days' LIMIT 10000)`)); err != nil {
			return dropped, fmt.Errorf("pgstore: sweeping request-log batches: %w", err)
		}
	}
	return dropped, nil
}

func (s *Store) addLogs(ctx context.Context, b store.LogBatch) (int, error) {
	if err := s.ensurePartitions(ctx, b.Entries); err != nil {
		return 0, err
	}
	// The batch's counts by account and day, in the order first seen.
	type group struct {
		account string
		day     int64
		n       int64
		allowed int64
	}
	var groups []group
	index := map[[2]string]int{}
	for i := range b.Entries {
		e := &b.Entries[i]
		k := [2]string{e.AccountID, strconv.FormatInt(dayOf(e.Timestamp), 10)}
		g, ok := index[k]
		if !ok {
			g = len(groups)
			index[k] = g
			groups = append(groups, group{account: e.AccountID, day: dayOf(e.Timestamp)})
		}
		groups[g].n++
	}
	accounts, days, ns := make([]string, len(groups)), make([]time.Time, len(groups)), make([]int64, len(groups))
	for i, g := range groups {
		accounts[i], days[i], ns[i] = g.account, time.Unix(g.day*86400, 0).UTC(), g.n
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	dropped := 0
	err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, s.sql(`INSERT INTO {{schema}}.request_log_batches (id) VALUES ($1) ON CONFLICT DO NOTHING`), b.ID)
		if err != nil || tag.RowsAffected() == 0 {
			return err // added before: nothing to do
		}
		rows, err := tx.Query(ctx, s.sql(`INSERT INTO {{schema}}.request_log_counts AS c (account_id, day, n)
SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[])
ON CONFLICT (account_id, day) DO UPDATE SET n = c.n + excluded.n
RETURNING account_id, day, n`), accounts, days, ns)
		if err != nil {
			return err
		}
		for rows.Next() {
			var acct string
			var day time.Time
			var total int64
			if err := rows.Scan(&acct, &day, &total); err != nil {
				return err
			}
			g := &groups[index[[2]string{acct, strconv.FormatInt(dayOf(day), 10)}]]
			g.allowed = max(0, min(g.n, int64(b.MaxPerDay)-(total-g.n)))
		}
		if err := rows.Err(); err != nil {
			return err
		}
		n := 0
		_, err = tx.CopyFrom(ctx, pgx.Identifier{s.schema, "request_logs"}, logColumns, pgx.CopyFromFunc(func() ([]any, error) {
			for n < len(b.Entries) {
				e := &b.Entries[n]
				n++
				g := &groups[index[[2]string{e.AccountID, strconv.FormatInt(dayOf(e.Timestamp), 10)}]]
				if g.allowed == 0 {
					dropped++
					continue
				}
				g.allowed--
				return logRow(e), nil
			}
			return nil, nil
		}))
		return err
	})
	if err != nil {
		return 0, err
	}
	return dropped, nil
}

// logRow is an entry as request_logs' columns.
func logRow(e *reqlog.Entry) []any {
	var ip any
	if e.IP.IsValid() {
		ip = e.IP
	}
	return []any{e.Timestamp, e.AccountID, e.RequestID, e.KeyID, e.Environment, e.Method, e.Path, e.API, int16(e.Status),
		e.ErrorType, e.ErrorCode, e.Limit, e.Latency.Microseconds(), ip, e.UserAgent, e.RequestBytes, e.ResponseBytes}
}

// logsSQL is the query of q: the account's entries (of one key, when
// named) newest first, read backwards along request_logs_account_time or
// request_logs_account_key_time (their partial twins of the failed
// requests when the status asked for is 400 or more), so a page reads
// the rows it returns and those its other filters skip, never the
// account's others, nor sorts.
func (s *Store) logsSQL(q store.LogQuery) (string, []any) {
	var b strings.Builder
	args := []any{q.AccountID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	b.WriteString(s.sql(`SELECT ts, request_id, key_id, environment, method, path, api, status, error_type, error_code, limit_name,
	latency_us, ip, user_agent, request_bytes, response_bytes FROM {{schema}}.request_logs WHERE account_id = $1`))
	if q.KeyID != "" {
		b.WriteString(" AND key_id = " + arg(q.KeyID))
	}
	if !q.Start.IsZero() {
		b.WriteString(" AND ts >= " + arg(q.Start))
	}
	if !q.End.IsZero() {
		b.WriteString(" AND ts < " + arg(q.End))
	}
	if q.After != nil {
		b.WriteString(" AND (ts, request_id) < (" + arg(q.After.Timestamp) + ", " + arg(q.After.RequestID) + ")")
	}
	if q.Status.Min != 0 {
		b.WriteString(" AND status BETWEEN " + arg(int16(q.Status.Min)) + " AND " + arg(int16(q.Status.Max)))
		if q.Status.Min >= 400 {
			// A constant, so that the planner can prove the failed
			// requests' partial indexes (migration 12) hold every row
			// asked for, whatever the parameters.
			b.WriteString(" AND status >= 400")
		}
	}
	if q.Method != "" {
		b.WriteString(" AND method = " + arg(q.Method))
	}
	if q.API != "" {
		b.WriteString(" AND api = " + arg(q.API))
	}
	if q.RequestID != "" {
		b.WriteString(" AND request_id = " + arg(q.RequestID))
	}
	if q.Environment != "" {
		b.WriteString(" AND environment = " + arg(q.Environment))
	}
	b.WriteString(" ORDER BY ts DESC, request_id DESC LIMIT " + arg(q.Limit))
	return b.String(), args
}

// Logs implements store.LogStore.
func (s *Store) Logs(ctx context.Context, q store.LogQuery) ([]reqlog.Entry, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	sql, args := s.logsSQL(q)
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := c.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading request logs: %w", err)
	}
	out := []reqlog.Entry{}
	for rows.Next() {
		e := reqlog.Entry{AccountID: q.AccountID}
		var status int16
		var latency int64
		var ip *netip.Addr
		if err := rows.Scan(&e.Timestamp, &e.RequestID, &e.KeyID, &e.Environment, &e.Method, &e.Path, &e.API, &status,
			&e.ErrorType, &e.ErrorCode, &e.Limit, &latency, &ip, &e.UserAgent, &e.RequestBytes, &e.ResponseBytes); err != nil {
			return nil, fmt.Errorf("pgstore: reading request logs: %w", err)
		}
		e.Timestamp, e.Status, e.Latency = e.Timestamp.UTC(), int(status), time.Duration(latency)*time.Microsecond
		if ip != nil {
			e.IP = *ip
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: reading request logs: %w", err)
	}
	return out, nil
}

// PruneLogs implements store.LogStore: it drops the partitions of the
// days wholly before before (a DROP TABLE each, no row deleted one by
// one), and the daily counts of those days.
func (s *Store) PruneLogs(ctx context.Context, before time.Time) error {
	if s.closed.Load() {
		return ErrClosed
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	rows, err := c.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass($1)`, s.quoted+".request_logs")
	if err != nil {
		return fmt.Errorf("pgstore: listing request-log partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("pgstore: listing request-log partitions: %w", err)
	}
	last := dayOf(before) // the first day kept
	for _, name := range names {
		day, err := time.Parse("20060102", strings.TrimPrefix(name, "request_logs_p"))
		if err != nil || dayOf(day) >= last {
			continue
		}
		s.logDays.set(dayOf(day), false)
		if _, err := c.Exec(ctx, "DROP TABLE IF EXISTS "+s.quoted+"."+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("pgstore: dropping %s: %w", name, err)
		}
	}
	if _, err := c.Exec(ctx, s.sql(`DELETE FROM {{schema}}.request_log_counts WHERE day < $1`), time.Unix((last-1)*86400, 0).UTC()); err != nil {
		return fmt.Errorf("pgstore: pruning request-log counts: %w", err)
	}
	return nil
}
