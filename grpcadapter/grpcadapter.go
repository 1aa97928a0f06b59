// Package grpcadapter holds gRPC services to the same rules as
// httpadapter's Middleware: an API key from the "authorization" metadata
// ("Bearer <key>"), the client address from the peer (or, behind trusted
// proxies, from "x-forwarded-for"), the permissions each method requires,
// the key's rate limit, and the verified key in the context, where
// keys.FromContext finds it.
//
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(grpcadapter.UnaryServerInterceptor(m,
//			grpcadapter.Require("/txcloud.v1.Identity/Verify", "identity:read"))),
//		grpc.ChainStreamInterceptor(grpcadapter.StreamServerInterceptor(m,
//			grpcadapter.Require("/txcloud.v1.Identity/Verify", "identity:read"))),
//	)
//
// Refusals are gRPC statuses with details (google.rpc.ErrorInfo, whose
// reason is the HTTP adapter's error code; google.rpc.RetryInfo on a rate
// limit): a missing, malformed, unknown, expired, revoked or wrong-
// environment key, or a client address the key does not allow, is
// Unauthenticated; a missing permission PermissionDenied; a rate limit
// ResourceExhausted; a store or limiter that cannot answer Unavailable. No
// message or detail ever holds the key. A rate-limited key's state goes in
// the response header metadata (x-ratelimit-limit, -remaining, -reset,
// -window), on success and on refusal.
package grpcadapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/clientip"
	"github.com/txcloud/keys/internal/refusal"
	"github.com/txcloud/keys/internal/reqid"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/reqlog"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Domain is the ErrorInfo domain of every refusal.
const Domain = "keys.txcloud"

type config struct {
	require   map[string][]string // full method name: permissions
	public    map[string]bool
	trusted   []netip.Prefix
	env       keys.Environment
	requestID func(context.Context) string
}

// Option configures an interceptor.
type Option func(*config)

// Require makes fullMethod ("/package.Service/Method") need perms. A
// method not named by Require needs a valid key and nothing more.
func Require(fullMethod string, perms ...string) Option {
	return func(c *config) { c.require[fullMethod] = append(c.require[fullMethod], perms...) }
}

// Public lets fullMethods through without a key (a health check, a
// reflection service): the interceptor does nothing for them.
func Public(fullMethods ...string) Option {
	return func(c *config) {
		for _, m := range fullMethods {
			c.public[m] = true
		}
	}
}

// WithTrustedProxies names the proxies whose "x-forwarded-for" metadata is
// believed: when the peer is one of them, the client is the right-most
// address in that metadata that is not a trusted proxy. Without it the
// client is the peer.
func WithTrustedProxies(prefixes ...netip.Prefix) Option {
	return func(c *config) { c.trusted = append(c.trusted, prefixes...) }
}

// WithRequestID sets the ID each call gets in its "request-id" response
// header, which the request log keeps (as given), to reuse the host's
// own request IDs. Default: "req_" and 130 random bits, as over HTTP.
func WithRequestID(f func(context.Context) string) Option {
	return func(c *config) { c.requestID = f }
}

// WithEnvironment accepts only keys of env on every method.
func WithEnvironment(env keys.Environment) Option {
	return func(c *config) { c.env = env }
}

// newConfig applies opts. It panics on a permission outside the Manager's
// vocabulary (no key could hold it, so the method would refuse everyone),
// a method both public and requiring permissions, or an unknown
// environment: configuration mistakes, found when the server is built.
func newConfig(m *keys.Manager, opts []Option) *config {
	if m == nil {
		panic("grpcadapter: nil Manager")
	}
	c := &config{require: map[string][]string{}, public: map[string]bool{}, requestID: randomRequestID}
	for _, o := range opts {
		o(c)
	}
	if c.requestID == nil {
		panic("grpcadapter: WithRequestID: nil function")
	}
	vocab := m.Vocabulary()
	for method, perms := range c.require {
		if !strings.HasPrefix(method, "/") || strings.Count(method, "/") != 2 {
			panic(fmt.Sprintf("grpcadapter: Require: %q is not a full method name (/package.Service/Method)", method))
		}
		if c.public[method] {
			panic(fmt.Sprintf("grpcadapter: %s is both Public and Required", method))
		}
		for _, p := range perms {
			if !slices.Contains(vocab, p) {
				panic(fmt.Sprintf("grpcadapter: Require(%s): permission %q is not in the Manager's vocabulary", method, p))
			}
		}
		c.require[method] = slices.Compact(slices.Sorted(slices.Values(perms)))
	}
	if c.env != "" && c.env != keys.Live && c.env != keys.Test {
		panic(fmt.Sprintf("grpcadapter: WithEnvironment(%q): want live or test", c.env))
	}
	return c
}

// UnaryServerInterceptor verifies the caller's key before each unary call.
func UnaryServerInterceptor(m *keys.Manager, opts ...Option) grpc.UnaryServerInterceptor {
	c := newConfig(m, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if c.public[info.FullMethod] {
			return handler(ctx, req)
		}
		call := c.start(ctx, func(md metadata.MD) { _ = grpc.SetHeader(ctx, md) })
		var release func()
		v, err := c.verify(ctx, m, info.FullMethod, call.ip, call.setHeader, &release)
		if err != nil {
			countRefusal(m, &v, info.FullMethod, err)
			call.logRefusal(ctx, m, &v, info.FullMethod, err)
			return nil, Status(err).Err()
		}
		defer release()
		if pm, ok := req.(proto.Message); ok {
			call.requestBytes = int64(proto.Size(pm))
		}
		resp, err := handler(keys.NewContext(ctx, v), req)
		st := answered(ctx, err)
		m.CountUsage(&v, info.FullMethod, st)
		if pm, ok := resp.(proto.Message); ok && err == nil {
			call.responseBytes = int64(proto.Size(pm))
		}
		call.logAnswer(ctx, m, &v, info.FullMethod, st)
		return resp, err
	}
}

// StreamServerInterceptor verifies the caller's key once, when a stream
// opens.
func StreamServerInterceptor(m *keys.Manager, opts ...Option) grpc.StreamServerInterceptor {
	c := newConfig(m, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if c.public[info.FullMethod] {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		call := c.start(ctx, func(md metadata.MD) { _ = ss.SetHeader(md) })
		var release func()
		v, err := c.verify(ctx, m, info.FullMethod, call.ip, call.setHeader, &release)
		if err != nil {
			countRefusal(m, &v, info.FullMethod, err)
			call.logRefusal(ctx, m, &v, info.FullMethod, err)
			return Status(err).Err()
		}
		defer release() // a stream is in flight until its handler returns
		err = handler(srv, &stream{ServerStream: ss, ctx: keys.NewContext(ctx, v)})
		st := answered(ctx, err)
		m.CountUsage(&v, info.FullMethod, st)
		call.logAnswer(ctx, m, &v, info.FullMethod, st)
		return err
	}
}

// countRefusal counts a call of a verified key that a limit refused (a
// rate-limit hit) or its credits could not pay for (a failure), under the
// method's full name as its API. err is the keys package's error.
func countRefusal(m *keys.Manager, v *keys.Verified, method string, err error) {
	switch {
	case v.KeyID == "":
	case errors.Is(err, keys.ErrRateLimited):
		m.CountUsage(v, method, 429)
	case errors.Is(err, keys.ErrCreditsExhausted):
		m.CountUsage(v, method, 402)
	}
}

// stream carries the verified key in its context.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// verify authenticates the call: the bearer token, the client address,
// then keys.Verify with the method's permissions and the environment, so
// that a refused key does not spend its limit, counting the call in flight
// first (keys.InFlight: *release ends it). The rate-limit state goes to
// setHeader whenever the limiter counted the call.
func (c *config) verify(ctx context.Context, m *keys.Manager, method string, ip netip.Addr, setHeader func(metadata.MD), release *func()) (keys.Verified, error) {
	// ValueFromIncomingContext, not FromIncomingContext, which copies
	// every key and value of the metadata on each call.
	token, err := bearer(metadata.ValueFromIncomingContext(ctx, "authorization"))
	if err != nil {
		return keys.Verified{}, err
	}
	// A gRPC call is an HTTP/2 POST to its full method name, and plans'
	// endpoint patterns match it as one: "POST /txcloud.v1.Identity/Verify".
	// Its API (usage, prices, credit costs) is the full method name. On
	// the stack, filled by index (append's growth would move release to
	// the heap).
	var buf [6]keys.VerifyOption
	buf[0], buf[1], buf[2], buf[3] = keys.FromIP(ip), keys.OnEndpoint("POST", method), keys.OnAPI(method), keys.InFlight(release)
	n := 4
	if perms := c.require[method]; len(perms) > 0 {
		buf[n], n = keys.Require(perms...), n+1
	}
	if c.env != "" {
		buf[n], n = keys.InEnvironment(c.env), n+1
	}
	opts := buf[:n]
	v, err := m.Verify(ctx, token, opts...)
	if rl := v.RateLimit; rl.Limit > 0 {
		setHeader(rateLimitMD(rl))
	}
	return v, err // v.KeyID is set when a limit or the credits refused a key that verified
}

var (
	errNoCredentials = errors.New("missing API key: send authorization: Bearer <key>")
	errBadAuth       = errors.New("malformed authorization metadata: send authorization: Bearer <key>")
)

// bearer takes the key from the one "authorization" value.
func bearer(vals []string) (string, error) {
	switch len(vals) {
	case 0:
		return "", errNoCredentials
	case 1:
	default:
		return "", errBadAuth
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", errBadAuth
	}
	return token, nil
}

// clientIP is the peer's address, or behind trusted proxies the address
// "x-forwarded-for" gives (clientip.Resolve: the same walk as over HTTP).
func (c *config) clientIP(ctx context.Context) netip.Addr {
	var peerAddr netip.Addr
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		switch a := p.Addr.(type) {
		case *net.TCPAddr: // the usual case, read without formatting it
			peerAddr, _ = netip.AddrFromSlice(a.IP)
			peerAddr = peerAddr.Unmap()
		default:
			peerAddr = clientip.ParseHostPort(a.String())
		}
	}
	return clientip.Resolve(peerAddr, c.trusted, func() []string {
		return clientip.List(metadata.ValueFromIncomingContext(ctx, "x-forwarded-for"))
	})
}

func rateLimitMD(rl limit.Status) metadata.MD {
	reset := rl.Reset.Unix()
	if rl.Reset.Nanosecond() > 0 {
		reset++
	}
	window := rl.Name.Window()
	if window == 0 {
		window = limit.Window
	}
	return metadata.Pairs(
		"x-ratelimit-limit", strconv.Itoa(rl.Limit),
		"x-ratelimit-remaining", strconv.Itoa(rl.Remaining),
		"x-ratelimit-reset", strconv.FormatInt(reset, 10),
		"x-ratelimit-window", strconv.Itoa(int(window/time.Second)),
	)
}

// grpcCodes is the gRPC code of each kind of refusal. A key limit is
// ResourceExhausted: gRPC keeps PermissionDenied for refusals that are not
// about exhausting a resource. Spent credits are ResourceExhausted too
// ("a per-user quota"), told apart from a rate limit by the ErrorInfo
// reason (credits_exhausted), with a RetryInfo only when a refill is due.
var grpcCodes = [...]codes.Code{
	refusal.Internal:            codes.Internal,
	refusal.Unauthenticated:     codes.Unauthenticated,
	refusal.Forbidden:           codes.PermissionDenied,
	refusal.KeyLimit:            codes.ResourceExhausted,
	refusal.RateLimited:         codes.ResourceExhausted,
	refusal.CreditsExhausted:    codes.ResourceExhausted, // ErrorInfo reason credits_exhausted
	refusal.Invalid:             codes.InvalidArgument,
	refusal.IdempotencyConflict: codes.AlreadyExists,
	refusal.NotFound:            codes.NotFound,
	refusal.Unavailable:         codes.Unavailable,
	refusal.ClientGone:          codes.Canceled,
}

// Status maps an error of the keys package to the gRPC status the
// interceptors answer, with an ErrorInfo detail whose reason is the HTTP
// adapter's error code (and a RetryInfo on a rate limit). Handlers may use
// it for their own calls into the Manager. Anything it does not know is
// Internal, with a fixed message: the error's text is not sent.
func Status(err error) *status.Status {
	r := refusalOf(err)
	st := status.New(grpcCodes[r.Kind], r.Message)
	info := &errdetails.ErrorInfo{Reason: r.Code, Domain: Domain}
	if r.Limit != "" {
		info.Metadata = map[string]string{"limit": r.Limit} // which limit refused the call
	}
	details := []protoadapt.MessageV1{info}
	if r.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(r.RetryAfter)})
	}
	if ds, err := st.WithDetails(details...); err == nil {
		return ds
	}
	return st
}

// refusalOf classifies err: this adapter's own refusals (no key, a
// malformed authorization) and, through internal/refusal, the keys
// package's errors, classified once for this adapter and the HTTP one.
func refusalOf(err error) refusal.Refusal {
	if errors.Is(err, errNoCredentials) || errors.Is(err, errBadAuth) {
		return refusal.Refusal{Kind: refusal.Unauthenticated, Code: "unauthorized", Message: err.Error()}
	}
	return refusal.Of(err)
}

// call is what the request log keeps of a call while it runs.
type call struct {
	id                          string
	start                       time.Time
	ip                          netip.Addr
	setHeader                   func(metadata.MD)
	requestBytes, responseBytes int64
}

// start gives the call its request ID, sent at once in the "request-id"
// response header (before any other, so a refusal carries it too).
func (c *config) start(ctx context.Context, setHeader func(metadata.MD)) call {
	cl := call{id: c.requestID(ctx), start: time.Now(), ip: c.clientIP(ctx), setHeader: setHeader}
	setHeader(metadata.MD{"request-id": []string{cl.id}})
	return cl
}

// logRefusal records a refused call (err is the keys package's, or
// this adapter's) in the Manager's request log, with the status, type,
// code and limit the HTTP adapter would answer.
func (cl *call) logRefusal(ctx context.Context, m *keys.Manager, v *keys.Verified, method string, err error) {
	r := refusalOf(err)
	e := cl.entry(ctx, v, method)
	e.Status, e.ErrorType = r.Kind.HTTP()
	e.ErrorCode, e.Limit = r.Code, r.Limit
	if ctx.Err() != nil {
		e.Status = 499 // the client left before the answer
	}
	m.LogRequest(&e)
}

// logAnswer records a call its handler answered with status (answered).
func (cl *call) logAnswer(ctx context.Context, m *keys.Manager, v *keys.Verified, method string, status int) {
	e := cl.entry(ctx, v, method)
	e.Status = status
	m.LogRequest(&e)
}

// entry is what the log keeps of every call.
func (cl *call) entry(ctx context.Context, v *keys.Verified, method string) reqlog.Entry {
	e := reqlog.Entry{RequestID: cl.id, Timestamp: cl.start, AccountID: v.AccountID, KeyID: v.KeyID, Environment: string(v.Environment),
		Method: "POST", Path: method, API: method, Latency: time.Since(cl.start), IP: cl.ip,
		RequestBytes: cl.requestBytes, ResponseBytes: cl.responseBytes}
	if ua := metadata.ValueFromIncomingContext(ctx, "user-agent"); len(ua) > 0 {
		e.UserAgent = ua[0]
	}
	return e
}

// answered is the HTTP status of a handler's answer, for usage and the
// request log alike: its gRPC code's (statusOfCode), or 499 when the
// client left first.
func answered(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		return 499
	}
	return statusOfCode(status.Code(err))
}

// statusOfCode is the HTTP status of a handler's gRPC code, as
// grpc-gateway maps them.
func statusOfCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.Unauthenticated:
		return 401
	case codes.PermissionDenied:
		return 403
	case codes.NotFound:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.ResourceExhausted:
		return 429
	case codes.Unimplemented:
		return 501
	case codes.Unavailable:
		return 503
	case codes.DeadlineExceeded:
		return 504
	}
	return 500
}

func randomRequestID(context.Context) string { return reqid.New() }
