package pgstore

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

// The request log's reads are served by its indexes, newest first: at
// 200,000 entries (KEYS_LOG_ROWS to change it; docs/performance.md has
// 10,000,000) over three days' partitions, an account's key's newest 100
// is a backward index scan of (account, key, time) that reads the rows it
// returns and no others, sorts nothing and scans no table; so is the
// account's newest page, a cursor's next page, one request by ID, and
// the failed requests (one in seven), read from their partial indexes.
func TestLogPlansAreIndexBacked(t *testing.T) {
	if testing.Short() || buildtag.Mutation {
		t.Skip("fills the request log with 200,000 entries")
	}
	rows := 200_000
	if v := os.Getenv("KEYS_LOG_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	ctx := context.Background()
	pool, schema := internalPool(t)
	s := openStore(t, pool, schema)
	now := time.Now().UTC()
	var days []reqlog.Entry
	for d := range 3 {
		days = append(days, reqlog.Entry{Timestamp: now.Add(-time.Duration(d) * 24 * time.Hour)})
	}
	if err := s.ensurePartitions(ctx, days); err != nil {
		t.Fatal(err)
	}
	// Account A: rows entries over the last 2.5 days, from 50 keys, one
	// in seven a 429; account B: 1,000.
	start := time.Now()
	if _, err := pool.Exec(ctx, s.sql(`INSERT INTO {{schema}}.request_logs (ts, account_id, request_id, key_id, environment, method, path, api, status,
	error_type, error_code, limit_name, latency_us, ip, user_agent, request_bytes, response_bytes)
SELECT now() - (i * (216000.0 / $1)) * interval '1 second', 'acct_a', 'req_' || md5(i::text), 'key_' || (i % 50), 'live', 'GET', 'GET /v1/ping', 'GET /v1/ping',
	CASE WHEN i % 7 = 0 THEN 429 ELSE 200 END, '', '', '', 1200, '198.51.100.0', 'curl/8', 0, 42
FROM generate_series(1, $1) AS i`), rows); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, s.sql(`INSERT INTO {{schema}}.request_logs (ts, account_id, request_id, key_id, environment, method, path, api, status,
	error_type, error_code, limit_name, latency_us, ip, user_agent, request_bytes, response_bytes)
SELECT now() - i * interval '1 second', 'acct_b', 'req_b' || i, 'key_b', 'live', 'GET', '/', 'other', 200, '', '', '', 1, NULL, '', 0, 0
FROM generate_series(1, 1000) AS i;
ANALYZE {{schema}}.request_logs`)); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries written and analysed in %v", rows+1000, time.Since(start).Round(time.Millisecond))
	var mid time.Time
	var midID string
	if err := pool.QueryRow(ctx, s.sql(`SELECT ts, request_id FROM {{schema}}.request_logs WHERE account_id = 'acct_a' AND key_id = 'key_7'
ORDER BY ts DESC, request_id DESC OFFSET 1000 LIMIT 1`)).Scan(&mid, &midID); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		q    store.LogQuery
		max  float64 // rows read at most
		sort bool    // may sort what it read (one request's entries: its ID's)
	}{
		{"account+key newest 100", store.LogQuery{AccountID: "acct_a", KeyID: "key_7", Limit: 101}, 101, false},
		{"account+key after a cursor", store.LogQuery{AccountID: "acct_a", KeyID: "key_7", After: &store.LogCursor{Timestamp: mid, RequestID: midID}, Limit: 101}, 101, false},
		{"account newest 100", store.LogQuery{AccountID: "acct_a", Limit: 101}, 101, false},
		{"account+key in a period", store.LogQuery{AccountID: "acct_a", KeyID: "key_7", Start: now.Add(-30 * time.Hour), End: now.Add(-20 * time.Hour), Limit: 101}, 101, false},
		{"one request", store.LogQuery{AccountID: "acct_a", RequestID: midID, Limit: 2}, 2, true},
		// One request in seven failed: the failed requests' own indexes.
		{"account+key 4xx newest 100", store.LogQuery{AccountID: "acct_a", KeyID: "key_7", Status: reqlog.Status{Min: 400, Max: 499}, Limit: 101}, 101, false},
		{"account 429 newest 100", store.LogQuery{AccountID: "acct_a", Status: reqlog.Status{Min: 429, Max: 429}, Limit: 101}, 101, false},
	} {
		sql, args := s.logsSQL(c.q)
		nodes, removed, ms, read := explain(t, pool, sql, args...)
		joined := strings.Join(nodes, " > ")
		t.Logf("%-28s %6.2f ms  %4.0f rows read  %s", c.name, ms, read, joined)
		if strings.Contains(joined, "Seq Scan") || strings.Contains(joined, "Sort") && !c.sort || strings.Contains(joined, "Bitmap") || removed > 0 || read > c.max {
			t.Errorf("%s: not an index scan in the log's order reading at most %.0f rows (%s; %.0f read, %.0f removed by a filter)", c.name, c.max, joined, read, removed)
		}
	}
}
