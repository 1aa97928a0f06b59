// Package demo is the demo server both demo commands run: cmd/quickstart
// (the in-memory store, nothing outside the core module) and
// cmd/keysdemo (every store, a Redis limiter and Prometheus metrics). It
// holds what they share: the flags, the bootstrap key, the routes, the
// request log and the server's defences, so that a route added here is
// served by both.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/connlimit"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/httpadapter/secretscanning"
	"github.com/txcloud/keys/portal"
	"github.com/txcloud/keys/webhook"
)

// Main runs a demo command: run serves until SIGINT or SIGTERM, and an
// error ends the process with status 1.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(net.Addr)) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Flags are the flags both commands take.
type Flags struct {
	Addr          string
	BootstrapRate int
	OpenPing      bool
	MaxConns      int
	MaxConnsAddr  int
	IdleTimeout   time.Duration
	GitHubKeys    string
	Plan          string
	// WebhooksAllowLoopback lets webhook endpoints be on this machine
	// (and plain http), for trying webhooks out locally.
	WebhooksAllowLoopback bool
}

// AddFlags registers the shared flags on fs.
func AddFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.Addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.IntVar(&f.BootstrapRate, "bootstrap-rate-limit", 0, "rate limit (requests/minute) of the bootstrap key; 0 for none")
	fs.BoolVar(&f.OpenPing, "unauthenticated-ping", false, "serve /v1/ping without the key middleware (only to measure what verification costs under load)")
	fs.IntVar(&f.MaxConns, "max-conns", 4096, "open connections at most: at the cap, a new one takes the slot of the oldest waiting one (sending its headers, or idle), and is refused only when all are serving requests")
	fs.IntVar(&f.MaxConnsAddr, "max-conns-per-addr", 256, "open connections at most from one client address, the same way; 0 for no cap (behind a proxy, where every client shares its address)")
	fs.DurationVar(&f.IdleTimeout, "idle-timeout", 10*time.Second, "how long an idle keep-alive connection is kept")
	fs.StringVar(&f.GitHubKeys, "github-keys", "", "JSON file of GitHub's secret-scanning public keys (as https://api.github.com/meta/public_keys/secret_scanning serves it): mounts POST /v1/secret-scanning/github, which revokes reported keys")
	fs.BoolVar(&f.WebhooksAllowLoopback, "webhooks-allow-loopback", false, "let webhook endpoints be on loopback addresses and plain http, to receive them on this machine (never in production: private, link-local and metadata addresses stay refused)")
	fs.StringVar(&f.Plan, "plan", "", "the demo account's plan, TXCloud's table: free (60/min, 1,000/day, 10 in flight), starter (300, 10,000, 50) or growth (1,000, 100,000, 100); empty: none")
	return f
}

// Account is the demo account: the bootstrap key's, and the one --plan
// applies to.
const Account = "acct_demo"

// ManagerOptions are the Manager's options the flags ask for (the plan,
// the pepper from KEYSDEMO_PEPPER) and the demo's own (its logger, and a
// hook that logs leaked keys).
func (f *Flags) ManagerOptions(logger *slog.Logger) ([]keys.Option, error) {
	opts := []keys.Option{keys.WithLogger(logger), keys.WithEventHook(func(_ context.Context, e event.Event) {
		if e.Type == event.KeyLeaked { // where the host would tell the key's holder
			logger.Warn("key leaked", "id", e.KeyID, "url", e.Leak.URL, "source", e.Leak.Source)
		}
	})}
	if f.Plan != "" {
		plan, ok := Plans[f.Plan]
		if !ok {
			return nil, fmt.Errorf("--plan %q: want free, starter or growth", f.Plan)
		}
		opts = append(opts, keys.WithPlans(func(_ context.Context, account string) (keys.Plan, error) {
			if account == Account {
				return plan, nil
			}
			return keys.Plan{}, nil
		}, time.Minute))
	}
	if p := os.Getenv("KEYSDEMO_PEPPER"); p != "" {
		opts = append(opts, keys.WithPepper([]byte(p)))
	}
	if f.WebhooksAllowLoopback {
		opts = append(opts, keys.WithWebhooks(webhook.Config{AllowLoopback: true}))
	}
	return opts, nil
}

// Bootstrap issues the bootstrap key (test environment, every permission,
// the demo account) and prints it on stdout: "bootstrap key: txc_test_…".
func (f *Flags) Bootstrap(ctx context.Context, m *keys.Manager, stdout io.Writer) error {
	boot := keys.APIKeyCreate{Name: "bootstrap", Environment: keys.Test, Permissions: m.Vocabulary(), AccountID: Account}
	if f.BootstrapRate > 0 {
		boot.RateLimit = &f.BootstrapRate
	}
	bootstrap, err := m.Create(ctx, boot)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bootstrap key: %s\n", string(bootstrap.Key))
	return nil
}

// Serve serves m's routes on f.Addr until ctx is done, then shuts down
// gracefully and closes m. ready, if not nil, is told the address once the
// server listens; opts are added to the adapter's (tests use them).
func (f *Flags) Serve(ctx context.Context, m *keys.Manager, logger *slog.Logger, ready func(net.Addr), opts ...httpadapter.Option) error {
	var ghKeys []secretscanning.PublicKey
	if f.GitHubKeys != "" {
		data, err := os.ReadFile(f.GitHubKeys)
		if err != nil {
			return err
		}
		if ghKeys, err = secretscanning.ParsePublicKeys(data); err != nil {
			return err
		}
	}
	if f.MaxConns < 1 || f.MaxConnsAddr < 0 || f.IdleTimeout <= 0 {
		return errors.New("--max-conns and --idle-timeout must be positive, --max-conns-per-addr at least 0")
	}
	inner, err := net.Listen("tcp", f.Addr)
	if err != nil {
		return err
	}
	connRefusals := NewSummary(logger, "connection refused: every slot is serving a request (--max-conns or --max-conns-per-addr)", 10*time.Second)
	defer connRefusals.Flush()
	evictions := NewSummary(logger, "connection closed to make room: it was waiting (--max-conns or --max-conns-per-addr)", 10*time.Second)
	defer evictions.Flush()
	ln := connlimit.New(inner, connlimit.Limits{Max: f.MaxConns, PerAddr: f.MaxConnsAddr, Refused: func(addr netip.Addr, evicted bool) {
		if evicted {
			evictions.Add(slog.String("addr", addr.String()))
		} else {
			connRefusals.Add(slog.String("addr", addr.String()))
		}
	}})
	refusals := NewRefusals(logger, 10*time.Second)
	defer refusals.Flush()
	acceptErrors := NewSummary(logger, "keysdemo: accept failed", 10*time.Second)
	defer acceptErrors.Flush()
	srv := &http.Server{
		Handler:   LogRequests(logger, refusals, NewMux(m, logger, f.OpenPing, ghKeys, opts...)),
		ConnState: ln.ConnState,
		// Short: a connection still sending its headers holds a slot
		// (until a new one evicts it at a cap) for 2 s at most.
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       f.IdleTimeout,
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

// NewMux serves the key endpoints and the demo routes, and GitHub's
// secret-scanning alerts if ghKeys are given; opts are added to the
// adapter's. Routes:
//
//	/v1/developers/…  the key endpoints and usage (httpadapter)
//	GET  /v1/whoami   the calling key's id, environment, permissions, account, owner_id, metadata
//	GET  /v1/ping     any valid key; shows the rate-limit headers (?sleep_ms=N holds it open N ms)
//	POST /v1/secret-scanning/github  GitHub's leak alerts (with --github-keys FILE)
//	/portal/          the developer portal (sign in with a key holding developers:read and developers:write)
//
// The portal's sessions are signed with KEYSDEMO_PORTAL_SECRET (at least
// 32 bytes; the same in every instance), or, unset, a random secret of
// this process: its sessions end with it.
func NewMux(m *keys.Manager, logger *slog.Logger, openPing bool, ghKeys []secretscanning.PublicKey, opts ...httpadapter.Option) *http.ServeMux {
	a := httpadapter.New(m, append([]httpadapter.Option{httpadapter.WithLogger(logger)}, opts...)...)
	authed := a.Middleware()
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", a))
	secret := []byte(os.Getenv("KEYSDEMO_PORTAL_SECRET"))
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret) // never fails (crypto/rand's contract)
	}
	p, err := portal.New(m, portal.Config{Secret: secret, ClientIP: a.ClientIP, Logger: logger})
	if err != nil { // a KEYSDEMO_PORTAL_SECRET too short
		logger.Error("keysdemo: the portal is off", "error", err)
	} else {
		mux.Handle("/portal/", p)
		mux.Handle("/portal", p)
		mux.Handle("GET /{$}", http.RedirectHandler("/portal/", http.StatusSeeOther))
	}
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

// Plans are TXCloud's published plans. The per-endpoint limits are
// TXCloud's, on routes this demo does not serve; they show how a host
// writes them.
var Plans = map[string]keys.Plan{
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

// Refusals summarise the answers a flood gets, one Summary per kind: 401
// (no valid credentials: an anonymous flood), 429 (a key over a limit),
// 402 (a key out of credits) and 499 (the client left before the answer).
// Each is logged as a line for the first of a quiet period, then one line
// with a count per interval, so that no client can fill the disk with log.
type Refusals struct{ byStatus map[int]*Summary }

// NewRefusals returns the summaries, each logging at most one line per
// interval.
func NewRefusals(logger *slog.Logger, interval time.Duration) *Refusals {
	return &Refusals{byStatus: map[int]*Summary{
		http.StatusUnauthorized:               NewSummary(logger, "request refused: no valid credentials", interval),
		http.StatusTooManyRequests:            NewSummary(logger, "request refused: rate limited", interval),
		http.StatusPaymentRequired:            NewSummary(logger, "request refused: credits exhausted", interval),
		httpadapter.StatusClientClosedRequest: NewSummary(logger, "request abandoned: the client left before the answer", interval),
	}}
}

// Flush writes every pending summary.
func (r *Refusals) Flush() {
	for _, s := range r.byStatus {
		s.Flush()
	}
}

// LogRequests logs method, path (never the query string, where a careless
// client might put a key; and with any key-shaped path segment redacted, as
// when a key is pasted where a key ID belongs), status and duration.
// Headers are not logged. The answers a flood gets (401, 402, 429, 499) go
// to their summaries in refusals instead.
func LogRequests(logger *slog.Logger, refusals *Refusals, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", redactPath(r.URL.Path)),
			slog.Int("status", sw.status), slog.Duration("duration", time.Since(start))}
		if id := w.Header().Get("Request-Id"); id != "" { // on every response of the library
			attrs = append(attrs, slog.String("request_id", id))
		}
		if s := refusals.byStatus[sw.status]; s != nil {
			s.Add(attrs...)
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
