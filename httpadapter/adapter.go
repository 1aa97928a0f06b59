package httpadapter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/verifiedctx"
	"github.com/txcloud/keys/reqlog"
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
//	GET    /developers/logs            the account's request log, newest first (developers:read)
//	GET    /developers/logs/{request_id} one request's entry (developers:read)
//	GET    /developers/events          the account's event log, newest first (developers:read)
//	GET    /developers/events/{id}     one event (developers:read)
//	POST   /developers/webhooks        register an endpoint (developers:write; 201, secret shown once)
//	GET    /developers/webhooks        the account's endpoints (developers:read)
//	GET, PATCH, DELETE /developers/webhooks/{id}   one endpoint (read; write; write)
//	POST   /developers/webhooks/{id}/roll-secret   a new signing secret (developers:write)
//	POST   /developers/webhooks/{id}/test          send a webhook.test event (developers:write; 202)
//	GET    /developers/webhooks/{id}/deliveries    its deliveries, newest first (developers:read)
//	POST   /developers/webhooks/{id}/deliveries/{delivery_id}/retry  retry one now (developers:write; 202)
//
// The caller authenticates with a key (or through WithAuthenticator) and
// sees and changes only its own account's keys: another account's key ID is
// a 404, not a 403. It grants no permission it lacks, and a test key cannot
// touch live keys. The POSTs that make a key, an endpoint or a secret
// (create and roll a key, create an endpoint, roll its secret) accept an
// Idempotency-Key, honoured for 24 hours; a test event or a retried
// delivery sent twice is sent twice.
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
	a.mux.Handle("GET /developers/logs", a.endpoint(PermissionReadKeys, logReads, a.logs))
	a.mux.Handle("GET /developers/logs/{request_id}", a.endpoint(PermissionReadKeys, logReads, a.logEntry))
	a.mux.Handle("GET /developers/events", a.endpoint(PermissionReadKeys, "", a.events))
	a.mux.Handle("GET /developers/events/{id}", a.endpoint(PermissionReadKeys, "", a.event))
	a.mux.Handle("POST /developers/webhooks", a.endpoint(PermissionManageKeys, "", a.createWebhook))
	a.mux.Handle("GET /developers/webhooks", a.endpoint(PermissionReadKeys, "", a.listWebhooks))
	a.mux.Handle("GET /developers/webhooks/{id}", a.endpoint(PermissionReadKeys, "", a.getWebhook))
	a.mux.Handle("PATCH /developers/webhooks/{id}", a.endpoint(PermissionManageKeys, "", a.updateWebhook))
	a.mux.Handle("DELETE /developers/webhooks/{id}", a.endpoint(PermissionManageKeys, "", a.deleteWebhook))
	a.mux.Handle("POST /developers/webhooks/{id}/roll-secret", a.endpoint(PermissionManageKeys, "", a.rollWebhookSecret))
	a.mux.Handle("POST /developers/webhooks/{id}/test", a.endpoint(PermissionManageKeys, "", a.testWebhook))
	a.mux.Handle("GET /developers/webhooks/{id}/deliveries", a.endpoint(PermissionReadKeys, "", a.deliveries))
	a.mux.Handle("POST /developers/webhooks/{id}/deliveries/{delivery_id}/retry", a.endpoint(PermissionManageKeys, "", a.retryDelivery))
	// Known paths, other methods: 405 in the envelope (ServeMux's own 405
	// is plain text).
	for path, allow := range map[string]string{
		"/developers/keys":                                         "GET, POST",
		"/developers/keys/{id}":                                    "GET, PATCH, DELETE",
		"/developers/keys/{id}/roll":                               "POST",
		"/developers/usage":                                        "GET",
		"/developers/keys/{id}/usage":                              "GET",
		"/developers/account":                                      "GET",
		"/developers/logs":                                         "GET",
		"/developers/logs/{request_id}":                            "GET",
		"/developers/events":                                       "GET",
		"/developers/events/{id}":                                  "GET",
		"/developers/webhooks":                                     "GET, POST",
		"/developers/webhooks/{id}":                                "GET, PATCH, DELETE",
		"/developers/webhooks/{id}/roll-secret":                    "POST",
		"/developers/webhooks/{id}/test":                           "POST",
		"/developers/webhooks/{id}/deliveries":                     "GET",
		"/developers/webhooks/{id}/deliveries/{delivery_id}/retry": "POST",
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
				// Behind another Middleware, which gave the response its
				// request ID and logs the request.
				if err := a.check(v, perms); err != nil {
					a.WriteError(w, r, err)
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			s := a.begin(w, r)
			api := a.c.apiOf(r)
			var release func()
			err := a.authenticate(w, r, s.ip, perms, api, &s.ctx.V, &release)
			v := &s.ctx.V
			if err == nil {
				defer release() // a panicking handler gives it back too
				s.ctx.Context = r.Context()
				defer func() {
					if p := recover(); p != nil {
						// Counted as net/http answers it (500, unless the
						// handler had answered), then panicking on.
						status := cmp.Or(s.sw.status, http.StatusInternalServerError)
						a.m.CountUsage(v, api, status)
						a.logRequest(r, s, api, status)
						panic(p)
					}
					status := cmp.Or(s.sw.status, http.StatusOK)
					if r.Context().Err() != nil {
						status = StatusClientClosedRequest // the client left before the handler returned
					}
					a.m.CountUsage(v, api, status)
					a.logRequest(r, s, api, status)
				}()
				r2 := r.WithContext(&s.ctx)
				if r.Body != nil && r.Body != http.NoBody {
					s.body.ReadCloser = r.Body
					r2.Body = &s.body
				}
				next.ServeHTTP(&s.sw, r2)
				return
			}
			switch {
			case errors.Is(err, keys.ErrRateLimited):
				a.m.CountUsage(v, api, http.StatusTooManyRequests)
			case errors.Is(err, keys.ErrCreditsExhausted):
				a.m.CountUsage(v, api, http.StatusPaymentRequired) // failed, not a rate-limit hit
			case errors.Is(err, context.Canceled):
				a.m.CountUsage(v, api, StatusClientClosedRequest) // a key it had found, if any
			}
			a.WriteError(&s.sw, r, err)
			a.logRequest(r, s, api, s.sw.status)
		})
	}
}

// logRequest records the request in the Manager's request log.
func (a *Adapter) logRequest(r *http.Request, s *served, api string, status int) {
	v := &s.ctx.V
	e := reqlog.Entry{RequestID: s.id, Timestamp: s.start, AccountID: v.AccountID, Environment: string(v.Environment),
		Method: r.Method, Path: r.Pattern, API: api, Status: status,
		ErrorType: s.sw.errType, ErrorCode: s.sw.errCode, Limit: s.sw.limit, Latency: time.Since(s.start),
		IP: s.ip, UserAgent: r.UserAgent(), RequestBytes: s.body.n, ResponseBytes: s.sw.bytes}
	if a.c.authenticate == nil {
		e.KeyID = v.KeyID // a principal's Subject is no key
	}
	if e.Path == "" {
		e.Path = r.URL.EscapedPath() // never the query; the flusher cuts it
	}
	if e.RequestBytes == 0 && r.ContentLength > 0 {
		e.RequestBytes = r.ContentLength // what the client said it sent, when the handler read none of it
	}
	a.m.LogRequest(&e)
}

// begin starts serving a request of the middleware or the key
// endpoints: what it needs, in one allocation (the handler's context,
// the status writer, the body counter), its start, its client address,
// and its request ID, given to the response at once (the host's, with
// WithRequestID, or the library's own; the header's value lives in s,
// with no allocation of its own).
func (a *Adapter) begin(w http.ResponseWriter, r *http.Request) *served {
	s := &served{sw: statusWriter{ResponseWriter: w}, start: time.Now(), ip: a.c.clientIP(r)}
	s.id = a.c.requestID(r)
	s.idHeader[0] = s.id
	w.Header()["Request-Id"] = s.idHeader[:]
	return s
}

// countingBody counts the bytes a handler reads of the request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// served is a request as the middleware and the key endpoints serve it:
// the handler's context (carrying the verified caller), the writer that
// notes the status and size, the body counter, and what the request log
// keeps of it.
type served struct {
	ctx      verifiedctx.Holder[keys.Verified]
	sw       statusWriter
	body     countingBody
	start    time.Time
	id       string
	idHeader [1]string // the Request-Id header's value
	ip       netip.Addr
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

// statusWriter notes the status a handler answers with, for usage, and
// what the request log keeps of the answer: its size, and the envelope's
// type, code and limit when WriteError wrote it.
type statusWriter struct {
	http.ResponseWriter
	status                  int
	bytes                   int64
	errType, errCode, limit string
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
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer
// (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
