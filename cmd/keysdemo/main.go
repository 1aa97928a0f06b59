// Command keysdemo is a small API server embedding the keys library: the
// key endpoints under /v1, and two routes behind the key middleware. It runs
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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/httpadapter/secretscanning"
	"github.com/txcloud/keys/keysotel"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/pgstore"
	"github.com/txcloud/keys/redislimit"
	"github.com/txcloud/keys/sqlitestore"
	"github.com/txcloud/keys/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "keysdemo:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully. ready, if not
// nil, is told the address once the server listens.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(net.Addr)) error {
	fs := flag.NewFlagSet("keysdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	bootstrapRate := fs.Int("bootstrap-rate-limit", 0, "rate limit (requests/minute) of the bootstrap key; 0 for none")
	storeKind := fs.String("store", "memory", "where keys live: memory, sqlite or postgres")
	dbPath := fs.String("db", "", "SQLite file, with --store sqlite (created if missing)")
	newBootstrap := fs.Bool("new-bootstrap-key", false, "with --store sqlite, issue a bootstrap key even if the file holds acct_demo's keys")
	dsn := fs.String("dsn", "", "PostgreSQL connection string, with --store postgres")
	schema := fs.String("schema", "txcloud_keys", "PostgreSQL schema, with --store postgres")
	redisAddr := fs.String("redis", "", "Redis host:port for a rate limiter shared by every instance; empty: in memory")
	failOpen := fs.Bool("redis-fail-open", false, "while Redis is unreachable, limit in memory instead of answering 503")
	openPing := fs.Bool("unauthenticated-ping", false, "serve /v1/ping without the key middleware (only to measure what verification costs under load)")
	maxConns := fs.Int("max-conns", 4096, "open connections at most; more are closed as soon as they are accepted")
	idleTimeout := fs.Duration("idle-timeout", 10*time.Second, "how long an idle keep-alive connection is kept")
	githubKeys := fs.String("github-keys", "", "JSON file of GitHub's secret-scanning public keys (as https://api.github.com/meta/public_keys/secret_scanning serves it): mounts POST /v1/secret-scanning/github, which revokes reported keys")
	planName := fs.String("plan", "", "the demo account's plan, TXCloud's table: free (60/min, 1,000/day, 10 in flight), starter (300, 10,000, 50) or growth (1,000, 100,000, 100); empty: none")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (verifications by outcome, operations, store and limiter errors); empty: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	var ghKeys []secretscanning.PublicKey
	if *githubKeys != "" {
		data, err := os.ReadFile(*githubKeys)
		if err != nil {
			return err
		}
		if ghKeys, err = secretscanning.ParsePublicKeys(data); err != nil {
			return err
		}
	}
	opts := []keys.Option{keys.WithLogger(logger), keys.WithEventHook(func(_ context.Context, e event.Event) {
		if e.Type == event.KeyLeaked { // where the host would tell the key's holder
			logger.Warn("key leaked", "id", e.KeyID, "url", e.Leak.URL, "source", e.Leak.Source)
		}
	})}
	if *planName != "" {
		plan, ok := demoPlans[*planName]
		if !ok {
			return fmt.Errorf("--plan %q: want free, starter or growth", *planName)
		}
		opts = append(opts, keys.WithPlans(func(_ context.Context, account string) (keys.Plan, error) {
			if account == "acct_demo" {
				return plan, nil
			}
			return keys.Plan{}, nil
		}, time.Minute))
	}
	if p := os.Getenv("KEYSDEMO_PEPPER"); p != "" {
		opts = append(opts, keys.WithPepper([]byte(p)))
	}
	store, closeStore, err := openStore(ctx, *storeKind, *dsn, *schema, *dbPath, logger)
	if err != nil {
		return err
	}
	defer closeStore()
	var observer *keysotel.Observer
	if *metricsAddr != "" {
		o, stopMetrics, err := serveMetrics(ctx, *metricsAddr, store, logger)
		if err != nil {
			return err
		}
		defer stopMetrics()
		observer = o
		store = o.Store(store)
		opts = append(opts, keys.WithObserver(o))
	}
	if *redisAddr != "" {
		lim, closeLimiter, err := openLimiter(*redisAddr, *failOpen, logger)
		if err != nil {
			return err
		}
		defer closeLimiter()
		if observer != nil {
			lim = observer.Limiter(lim)
		}
		opts = append(opts, keys.WithLimiter(lim))
	}
	m, err := keys.New(store, opts...)
	if err != nil {
		return err
	}
	boot := keys.APIKeyCreate{Name: "bootstrap", Environment: keys.Test, Permissions: m.Vocabulary(), AccountID: "acct_demo"}
	if *bootstrapRate > 0 {
		boot.RateLimit = bootstrapRate
	}
	issue := true
	if *storeKind == "sqlite" && !*newBootstrap {
		active := false
		held, err := m.List(ctx, keys.ListFilter{AccountID: boot.AccountID, Revoked: &active, Limit: 1})
		if err != nil {
			return err
		}
		issue = len(held.Data) == 0
	}
	if issue {
		bootstrap, err := m.Create(ctx, boot)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "bootstrap key: %s\n", string(bootstrap.Key))
	} else {
		fmt.Fprintf(stdout, "no new bootstrap key: %s already holds active keys of %s, which still work (--new-bootstrap-key issues another)\n", *dbPath, boot.AccountID)
	}

	if *maxConns < 1 || *idleTimeout <= 0 {
		return errors.New("--max-conns and --idle-timeout must be positive")
	}
	inner, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	connRefusals := newSummary(logger, "connection refused: --max-conns reached", 10*time.Second)
	defer connRefusals.Flush()
	ln := &capListener{Listener: inner, max: int64(*maxConns), refused: connRefusals}
	refusals := newSummary(logger, "request refused: no valid credentials", 10*time.Second)
	defer refusals.Flush()
	acceptErrors := newSummary(logger, "keysdemo: accept failed", 10*time.Second)
	defer acceptErrors.Flush()
	srv := &http.Server{
		Handler:           logRequests(logger, refusals, newMux(m, logger, *openPing, ghKeys)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       *idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(summaryWriter{acceptErrors}, "", 0),
	}
	logger.Info("keysdemo listening", "addr", "http://"+ln.Addr().String())
	if ready != nil {
		ready(ln.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		_ = m.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	logger.Info("keysdemo shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if cerr := m.Close(shutdownCtx); err == nil {
		err = cerr
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err == nil {
		logger.Info("keysdemo stopped: requests drained, last-used times and usage flushed")
	}
	return err
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
func openLimiter(addr string, failOpen bool, logger *slog.Logger) (limit.Limiter, func(), error) {
	client := redis.NewClient(&redis.Options{Addr: addr})
	var opts []redislimit.Option
	if failOpen {
		opts = append(opts, redislimit.FailOpen(nil, func(msg string, err error) { logger.Warn(msg, "err", err) }, time.Minute))
	}
	l, err := redislimit.New(client, opts...)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return l, func() { _ = client.Close() }, nil
}

// newMux serves the key endpoints and the two demo routes, and GitHub's
// secret-scanning alerts if ghKeys are given; opts are added to the
// adapter's (tests use them).
func newMux(m *keys.Manager, logger *slog.Logger, openPing bool, ghKeys []secretscanning.PublicKey, opts ...httpadapter.Option) *http.ServeMux {
	a := httpadapter.New(m, append([]httpadapter.Option{httpadapter.WithLogger(logger)}, opts...)...)
	authed := a.Middleware()
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", a))
	mux.Handle("GET /v1/whoami", authed(http.HandlerFunc(whoami)))
	if ghKeys != nil {
		mux.Handle("POST /v1/secret-scanning/github", secretscanning.New(m, ghKeys, keys.LeakRevoke, a.WriteError))
	}
	if openPing {
		mux.Handle("GET /v1/ping", ping(a))
	} else {
		mux.Handle("GET /v1/ping", authed(ping(a)))
	}
	return mux
}

func whoami(w http.ResponseWriter, r *http.Request) {
	v, _ := keys.FromContext(r.Context())
	perms := v.Permissions
	if perms == nil {
		perms = []string{} // an array, never null
	}
	writeJSON(w, map[string]any{
		"id":          v.KeyID,
		"environment": v.Environment,
		"permissions": perms,
		"account_id":  v.AccountID,
		"owner_id":    v.OwnerID,
		"metadata":    v.Metadata, // as stored: no decoding per request
	})
}

// ping answers {"ok":true}; ?sleep_ms=N (0 to 5,000) holds the request
// open that long first, so that a plan's limit on requests in flight can
// be seen with curl.
func ping(a *httpadapter.Adapter) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if vals, ok := q["sleep_ms"]; ok {
			ms, err := strconv.Atoi(vals[0])
			if len(vals) != 1 || err != nil || ms < 0 || ms > maxSleepMS || len(q) != 1 {
				a.WriteError(w, r, &httpadapter.Error{Status: http.StatusBadRequest, Type: httpadapter.TypeValidation, Code: "invalid_parameter", Param: "sleep_ms",
					Message: "sleep_ms is a whole number of milliseconds from 0 to 5000, given once"})
				return
			}
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		} else if len(q) != 0 {
			a.WriteError(w, r, &httpadapter.Error{Status: http.StatusBadRequest, Type: httpadapter.TypeValidation, Code: "invalid_parameter", Message: "unknown query parameter"})
			return
		}
		writeJSON(w, map[string]bool{"ok": true})
	}
}

const maxSleepMS = 5000

// demoPlans are TXCloud's published plans. The per-endpoint limits are
// TXCloud's, on routes this demo does not serve; they show how a host
// writes them.
var demoPlans = map[string]keys.Plan{
	"free":    {Name: "free", PerMinute: 60, PerDay: 1_000, Concurrent: 10, Endpoints: txcloudEndpoints},
	"starter": {Name: "starter", PerMinute: 300, PerDay: 10_000, Concurrent: 50, Endpoints: txcloudEndpoints},
	"growth":  {Name: "growth", PerMinute: 1_000, PerDay: 100_000, Concurrent: 100, Endpoints: txcloudEndpoints},
}

var txcloudEndpoints = []keys.EndpointLimit{
	{Pattern: "POST /v1/identity/verify", PerMinute: 100},
	{Pattern: "POST /v1/transactions/score", PerMinute: 1_000},
	{Pattern: "POST /v1/watchlist/screen", PerMinute: 500},
	{Pattern: "GET /v1/*/analytics/*", PerMinute: 30},
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// logRequests logs method, path (never the query string, where a careless
// client might put a key; and with any key-shaped path segment redacted, as
// when a key is pasted where a key ID belongs), status and duration.
// Headers are not logged. A 401 (no valid credentials: what an anonymous
// flood gets) goes to the refusals summary instead: a line for the first
// of a quiet period, then one line with a count per interval, so a flood
// cannot fill the disk with log.
func logRequests(logger *slog.Logger, refusals *summary, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", redactPath(r.URL.Path)),
			slog.Int("status", sw.status), slog.Duration("duration", time.Since(start))}
		if id := w.Header().Get("Request-Id"); id != "" { // set on error responses
			attrs = append(attrs, slog.String("request_id", id))
		}
		if sw.status == http.StatusUnauthorized {
			refusals.Add(attrs...)
			return
		}
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// redactPath replaces every path segment that starts like a key.
func redactPath(path string) string {
	if !strings.Contains(path, "txc_") {
		return path
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		if strings.HasPrefix(seg, "txc_live_") || strings.HasPrefix(seg, "txc_test_") {
			segs[i] = "[key redacted]"
		}
	}
	return strings.Join(segs, "/")
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
