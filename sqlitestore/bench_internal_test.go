package sqlitestore

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
)

// BenchmarkSQLiteVerify: Verify on sqlitestore beside the same on memstore
// (target: at most 1.5 times), for one hot key and for 2,000 distinct keys
// among 100,000 stored, walked in turn on every core.
func BenchmarkSQLiteVerify(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "keys.db"), WithSynchronousNormal())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	mSQL, _ := keys.New(s, keys.WithMaxKeysPerAccount(1<<30))
	mMem, _ := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(1<<30))
	defer mSQL.Close(ctx)
	defer mMem.Close(ctx)
	var sqlKeys, memKeys []string
	// KEYS_BENCH_STORED shrinks the store for a run that only checks the
	// benchmark still works (.ci/run's one iteration each): 100,000
	// creates into SQLite took a minute of CI.
	stored := 100_000
	if n, err := strconv.Atoi(os.Getenv("KEYS_BENCH_STORED")); err == nil && n > 0 {
		stored = n
	}
	for i := range stored {
		req := keys.APIKeyCreate{Name: "bench", Environment: keys.Live, AccountID: "acct_bench"}
		k, err := mSQL.Create(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		m, err := mMem.Create(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if i%50 == 0 {
			sqlKeys, memKeys = append(sqlKeys, string(k.Key)), append(memKeys, string(m.Key))
		}
	}
	one := func(m *keys.Manager, key string) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Verify(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	walk := func(m *keys.Manager, ks []string) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(7919))
				for pb.Next() {
					i++
					if _, err := m.Verify(ctx, ks[i%len(ks)]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
	}
	b.Run("hot-floor-memstore", one(mMem, memKeys[0]))
	b.Run("hot", one(mSQL, sqlKeys[0]))
	b.Run("walk-parallel-floor-memstore", walk(mMem, memKeys))
	b.Run("walk-parallel", walk(mSQL, sqlKeys))
}

// BenchmarkSQLiteCreate: Manager.Create on sqlitestore beside a raw INSERT
// of the same kind of row into the same database (target: at most 1.5
// times), both with the default durability (synchronous=FULL).
func BenchmarkSQLiteCreate(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "keys.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	m, _ := keys.New(s, keys.WithMaxKeysPerAccount(1<<30))
	defer m.Close(ctx)
	req := keys.APIKeyCreate{Name: "bench", Environment: keys.Live, Permissions: []string{"identity:read", "developers:write"},
		AllowedIPs: []string{"192.0.2.0/24", "2001:db8::1"}, AccountID: "acct_bench"}
	b.Run("floor-raw-insert", func(b *testing.B) {
		var d [32]byte
		for b.Loop() {
			_, _ = rand.Read(d[:])
			if _, err := s.db.ExecContext(ctx, `INSERT INTO api_keys (`+cols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				"key_"+rand.Text(), "acct_floor", "bench", "txc_live_abcd", "live", `["identity:read","developers:write"]`,
				`["192.0.2.0/24","2001:db8::1/128"]`, 0, d[:], int64(1), nil, nil, nil, 1, nil, nil, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Create(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
