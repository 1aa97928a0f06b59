package pgstore_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/buildtag"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// Keys imported on one instance, as plain text and as digests, verify on
// another (its filter hears of each); importing them again creates
// nothing. 100,000 keys without the race detector (.ci/run runs it so),
// 10,000 under it.
func TestImportAcrossInstances(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t)
	schema := freshSchema(t, pool)
	sa, sb := newStore(t, pool, schema), newStore(t, newPool(t), schema)
	waitFor(t, "the listeners", func() bool { return sa.Listening() && sb.Listening() })
	a, err := keys.New(sa, keys.WithForeignPrefixes("sk_live_"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := keys.New(sb, keys.WithForeignPrefixes("sk_live_"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	n := 100_000
	if buildtag.Race {
		n = 10_000
	}
	in := make([]keys.ImportKey, n)
	plain := make([]string, n)
	for i := range in {
		plain[i] = fmt.Sprintf("sk_live_%032d", i)
		in[i] = keys.ImportKey{AccountID: "acct_" + strconv.Itoa(i%50), Name: "imported", Environment: keys.Live,
			OwnerID: "owner", Metadata: []byte(`{"from":"legacy"}`)}
		if i%2 == 0 {
			in[i].Key = keys.Secret(plain[i])
		} else {
			d := store.Digest(sha256.Sum256([]byte(plain[i])))
			in[i].Digest, in[i].Prefix = &d, "sk_live_0000"
		}
	}
	start := time.Now()
	res, err := a.Import(ctx, in)
	if err != nil || res.Created != n {
		t.Fatalf("Import = %+v, %v", res, err)
	}
	t.Logf("imported %d keys in %v", n, time.Since(start))
	res, err = a.Import(ctx, in)
	if err != nil || res.Created != 0 || res.Existing != n {
		t.Fatalf("Import again = %+v, %v", res, err)
	}
	var rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "api_keys"}.Sanitize()).Scan(&rows); err != nil || rows != n {
		t.Fatalf("%d rows, %v", rows, err)
	}
	for _, i := range []int{0, 1, n / 2, n/2 + 1, n - 1} {
		waitFor(t, "B to verify imported key "+strconv.Itoa(i), func() bool {
			v, err := b.Verify(ctx, plain[i])
			return err == nil && v.OwnerID == "owner" && string(v.Metadata) == `{"from":"legacy"}`
		})
	}
}

// BenchmarkPGImport: Store.Import of fresh rows, in the Manager's batches,
// beside a raw COPY of the same rows into the same table (target: at
// least 0.8 times its throughput). Each iteration loads
// KEYS_BENCH_IMPORT_ROWS rows (default 100,000) into an empty table.
func BenchmarkPGImport(b *testing.B) {
	ctx := context.Background()
	pool := newPool(b)
	schema := freshSchema(b, pool)
	s := newStore(b, pool, schema)
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("KEYS_BENCH_IMPORT_ROWS")); err == nil && v > 0 {
		n = v
	}
	table := pgx.Identifier{schema, "api_keys"}
	cols := []string{"id", "account_id", "name", "prefix", "environment", "permissions", "allowed_ips", "rate_limit", "digest",
		"created_at", "expires_at", "revoked_at", "last_used", "version", "owner_id", "metadata", "disabled"}
	fresh := func() []*store.Record {
		recs := make([]*store.Record, n)
		for i := range recs {
			recs[i] = storetest.NewRecord(b)
			recs[i].AccountID = "acct_" + strconv.Itoa(i%100)
		}
		return recs
	}
	empty := func() {
		if _, err := pool.Exec(ctx, "TRUNCATE "+table.Sanitize()+" CASCADE"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("floor-raw-copy", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			empty()
			recs := fresh()
			b.StartTimer()
			_, err := pool.CopyFrom(ctx, table, cols, pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
				r := recs[i]
				return []any{r.ID, r.AccountID, r.Name, r.Prefix, string(r.Environment), r.Permissions, r.AllowedIPs, r.RateLimit,
					r.Digest[:], r.CreatedAt, r.ExpiresAt, nil, nil, r.Version, r.OwnerID, []byte(r.Metadata), int16(r.Disabled)}, nil
			}))
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("import", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			empty()
			recs := fresh()
			b.StartTimer()
			for len(recs) > 0 {
				batch := recs[:min(10000, len(recs))]
				recs = recs[len(batch):]
				if _, err := s.Import(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
