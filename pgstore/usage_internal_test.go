package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
)

// An account's usage reads as many rows as it has buckets and APIs, not
// keys: with 5,000 keys used in one minute, the day's summary of the
// account reads one row (the account's total), where summing the keys'
// rows read 5,000 (a tenant could repeat that read for 400 days of
// buckets at its management limit).
func TestUsageReadCostIndependentOfKeys(t *testing.T) {
	ctx := context.Background()
	pool, schema := internalPool(t)
	s := openStore(t, pool, schema)
	day := time.Now().UTC().Truncate((24 * time.Hour))
	b := store.UsageBatch{ID: "batch-5000-keys"}
	for i := range 5000 {
		b.Rows = append(b.Rows, store.UsageRow{Bucket: day.Add(time.Minute), AccountID: "acct_big", KeyID: fmt.Sprint("key_", i), API: "identity", Successful: 1})
	}
	if err := s.AddUsage(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, s.sql(`ANALYZE {{schema}}.usage_counts`)); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := pool.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+s.sql(usageSQL), "acct_big", int16(usage.Day), day, day.Add((24 * time.Hour)), "", "").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var plan []struct {
		Plan map[string]any `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatal(err)
	}
	read := 0.0
	walk(plan[0].Plan, func(n map[string]any) {
		if typ := n["Node Type"].(string); typ == "Index Scan" || typ == "Index Only Scan" || typ == "Seq Scan" || typ == "Bitmap Heap Scan" {
			read += n["Actual Rows"].(float64)
			if f, ok := n["Rows Removed by Filter"].(float64); ok {
				read += f
			}
		}
	})
	if read != 1 {
		t.Fatalf("the account's day read %.0f rows, want 1 (the account's total)", read)
	}
	rows, err := s.Usage(ctx, store.UsageQuery{AccountID: "acct_big", Granularity: usage.Day, From: day, To: day.Add((24 * time.Hour))})
	if err != nil || len(rows) != 1 || rows[0].Successful != 5000 {
		t.Fatalf("%v %+v", err, rows)
	}
}
