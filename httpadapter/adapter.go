package httpadapter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/verifiedctx"
)

// Adapter is the one configured value behind everything this package
// serves: the key endpoints (ServeHTTP), the authentication middleware and
// its per-route permission guards (Middleware), and the error envelope
// (WriteError). Its options apply to all of them alike. It is safe for
// concurrent use.
type Adapter struct {
	m   *keys.Manager
	c   *config
	mux *http.ServeMux
}

// Permissions the endpoints need.
const (
	PermissionManageKeys = "developers:write"
	PermissionReadKeys   = "developers:read"
)

// New returns the Adapter of m. As an http.Handler it serves the DevEx key
// endpoints, relative to where it is mounted:
//
//	POST   /developers/keys            create (developers:write; 201, key shown once)
//	GET    /developers/keys            list, newest first (developers:read)
//	GET    /developers/keys/{id}       one key (developers:read)
//	PATCH  /developers/keys/{id}       update (developers:write)
//	DELETE /developers/keys/{id}       revoke (developers:write; 200 with the revoked key)
//	POST   /developers/keys/{id}/roll  roll (developers:write; 201, new key shown once)
//	GET    /developers/usage           the account's usage (developers:read)
//	GET    /developers/keys/{id}/usage a key's usage series (developers:read)
//	GET    /developers/account         the account: its plan and credits (developers:read)
//
// The caller authenticates with a key (or through WithAuthenticator) and
// sees and changes only its own account's keys: another account's key ID is
// a 404, not a 403. It grants no permission it lacks, and a test key cannot
// touch live keys. The POSTs accept an Idempotency-Key, honoured for 24
// hours.
//
// New panics if m or an option is nil or an option refuses its value, as
// http.Handle does for a nil handler: these are mistakes in the host's
// code, found when it starts, never input from a client.
func New(m *keys.Manager, opts ...Option) *Adapter {
	if m == nil {
		panic("httpadapter: New: nil Manager")
	}
	c, err := newConfig(opts)
	if err != nil {
		panic(err)
	}
	a := &Adapter{m: m, c: c, mux: http.NewServeMux()}
	a.mux.Handle("POST /developers/keys", a.endpoint(PermissionManageKeys, "", a.create))
	a.mux.Handle("GET /developers/keys", a.endpoint(PermissionReadKeys, "", a.list))
	a.mux.Handle("GET /developers/keys/{id}", a.endpoint(PermissionReadKeys, "", a.get))
	a.mux.Handle("PATCH /developers/keys/{id}", a.endpoint(PermissionManageKeys, "", a.update))
	a.mux.Handle("DELETE /developers/keys/{id}", a.endpoint(PermissionManageKeys, "", a.revoke))
	a.mux.Handle("POST /developers/keys/{id}/roll", a.endpoint(PermissionManageKeys, "", a.roll))
	a.mux.Handle("GET /developers/usage", a.endpoint(PermissionReadKeys, usageReads, a.usage))
	a.mux.Handle("GET /developers/keys/{id}/usage", a.endpoint(PermissionReadKeys, usageReads, a.keyUsage))
	a.mux.Handle("GET /developers/account", a.endpoint(PermissionReadKeys, "", a.account))
	// Known paths, other methods: 405 in the envelope (ServeMux's own 405
	// is plain text).
	for path, allow := range map[string]string{
		"/developers/keys":            "GET, POST",
		"/developers/keys/{id}":       "GET, PATCH, DELETE",
		"/developers/keys/{id}/roll":  "POST",
		"/developers/usage":           "GET",
		"/developers/keys/{id}/usage": "GET",
		"/developers/account":         "GET",
	} {
		a.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			a.WriteError(w, r, badRequest(http.StatusMethodNotAllowed, "", "method "+r.Method+" is not allowed here; use "+allow))
		})
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.WriteError(w, r, &Error{Status: http.StatusNotFound, Type: TypeNotFound, Code: "not_found", Message: "no such endpoint"})
	})
	return a
}

// ServeHTTP serves the key endpoints.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Middleware returns middleware that lets a request through only if its
// caller authenticates (an API key from "Authorization: Bearer", or the
// WithAuthenticator principal) and holds every one of perms, and passes the
// verified caller to next in the request context (keys.FromContext). It
// refuses, in the error envelope, a missing or invalid key (401
// unauthorized), a revoked key (401 key_revoked), a disallowed client IP
// (401 ip_not_allowed), a caller lacking a permission (403 forbidden) and a
// key over a limit (429, with Retry-After, naming the limit: the key's
// own, or its account plan's per minute, per day, per endpoint or in
// flight). Each request is counted in flight against its account's plan
// until next returns, or panics. A store outage is a 503,
// never a 401. The permissions are checked inside Verify, so a key refused
// for them does not spend its rate limit.
//
// Behind another Middleware (a verified caller already in the context) it
// checks perms against that caller without verifying again, so a key's
// limit is spent once per request.
//
// Middleware panics if a permission is not in the Manager's vocabulary: no
// key could hold it, so the route would refuse everyone.
func (a *Adapter) Middleware(perms ...string) func(http.Handler) http.Handler {
	vocab := a.m.Vocabulary()
	for _, p := range perms {
		if !slices.Contains(vocab, p) {
			panic(fmt.Sprintf("httpadapter: Middleware: permission %q is not in the Manager's vocabulary", p))
		}
	}
	perms = slices.Clone(perms)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if v := verifiedctx.Get[keys.Verified](r.Context()); v != nil && v.KeyID != "" {
				if err := a.check(v, perms); err != nil {
					a.WriteError(w, r, err)
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			api := a.c.apiOf(r)
			var v keys.Verified
			var release func()
			err := a.authenticate(w, r, perms, api, &v, &release)
			if err == nil {
				defer release() // a panicking handler gives it back too
				// The handler's context and its status writer, in one
				// allocation.
				s := &served{ctx: verifiedctx.Holder[keys.Verified]{Context: r.Context(), V: v}, sw: statusWriter{ResponseWriter: w}}
				defer func() {
					if p := recover(); p != nil {
						// Counted as net/http answers it (500, unless the
						// handler had answered), then panicking on.
						a.m.CountUsage(&v, api, cmp.Or(s.sw.status, http.StatusInternalServerError))
						panic(p)
					}
					status := cmp.Or(s.sw.status, http.StatusOK)
					if r.Context().Err() != nil {
						status = StatusClientClosedRequest // the client left before the handler returned
					}
					a.m.CountUsage(&v, api, status)
				}()
				next.ServeHTTP(&s.sw, r.WithContext(&s.ctx))
				return
			}
			switch {
			case errors.Is(err, keys.ErrRateLimited):
				a.m.CountUsage(&v, api, http.StatusTooManyRequests)
			case errors.Is(err, keys.ErrCreditsExhausted):
				a.m.CountUsage(&v, api, http.StatusPaymentRequired) // failed, not a rate-limit hit
			case errors.Is(err, context.Canceled):
				a.m.CountUsage(&v, api, StatusClientClosedRequest) // a key it had found, if any
			}
			a.WriteError(w, r, err)
		})
	}
}

// served is what the middleware gives the handler of a verified request:
// its context (carrying the verified key) and the writer that notes the
// status for usage.
type served struct {
	ctx verifiedctx.Holder[keys.Verified]
	sw  statusWriter
}

// check holds an already verified caller to the environment and perms.
func (a *Adapter) check(v *keys.Verified, perms []string) error {
	if a.c.env != "" && v.Environment != a.c.env {
		return keys.ErrWrongEnvironment
	}
	for _, p := range perms {
		if !slices.Contains(v.Permissions, p) {
			return &keys.PermissionError{Message: "this needs " + p}
		}
	}
	return nil
}

// ClientIP is the address r comes from, as the adapter works it out for
// allowed_ips: the peer, or, when the peer is a trusted proxy
// (WithTrustedProxies), the right-most untrusted address of the forwarding
// header. It is the zero Addr when that header is malformed.
func (a *Adapter) ClientIP(r *http.Request) netip.Addr { return a.c.clientIP(r) }

// statusWriter notes the status a handler answers with, for usage.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
