// Command keysdemo is a small API server embedding the keys library on the
// in-memory store: the key endpoint under /v1, and two routes behind the
// key middleware. At start it creates a bootstrap key (test environment,
// every permission, account acct_demo) and prints it on stdout:
//
//	bootstrap key: txc_test_…
//
// Routes:
//
//	POST /v1/developers/keys   create a key (needs developers:write)
//	GET  /v1/whoami            the calling key's id, environment, permissions
//	GET  /v1/ping              any valid key; shows the rate-limit headers
//
// Requests are logged to stderr with log/slog; no key is ever logged.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/memstore"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	m, err := keys.New(memstore.New(), keys.WithLogger(logger))
	if err != nil {
		return err
	}
	boot := keys.APIKeyCreate{Name: "bootstrap", Environment: keys.Test, Permissions: m.Permissions(), AccountID: "acct_demo"}
	if *bootstrapRate > 0 {
		boot.RateLimit = bootstrapRate
	}
	bootstrap, err := m.Create(ctx, boot)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bootstrap key: %s\n", bootstrap.Key.Reveal())

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           logRequests(logger, newMux(m, logger)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
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
		logger.Info("keysdemo stopped: requests drained, last-used times flushed")
	}
	return err
}

func newMux(m *keys.Manager, logger *slog.Logger) *http.ServeMux {
	authed := httpadapter.Middleware(m, httpadapter.WithLogger(logger))
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", httpadapter.New(m, httpadapter.WithLogger(logger))))
	mux.Handle("GET /v1/whoami", authed(http.HandlerFunc(whoami)))
	mux.Handle("GET /v1/ping", authed(http.HandlerFunc(ping)))
	return mux
}

func whoami(w http.ResponseWriter, r *http.Request) {
	v, _ := keys.FromContext(r.Context())
	writeJSON(w, map[string]any{
		"id":          v.Key.ID,
		"environment": v.Key.Environment,
		"permissions": v.Key.APIKey().Permissions,
		"account_id":  v.Key.AccountID,
	})
}

func ping(w http.ResponseWriter, _ *http.Request) { writeJSON(w, map[string]bool{"ok": true}) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// logRequests logs method, path (never the query string, where a careless
// client might put a key), status and duration. Headers are not logged.
func logRequests(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.status), slog.Duration("duration", time.Since(start))}
		if id := w.Header().Get("Request-Id"); id != "" { // set on error responses
			attrs = append(attrs, slog.String("request_id", id))
		}
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
