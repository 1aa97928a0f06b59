package grpcadapter_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/grpcadapter"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

const (
	check = "/grpc.health.v1.Health/Check"
	watch = "/grpc.health.v1.Health/Watch"
)

// health answers only when the interceptor put a verified key in the
// context, and returns its ID in the trailer.
type health struct {
	healthpb.UnimplementedHealthServer
}

func (health) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if v, ok := keys.FromContext(ctx); ok {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("key-id", v.KeyID))
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (health) Watch(_ *healthpb.HealthCheckRequest, s grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if v, ok := keys.FromContext(s.Context()); ok {
		s.SetTrailer(metadata.Pairs("key-id", v.KeyID))
	}
	return s.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// clock is a settable clock, read by the Manager's goroutines too.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// serve runs the health service behind both interceptors on lis and
// returns a client.
func serve(t testing.TB, m *keys.Manager, lis net.Listener, dial func(context.Context, string) (net.Conn, error), opts ...grpcadapter.Option) healthpb.HealthClient {
	t.Helper()
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcadapter.UnaryServerInterceptor(m, opts...)),
		grpc.ChainStreamInterceptor(grpcadapter.StreamServerInterceptor(m, opts...)),
	)
	healthpb.RegisterHealthServer(srv, health{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	target := "passthrough:///" + lis.Addr().String()
	if dial != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(dial))
		target = "passthrough:///bufnet"
	}
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func bufServe(t testing.TB, m *keys.Manager, opts ...grpcadapter.Option) healthpb.HealthClient {
	lis := bufconn.Listen(1 << 20)
	return serve(t, m, lis, func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }, opts...)
}

func withKey(key string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+key)
}

// refused checks err's code and ErrorInfo reason, and that neither its
// message nor its details hold any of secrets.
func refused(t *testing.T, err error, code codes.Code, reason string, secrets ...string) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v, want %v", err, code)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.Reason != reason || info.Domain != grpcadapter.Domain {
		t.Fatalf("%v: ErrorInfo %v, want reason %q", code, info, reason)
	}
	for _, s := range secrets {
		if strings.Contains(st.Message(), s) || strings.Contains(st.String(), s) {
			t.Fatalf("the refusal echoes the key: %v", st)
		}
	}
	return st
}

func newManager(t testing.TB, st store.Store, opts ...keys.Option) *keys.Manager {
	m, err := keys.New(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func create(t testing.TB, m *keys.Manager, req keys.APIKeyCreate) *keys.APIKeyCreated {
	t.Helper()
	if req.AccountID == "" {
		req.AccountID = "acct_grpc"
	}
	if req.Name == "" {
		req.Name = "grpc"
	}
	if req.Environment == "" {
		req.Environment = keys.Test
	}
	k, err := m.Create(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Every outcome of a unary call: the verified key reaches the handler, and
// each refusal has its code and reason without echoing the key.
func TestUnary(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newManager(t, memstore.New(), keys.WithClock(clk.Now))
	c := bufServe(t, m, grpcadapter.Require(watch, "identity:read"), grpcadapter.Require(check, "identity:read"))

	good := create(t, m, keys.APIKeyCreate{Permissions: []string{"identity:read"}})
	var trailer metadata.MD
	if _, err := c.Check(withKey(string(good.Key)), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer)); err != nil {
		t.Fatalf("a valid key: %v", err)
	}
	if got := trailer.Get("key-id"); len(got) != 1 || got[0] != good.ID {
		t.Fatalf("the handler saw key %v, want %s", got, good.ID)
	}

	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "unauthorized")
	for _, bad := range [][]string{
		{"authorization", "Basic " + string(good.Key)},
		{"authorization", "Bearer"},
		{"authorization", "Bearer " + string(good.Key) + " extra"},
		{"authorization", "Bearer " + string(good.Key), "authorization", "Bearer " + string(good.Key)},
	} {
		_, err := c.Check(metadata.AppendToOutgoingContext(ctx, bad...), &healthpb.HealthCheckRequest{})
		refused(t, err, codes.Unauthenticated, "unauthorized", string(good.Key))
	}

	last := "x"
	if good.Key[len(good.Key)-1] == 'x' { // one key in 62: "x" would change nothing
		last = "y"
	}
	forged := string(good.Key[:len(good.Key)-1]) + last
	_, err = c.Check(withKey(forged), &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "unauthorized", forged)

	weak := create(t, m, keys.APIKeyCreate{Permissions: []string{"transactions:read"}})
	_, err = c.Check(withKey(string(weak.Key)), &healthpb.HealthCheckRequest{})
	refused(t, err, codes.PermissionDenied, "forbidden", string(weak.Key))

	live := create(t, m, keys.APIKeyCreate{Environment: keys.Live, Permissions: []string{"identity:read"}})
	envOnly := bufServe(t, m, grpcadapter.WithEnvironment(keys.Test))
	_, err = envOnly.Check(withKey(string(live.Key)), &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "unauthorized", string(live.Key))

	exp := clk.Now().Add(time.Hour)
	expiring := create(t, m, keys.APIKeyCreate{Permissions: []string{"identity:read"}, ExpiresAt: &exp})
	revoked := create(t, m, keys.APIKeyCreate{Permissions: []string{"identity:read"}})
	if _, err := m.Revoke(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(withKey(string(revoked.Key)), &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "key_revoked", string(revoked.Key))
	disabled := create(t, m, keys.APIKeyCreate{Permissions: []string{"identity:read"}, Disabled: true})
	_, err = c.Check(withKey(string(disabled.Key)), &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "key_disabled", string(disabled.Key))
	clk.set(exp)
	_, err = c.Check(withKey(string(expiring.Key)), &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "unauthorized", string(expiring.Key))

	open := bufServe(t, m, grpcadapter.Public(check))
	if _, err := open.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a public method without a key: %v", err)
	}
}

// A key's rate limit: each answer carries the limit in its header
// metadata, and the call over it is ResourceExhausted with a RetryInfo
// that says when to come back.
func TestRateLimit(t *testing.T) {
	m := newManager(t, memstore.New())
	c := bufServe(t, m)
	two := 2
	k := create(t, m, keys.APIKeyCreate{RateLimit: &two})
	for i := range 2 {
		var hdr metadata.MD
		if _, err := c.Check(withKey(string(k.Key)), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := hdr.Get("x-ratelimit-remaining"); len(got) != 1 || got[0] != []string{"1", "0"}[i] || hdr.Get("x-ratelimit-limit")[0] != "2" || hdr.Get("x-ratelimit-window")[0] != "60" {
			t.Fatalf("call %d: header %v", i, hdr)
		}
	}
	var hdr metadata.MD
	_, err := c.Check(withKey(string(k.Key)), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
	st := refused(t, err, codes.ResourceExhausted, "rate_limit_exceeded", string(k.Key))
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 || retry.RetryDelay.AsDuration() > 30*time.Second {
		t.Fatalf("RetryInfo %v", retry)
	}
	if got := hdr.Get("x-ratelimit-remaining"); len(got) != 1 || got[0] != "0" {
		t.Fatalf("a refused call's header: %v", hdr)
	}
}

// failing is a store that cannot answer.
type failing struct{ store.Store }

func (failing) LookupDigest(context.Context, store.Digest) (*store.Record, error) {
	return nil, errors.New("connection refused")
}

// A store that cannot answer is Unavailable (never Unauthenticated, which
// would tell the client its key is bad).
func TestStoreDown(t *testing.T) {
	inner := memstore.New()
	k := create(t, newManager(t, inner), keys.APIKeyCreate{})
	m := newManager(t, failing{inner})
	_, err := bufServe(t, m).Check(withKey(string(k.Key)), &healthpb.HealthCheckRequest{})
	st := refused(t, err, codes.Unavailable, "service_unavailable", string(k.Key))
	if strings.Contains(st.Message(), "connection refused") {
		t.Fatalf("the store's error reached the client: %v", st)
	}
}

// Streams are verified when they open: the handler's stream context holds
// the key; a refused stream fails on its first receive.
func TestStream(t *testing.T) {
	m := newManager(t, memstore.New())
	c := bufServe(t, m, grpcadapter.Require(watch, "identity:read"))
	good := create(t, m, keys.APIKeyCreate{Permissions: []string{"identity:read"}})
	s, err := c.Watch(withKey(string(good.Key)), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("a valid key's stream: %v", err)
	}
	for {
		if _, err := s.Recv(); err != nil {
			break
		}
	}
	if got := s.Trailer().Get("key-id"); len(got) != 1 || got[0] != good.ID {
		t.Fatalf("the stream handler saw key %v, want %s", got, good.ID)
	}
	weak := create(t, m, keys.APIKeyCreate{Permissions: []string{"transactions:read"}})
	for key, code := range map[string]codes.Code{"": codes.Unauthenticated, string(weak.Key): codes.PermissionDenied} {
		ctx := context.Background()
		if key != "" {
			ctx = withKey(key)
		}
		s, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != code {
			t.Fatalf("stream with a key: %v: %v, want %v", key != "", err, code)
		}
	}
	open := bufServe(t, m, grpcadapter.Public(watch))
	s, err = open.Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if err != nil {
		t.Fatalf("a public stream without a key: %v", err)
	}
}

// Over TCP: a key limited to 10.0.0.0/8 is refused from 127.0.0.1, and
// accepted when a trusted proxy at 127.0.0.1 forwards for 10.1.2.3; an
// untrusted peer's x-forwarded-for is ignored.
func TestClientAddress(t *testing.T) {
	m := newManager(t, memstore.New())
	k := create(t, m, keys.APIKeyCreate{AllowedIPs: []string{"10.0.0.0/8"}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	direct := serve(t, m, lis, nil)
	forwarded := metadata.AppendToOutgoingContext(withKey(string(k.Key)), "x-forwarded-for", "10.1.2.3")
	_, err = direct.Check(forwarded, &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "ip_not_allowed", string(k.Key))

	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxied := serve(t, m, lis2, nil, grpcadapter.WithTrustedProxies(netip.MustParsePrefix("127.0.0.1/32")))
	if _, err := proxied.Check(forwarded, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("behind a trusted proxy, forwarded for an allowed address: %v", err)
	}
	spoofed := metadata.AppendToOutgoingContext(withKey(string(k.Key)), "x-forwarded-for", "10.1.2.3, 192.0.2.9")
	_, err = proxied.Check(spoofed, &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "ip_not_allowed", string(k.Key))

	// Two proxies: the walk passes the second trusted one to the client.
	lis3, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	chained := serve(t, m, lis3, nil, grpcadapter.WithTrustedProxies(netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("192.0.2.0/24")))
	if _, err := chained.Check(spoofed, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("through two trusted proxies, for an allowed address: %v", err)
	}
	bad := metadata.AppendToOutgoingContext(withKey(string(k.Key)), "x-forwarded-for", "10.1.2.3, not-an-address, 192.0.2.9")
	_, err = chained.Check(bad, &healthpb.HealthCheckRequest{})
	refused(t, err, codes.Unauthenticated, "ip_not_allowed", string(k.Key))
}

// Configuration mistakes panic when the server is built, not on a call.
func TestBadOptionsPanic(t *testing.T) {
	m := newManager(t, memstore.New())
	for name, opts := range map[string][]grpcadapter.Option{
		"a permission outside the vocabulary": {grpcadapter.Require(check, "no:such")},
		"not a full method name":              {grpcadapter.Require("Check", "identity:read")},
		"public and required":                 {grpcadapter.Public(check), grpcadapter.Require(check, "identity:read")},
		"an unknown environment":              {grpcadapter.WithEnvironment("staging")},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			grpcadapter.UnaryServerInterceptor(m, opts...)
		}()
	}
}
