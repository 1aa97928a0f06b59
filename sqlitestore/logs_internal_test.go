package sqlitestore

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys/reqlog"
	"github.com/txcloud/keys/store"
)

// TestLogWindowBoundsEachAccount: past its window an account's oldest
// entries go; another account's stay, however many the first adds.
func TestLogWindowBoundsEachAccount(t *testing.T) {
	logWindow = 100
	t.Cleanup(func() { logWindow = LogWindow })
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	now := time.Now().UTC()
	add := func(acct string, from, n int) {
		t.Helper()
		var es []reqlog.Entry
		for i := from; i < from+n; i++ {
			es = append(es, reqlog.Entry{RequestID: fmt.Sprintf("req_%s_%05d", acct, i), Timestamp: now.Add(time.Duration(i) * time.Millisecond), AccountID: acct, Status: 200})
		}
		if _, err := s.AddLogs(ctx, store.LogBatch{ID: fmt.Sprint(acct, from), Entries: es, MaxPerDay: 1 << 30}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(acct string) int {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM request_logs WHERE account_id = ?`, acct).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	add("acct_quiet", 0, 50)
	for i := range 20 {
		add("acct_flood", i*100, 100)
	}
	if n := count("acct_flood"); n < 100 || n > 110 {
		t.Fatalf("the flooding account keeps %d entries, want its window (100, and a tenth more before a trim)", n)
	}
	if n := count("acct_quiet"); n != 50 {
		t.Fatalf("the quiet account keeps %d of its 50", n)
	}
	got, err := s.Logs(ctx, store.LogQuery{AccountID: "acct_flood", Limit: 1})
	if err != nil || len(got) != 1 || got[0].RequestID != "req_acct_flood_01999" {
		t.Fatalf("the newest is kept: %v %v", got, err)
	}
}

// Listing an account's failed requests reads the failed requests' own
// index (migration 4), not the account's others.
func TestFailedRequestsHaveTheirIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	query, args := logsSQL(store.LogQuery{AccountID: "acct", KeyID: "key", Status: reqlog.Status{Min: 400, Max: 499}, Limit: 101})
	rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	got := strings.Join(plan, "; ")
	if !strings.Contains(got, "request_logs_account_key_failed") || strings.Contains(got, "TEMP B-TREE") {
		t.Fatalf("plan %q: want the failed requests' index, in its order", got)
	}
}
