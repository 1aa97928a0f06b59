// Command keysdemo is the full demo: a small API server embedding the keys
// library, with every store, a Redis limiter and metrics (cmd/quickstart is
// the same server on the in-memory store, built from the core module
// alone; package internal/demo is what they share). It serves the key
// endpoints under /v1, and two routes behind the key middleware. It runs
// on the in-memory store by default, in an SQLite file that outlives the
// process (--store sqlite --db PATH), or on PostgreSQL (--store postgres
// --dsn …) with an optional Redis rate limiter (--redis host:port), so that
// several instances share keys, revocations and limits. It is a module of
// its own so that the core module requires neither pgx nor go-redis.
//
// At start it creates a bootstrap key (test environment, every permission,
// account acct_demo) and prints it on stdout:
//
//	bootstrap key: txc_test_…
//
// except on an SQLite file that already holds an active key of acct_demo:
// those keys still work, so it prints a line saying so and issues none
// (--new-bootstrap-key issues one anyway).
//
// Routes:
//
//	POST /v1/developers/keys   create a key (needs developers:write)
//	GET  /v1/whoami            the calling key's id, environment, permissions, owner_id, metadata
//	POST /v1/secret-scanning/github  GitHub's leak alerts (with --github-keys FILE)
//	GET  /v1/ping              any valid key; shows the rate-limit headers (?sleep_ms=N holds it open N ms)
//
// Requests are logged to stderr with log/slog; no key is ever logged.
// Instances sharing a database must share the pepper: set KEYSDEMO_PEPPER
// (at least 32 bytes) in each one's environment, or leave it unset in all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/demo"
	"github.com/txcloud/keys/keysotel"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/pgstore"
	"github.com/txcloud/keys/redislimit"
	"github.com/txcloud/keys/sqlitestore"
	"github.com/txcloud/keys/store"
)

func main() { demo.Main("keysdemo", run) }

// run serves until ctx is done, then shuts down gracefully. ready, if not
// nil, is told the address once the server listens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(net.Addr)) error {
	fs := flag.NewFlagSet("keysdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := demo.AddFlags(fs)
	storeKind := fs.String("store", "memory", "where keys live: memory, sqlite or postgres")
	dbPath := fs.String("db", "", "SQLite file, with --store sqlite (created if missing)")
	newBootstrap := fs.Bool("new-bootstrap-key", false, "with --store sqlite, issue a bootstrap key even if the file holds acct_demo's keys")
	dsn := fs.String("dsn", "", "PostgreSQL connection string, with --store postgres")
	schema := fs.String("schema", "txcloud_keys", "PostgreSQL schema, with --store postgres")
	redisAddr := fs.String("redis", "", "Redis host:port for a rate limiter shared by every instance; empty: in memory")
	failOpen := fs.Bool("redis-fail-open", false, "while Redis is unreachable, limit in memory instead of answering 503")
	redisPrefix := fs.String("redis-prefix", "txcloud:keys:rl:", "prefix of the limiter's Redis keys: give each deployment sharing a Redis its own")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (verifications by outcome, operations, store and limiter errors); empty: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	opts, err := f.ManagerOptions(logger)
	if err != nil {
		return err
	}
	st, closeStore, err := openStore(ctx, *storeKind, *dsn, *schema, *dbPath, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	var observer *keysotel.Observer
	if *metricsAddr != "" {
		o, stopMetrics, err := serveMetrics(ctx, *metricsAddr, st, logger)
		if err != nil {
			return err
		}
		defer stopMetrics()
		observer = o
		st = o.Store(st)
		opts = append(opts, keys.WithObserver(o))
	}
	if *redisAddr != "" {
		lim, closeLimiter, err := openLimiter(*redisAddr, *redisPrefix, *failOpen, logger)
		if err != nil {
			return err
		}
		defer closeLimiter()
		if observer != nil {
			lim = observer.Limiter(lim)
		}
		opts = append(opts, keys.WithLimiter(lim))
	}
	m, err := keys.New(st, opts...)
	if err != nil {
		return err
	}
	issue := true
	if *storeKind == "sqlite" && !*newBootstrap {
		active := false
		held, err := m.List(ctx, keys.ListFilter{AccountID: demo.Account, Revoked: &active, Limit: 1})
		if err != nil {
			return err
		}
		issue = len(held.Data) == 0
	}
	if issue {
		if err := f.Bootstrap(ctx, m, stdout); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "no new bootstrap key: %s already holds active keys of %s, which still work (--new-bootstrap-key issues another)\n", *dbPath, demo.Account)
	}
	return f.Serve(ctx, m, logger, ready)
}

// openStore opens the store --store names, and returns how to close it.
func openStore(ctx context.Context, kind, dsn, schema, dbPath string, logger *slog.Logger) (store.Store, func(), error) {
	switch kind {
	case "memory":
		return memstore.New(), func() {}, nil
	case "sqlite":
		if dbPath == "" {
			return nil, nil, errors.New("--store sqlite needs --db")
		}
		s, err := sqlitestore.Open(ctx, dbPath)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close(context.Background()) }, nil
	case "postgres":
		if dsn == "" {
			return nil, nil, errors.New("--store postgres needs --dsn")
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return nil, nil, err
		}
		if err := pool.Ping(ctx); err != nil {
			pool.Close()
			return nil, nil, fmt.Errorf("PostgreSQL: %w", err)
		}
		s, err := pgstore.New(pool, pgstore.WithSchema(schema), pgstore.WithErrorLog(func(msg string, err error) { logger.Warn(msg, "err", err) }))
		if err == nil {
			err = s.Migrate(ctx)
		}
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		return s, func() { _ = s.Close(context.Background()); pool.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--store %q: want memory, sqlite or postgres", kind)
}

// openLimiter connects the shared Redis limiter.
func openLimiter(addr, prefix string, failOpen bool, logger *slog.Logger) (limit.Limiter, func(), error) {
	client := redis.NewClient(&redis.Options{Addr: addr})
	opts := []redislimit.Option{redislimit.WithPrefix(prefix)}
	if failOpen {
		opts = append(opts, redislimit.FailOpen(nil, func(msg string, err error) { logger.Warn(msg, "err", err) }, time.Minute))
	}
	l, err := redislimit.New(client, opts...)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return l, func() { _ = l.Close(context.Background()); _ = client.Close() }, nil
}
