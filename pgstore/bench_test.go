package pgstore_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/pgstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
	"github.com/txcloud/keys/webhook"
)

// BenchmarkPGCreate: Manager.Create on pgstore beside a raw pgx INSERT of
// the same kind of row (target: at most 1.5 times).
func BenchmarkPGCreate(b *testing.B) {
	ctx := context.Background()
	pool := newPool(b)
	schema := freshSchema(b, pool)
	s := newStore(b, pool, schema)
	// A cap the benchmark never reaches: every create still checks it.
	m, err := keys.New(s, keys.WithMaxKeysPerAccount(1<<30))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(ctx)
	table := pgx.Identifier{schema, "api_keys"}.Sanitize()
	b.Run("floor-raw-insert", func(b *testing.B) {
		r := storetest.NewRecord(b)
		for b.Loop() {
			rand.Read(r.Digest[:])
			r.ID = "key_" + rand.Text()
			if _, err := pool.Exec(ctx, `INSERT INTO `+table+` (id, account_id, name, prefix, environment, permissions, allowed_ips, rate_limit, digest, created_at, expires_at, revoked_at, last_used, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
				r.ID, r.AccountID, r.Name, r.Prefix, string(r.Environment), r.Permissions, r.AllowedIPs, r.RateLimit, r.Digest[:], r.CreatedAt, nil, nil, nil, r.Version); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create", func(b *testing.B) {
		req := keys.APIKeyCreate{Name: "bench", Environment: keys.Live, Permissions: []string{"identity:read", "developers:write"}, AllowedIPs: []string{"192.0.2.0/24", "2001:db8::1"}, RateLimit: func() *int { v := 120; return &v }(), AccountID: "acct_bench"}
		for b.Loop() {
			if _, err := m.Create(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPGVerify: a cached key on pgstore beside the same on memstore
// (hot, target 2 times), and an uncached key beside a raw SELECT by
// primary key (cold, target 1.3 times).
func BenchmarkPGVerify(b *testing.B) {
	ctx := context.Background()
	pool := newPool(b)
	schema := freshSchema(b, pool)
	hot := newStore(b, pool, schema, pgstore.WithCache(10_000, time.Hour))
	cold := newStore(b, pool, schema, pgstore.WithCache(0, time.Second))
	mHot, _ := keys.New(hot)
	mCold, _ := keys.New(cold)
	mMem, _ := keys.New(memstore.New())
	defer mHot.Close(ctx)
	defer mCold.Close(ctx)
	defer mMem.Close(ctx)
	req := keys.APIKeyCreate{Name: "bench", Environment: keys.Live, AccountID: "acct_bench"}
	pk, err := mHot.Create(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	mk, err := mMem.Create(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	verify := func(m *keys.Manager, key string) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Verify(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("hot-floor-memstore", verify(mMem, string(mk.Key)))
	b.Run("hot", verify(mHot, string(pk.Key)))
	table := pgx.Identifier{schema, "api_keys"}.Sanitize()
	b.Run("cold-floor-raw-select", func(b *testing.B) {
		var name string
		for b.Loop() {
			if err := pool.QueryRow(ctx, `SELECT name FROM `+table+` WHERE id = $1`, pk.ID).Scan(&name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold", verify(mCold, string(pk.Key)))
}

// BenchmarkPGCredits: Verify of a cached key with credits (one conditional
// UPDATE per request, across instances exact) beside its floor, a raw
// UPDATE of one bigint column of the same row.
func BenchmarkPGCredits(b *testing.B) {
	ctx := context.Background()
	pool := newPool(b)
	schema := freshSchema(b, pool)
	m, err := keys.New(newStore(b, pool, schema))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(ctx)
	budget := int64(credits.Max)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "bench", Environment: keys.Live, AccountID: "acct_bench", Credits: &credits.Budget{Remaining: budget}})
	if err != nil {
		b.Fatal(err)
	}
	table := pgx.Identifier{schema, "key_credits"}.Sanitize()
	b.Run("floor-raw-update", func(b *testing.B) {
		for b.Loop() {
			if _, err := pool.Exec(ctx, `UPDATE `+table+` SET remaining = remaining - 1 WHERE id = $1`, k.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-spend", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if v, err := m.Verify(ctx, string(k.Key)); err != nil || v.Spent != 1 {
				b.Fatal(err)
			}
		}
	})
}

// hideEvents is a store without the event log: the Manager writes no
// events on it.
type hideEvents struct{ store.Store }

// BenchmarkPGEvents: Create and Revoke on pgstore with the event log
// (the change's event, and its deliveries to the account's 3 endpoints,
// in the same statement or transaction) beside the same without it.
// Target: at most 1.15 times.
func BenchmarkPGEvents(b *testing.B) {
	ctx := context.Background()
	pool := newPool(b)
	schema := freshSchema(b, pool)
	s := newStore(b, pool, schema)
	pepper := keys.WithPepper([]byte("pepper-for-the-events-benchmark!"))
	quiet := keys.WithWebhooks(webhook.Config{Disabled: true, AllowLoopback: true}) // deliveries are stored, not sent
	with, err := keys.New(s, keys.WithMaxKeysPerAccount(1<<30), pepper, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer with.Close(ctx)
	without, err := keys.New(hideEvents{s}, keys.WithMaxKeysPerAccount(1<<30), pepper)
	if err != nil {
		b.Fatal(err)
	}
	defer without.Close(ctx)
	p := keys.Principal{AccountID: "acct_bench", Subject: "key_admin"}
	for range 3 {
		if _, err := with.As(p).Webhooks().Create(ctx, webhook.EndpointCreate{URL: "http://127.0.0.1:9/hook", Events: []string{"*"}}); err != nil {
			b.Fatal(err)
		}
	}
	req := keys.APIKeyCreate{Name: "bench", Environment: keys.Live, Permissions: []string{"identity:read"}, AccountID: "acct_bench"}
	quietReq := req
	quietReq.AccountID = "acct_quiet" // no endpoints: the event alone
	// Each iteration runs the three kinds in turn, so that the machine's
	// drift (large on these shared machines) falls on all alike; each
	// kind's mean is reported, and its ratio to the one without events.
	kinds := []struct {
		name string
		m    *keys.Manager
		req  keys.APIKeyCreate
	}{{"no-events", without, req}, {"event", with, quietReq}, {"event+3-deliveries", with, req}}
	report := func(b *testing.B, took []time.Duration) {
		for i, k := range kinds {
			b.ReportMetric(float64(took[i].Nanoseconds())/float64(b.N), k.name+"-ns/op")
			if i > 0 {
				b.ReportMetric(float64(took[i])/float64(took[0]), k.name+"-ratio")
			}
		}
	}
	b.Run("create", func(b *testing.B) {
		took := make([]time.Duration, len(kinds))
		for b.Loop() {
			for i, k := range kinds {
				start := time.Now()
				if _, err := k.m.Create(ctx, k.req); err != nil {
					b.Fatal(err)
				}
				took[i] += time.Since(start)
			}
		}
		report(b, took)
	})
	b.Run("revoke", func(b *testing.B) {
		ids := make([][]string, len(kinds))
		for i, k := range kinds {
			for range b.N {
				c, err := k.m.Create(ctx, k.req)
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = append(ids[i], c.ID)
			}
		}
		took := make([]time.Duration, len(kinds))
		b.ResetTimer()
		for n := range b.N {
			for i, k := range kinds {
				start := time.Now()
				if _, err := k.m.Revoke(ctx, ids[i][n]); err != nil {
					b.Fatal(err)
				}
				took[i] += time.Since(start)
			}
		}
		report(b, took)
	})
}
