package pgstore

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/store"
)

// Every List filter is served by an index: at 200,000 keys in one account,
// each of List's statements (every environment, revoked and cursor
// combination) reads an index in List's order with nothing filtered out and
// nothing sorted, so a filter that matches nothing (revoked=true on an
// account with no revoked key) costs an empty range, not a scan of the
// account.
func TestListPlansAreIndexBacked(t *testing.T) {
	if testing.Short() || buildtag.Mutation {
		t.Skip("fills a table with 200,000 keys")
	}
	ctx := context.Background()
	pool, schema := internalPool(t)
	s := openStore(t, pool, schema)
	// Tenant A: 200,000 keys, live and test, none revoked; tenant B: a few.
	if _, err := pool.Exec(ctx, s.sql(`INSERT INTO {{schema}}.api_keys (id, account_id, name, prefix, environment, digest, created_at, version)
SELECT 'key_' || i, 'acct_a', 'k', 'txc_test_abcd', CASE WHEN i % 2 = 0 THEN 'live' ELSE 'test' END,
	sha256(convert_to(i::text, 'UTF8')), now() - i * interval '1 second', 1
FROM generate_series(1, 200000) AS i;
INSERT INTO {{schema}}.api_keys (id, account_id, name, prefix, environment, digest, created_at, revoked_at, version)
SELECT 'keyb_' || i, 'acct_b', 'k', 'txc_test_abcd', 'test', sha256(convert_to('b' || i, 'UTF8')), now(), now(), 1
FROM generate_series(1, 5) AS i;
INSERT INTO {{schema}}.api_keys (id, account_id, name, prefix, environment, digest, created_at, revoked_at, version)
SELECT 'keyr_' || i, 'acct_a', 'k', 'txc_test_abcd', 'test', sha256(convert_to('r' || i, 'UTF8')), now() + i * interval '1 second', now() - interval '1 hour', 1
FROM generate_series(1, 10) AS i;
ANALYZE {{schema}}.api_keys`)); err != nil {
		t.Fatal(err)
	}
	// The history bound's scan: A's 10 revoked keys are its newest, so a
	// plan reading A's keys oldest first would pass 200,000 active ones.
	prune := strings.NewReplacer("$2", "$1", "$10", "$2").Replace(s.sql(pruneScan)) + " LIMIT 100"
	checkPlan(t, pool, "history bound", prune, "acct_a", time.Now())
	yes, no := true, false
	middle := &store.ListPosition{CreatedAt: time.Now().Add(-100_000 * time.Second), ID: "key_100000"}
	for _, env := range []string{"", "live"} {
		for _, revoked := range []*bool{nil, &yes, &no} {
			for _, after := range []*store.ListPosition{nil, middle} {
				q := store.ListQuery{AccountID: "acct_a", Environment: env, Revoked: revoked, After: after, Limit: 21}
				sql, args := s.listSQL(q)
				name := "env=" + string(env) + " revoked=" + boolStr(revoked) + " cursor=" + boolStr2(after != nil)
				checkPlan(t, pool, name, sql, args...)
			}
		}
	}
	// The owner filter reads the owner's keys only: an owner with none
	// costs an empty range, whatever the account holds.
	for _, after := range []*store.ListPosition{nil, middle} {
		sql, args := s.listSQL(store.ListQuery{AccountID: "acct_a", OwnerID: "nobody", After: after, Limit: 21})
		checkPlan(t, pool, "owner=nobody cursor="+boolStr2(after != nil), sql, args...)
	}
	// An expiry window reads its range of an expiry index and sorts what
	// is in it: one account's (a tenant's list filter), and every
	// account's unrevoked keys (NotifyExpiring). 10,000 of A's keys expire,
	// none in the window.
	if _, err := pool.Exec(ctx, s.sql(`UPDATE {{schema}}.api_keys SET expires_at = now() + interval '30 days' WHERE id LIKE 'key_1____'; ANALYZE {{schema}}.api_keys`)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sql, args := s.listSQL(store.ListQuery{AccountID: "acct_a", ExpiresFrom: now, ExpiresBefore: now.Add(time.Hour), Limit: 21})
	checkWindowPlan(t, pool, "expiry window, one account", "api_keys_account_expires", sql, args...)
	sql, args = s.listSQL(store.ListQuery{Revoked: &no, ExpiresFrom: now, ExpiresBefore: now.Add(time.Hour), Limit: 100})
	checkWindowPlan(t, pool, "expiry window, every account", "api_keys_expires_unrevoked", sql, args...)
}

// checkPlan runs EXPLAIN ANALYZE on sql and fails the test if the plan
// scans a table, sorts, or reads rows an index condition did not select.
func checkPlan(t *testing.T, pool *pgxpool.Pool, name, sql string, args ...any) {
	t.Helper()
	nodes, removed, ms, _ := explain(t, pool, sql, args...)
	t.Logf("%-40s %6.2f ms  %s", name, ms, strings.Join(nodes, " > "))
	joined := strings.Join(nodes, " ")
	if strings.Contains(joined, "Seq Scan") || strings.Contains(joined, "Sort") || strings.Contains(joined, "Bitmap") || removed > 0 {
		t.Errorf("%s: not served by an index in its order (%s; %.0f rows removed by a filter)", name, joined, removed)
	}
}

// checkWindowPlan is checkPlan for an expiry window, which may sort (the
// window's keys, not the account's): it must read index, scan no table and
// filter nothing out.
func checkWindowPlan(t *testing.T, pool *pgxpool.Pool, name, index, sql string, args ...any) {
	t.Helper()
	nodes, removed, ms, _ := explain(t, pool, sql, args...)
	joined := strings.Join(nodes, " > ")
	t.Logf("%-40s %6.2f ms  %s", name, ms, joined)
	if strings.Contains(joined, "Seq Scan") || !strings.Contains(joined, index) || removed > 0 {
		t.Errorf("%s: not served by an expiry index (%s; %.0f rows removed by a filter)", name, joined, removed)
	}
}

// explain runs EXPLAIN ANALYZE on sql: the plan's nodes (type and index),
// the rows its filters removed, its execution time in ms, and the rows
// its scans read (each scan node's actual rows, times its loops).
func explain(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) (nodes []string, removed, ms, read float64) {
	t.Helper()
	var raw []byte
	if err := pool.QueryRow(context.Background(), "EXPLAIN (ANALYZE, FORMAT JSON) "+sql, args...).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var plan []struct {
		Plan          map[string]any `json:"Plan"`
		ExecutionTime float64        `json:"Execution Time"`
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("plan: %v", err)
	}
	walk(plan[0].Plan, func(n map[string]any) {
		nodes = append(nodes, n["Node Type"].(string)+" "+str(n["Index Name"]))
		if f, ok := n["Rows Removed by Filter"].(float64); ok {
			removed += f
		}
		if strings.HasSuffix(n["Node Type"].(string), "Scan") {
			rows, _ := n["Actual Rows"].(float64)
			loops, _ := n["Actual Loops"].(float64)
			read += rows * loops
		}
	})
	return nodes, removed, plan[0].ExecutionTime, read
}

func walk(n map[string]any, f func(map[string]any)) {
	f(n)
	if kids, ok := n["Plans"].([]any); ok {
		for _, k := range kids {
			walk(k.(map[string]any), f)
		}
	}
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

func boolStr(b *bool) string {
	if b == nil {
		return "any"
	}
	return boolStr2(*b)
}

func boolStr2(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
