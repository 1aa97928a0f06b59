package keysotel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/credits"
	"github.com/txcloud/keys/keysotel"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
	"go.opentelemetry.io/otel/attribute"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
)

type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	o      *keysotel.Observer
}

func newTelemetry(t testing.TB) *telemetry {
	tel := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	o, err := keysotel.New(keysotel.WithMeterProvider(mp), keysotel.WithTracerProvider(tel.tp))
	if err != nil {
		t.Fatal(err)
	}
	tel.o = o
	return tel
}

// sums collects the counter name and returns its values by their
// attributes, written "k=v,k=v".
func (tel *telemetry) sums(t *testing.T, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[label(p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[label(p.Attributes)] = int64(p.Count)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[label(p.Attributes)] = int64(p.Value * 1e6) // µs
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[label(p.Attributes)] = p.Value
				}
			}
		}
	}
	return out
}

func label(s attribute.Set) string {
	var parts []string
	for _, kv := range s.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	return strings.Join(parts, ",")
}

// down is a store whose Get fails, as a store whose database is gone.
type down struct{ store.Store }

func (down) Get(context.Context, string) (*store.Record, error) {
	return nil, errors.New("connection refused")
}

// List fails with its caller's context's error once it is done, as a
// database driver's does.
func (d down) List(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return d.Store.List(ctx, q)
}

// Verifications by outcome, operations by result, spans for operations
// and the store calls inside them, store errors by method (the
// contract's answers are not errors), and no key anywhere in them.
func TestMetricsAndSpans(t *testing.T) {
	ctx := context.Background()
	tel := newTelemetry(t)
	m, err := keys.New(tel.o.Store(down{memstore.New()}), keys.WithObserver(tel.o))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "otel", Environment: keys.Test, AccountID: "acct_otel"})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := m.Verify(ctx, string(k.Key)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		_, _ = m.Verify(ctx, "txc_test_forged")
	}
	if _, err := m.Get(ctx, k.ID); err == nil {
		t.Fatal("Get on a store that is down succeeded")
	}
	if _, err := m.List(ctx, keys.ListFilter{AccountID: "acct_otel"}); err != nil {
		t.Fatal(err)
	}
	gone, leave := context.WithCancel(ctx)
	leave()
	if _, err := m.List(gone, keys.ListFilter{AccountID: "acct_otel"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("List for a caller that left: %v", err)
	}
	if got := tel.sums(t, "keys.verifications"); got["outcome=valid"] != 3 || got["outcome=invalid"] != 2 || len(got) != 2 {
		t.Fatalf("keys.verifications: %v", got)
	}
	if got := tel.sums(t, "keys.operations"); got["operation=create,result=ok"] != 1 || got["operation=get,result=error"] != 1 || got["operation=list,result=ok"] != 1 || got["operation=list,result=error"] != 1 {
		t.Fatalf("keys.operations: %v", got)
	}
	// A caller that left is not the store's failure.
	if got := tel.sums(t, "keys.store.errors"); got["method=Get"] != 1 || len(got) != 1 {
		t.Fatalf("keys.store.errors: %v", got)
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range tel.spans.Ended() {
		byName[s.Name()] = s
		text := fmt.Sprint(s.Name(), s.Attributes(), s.Status(), s.Events())
		if strings.Contains(text, string(k.Key)) || strings.Contains(text, string(k.Key[10:])) || strings.Contains(text, "connection refused") {
			t.Fatalf("span %s carries a key or an error's text: %s", s.Name(), text)
		}
	}
	create, write := byName["keys.create"], byName["keys.store.Write"]
	if create == nil || write == nil || write.Parent().SpanID() != create.SpanContext().SpanID() {
		t.Fatalf("want keys.store.Write inside keys.create; spans %v", byName)
	}
	get := byName["keys.get"]
	if get == nil || get.Status().Description != "unavailable" {
		t.Fatalf("keys.get: %v", get)
	}
	if _, ok := byName["keys.store.LookupDigest"]; ok {
		t.Fatal("a Verify outside any trace made a span")
	}
}

// A Verify inside a traced request gets its store call as a span.
func TestLookupSpanWhenTraced(t *testing.T) {
	ctx := context.Background()
	tel := newTelemetry(t)
	m, err := keys.New(tel.o.Store(memstore.New()), keys.WithObserver(tel.o))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "otel", Environment: keys.Test, AccountID: "acct_otel"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tel.tp.Tracer("host").Start(ctx, "request")
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatal(err)
	}
	span.End()
	for _, s := range tel.spans.Ended() {
		if s.Name() == "keys.store.LookupDigest" && s.Parent().SpanID() == span.SpanContext().SpanID() {
			return
		}
	}
	t.Fatalf("no keys.store.LookupDigest span under the request's: %d spans", len(tel.spans.Ended()))
}

type brokenLimiter struct{}

func (brokenLimiter) Allow(context.Context, limit.Checks, time.Time) (limit.Status, bool, error) {
	return limit.Status{}, false, errors.New("redis down")
}

// Limiter failures are counted, and the verification is unavailable.
func TestLimiterErrors(t *testing.T) {
	ctx := context.Background()
	tel := newTelemetry(t)
	m, err := keys.New(memstore.New(), keys.WithObserver(tel.o), keys.WithLimiter(tel.o.Limiter(brokenLimiter{})))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	five := 5
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "otel", Environment: keys.Test, AccountID: "acct_otel", RateLimit: &five})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("a verification with the limiter down: %v", err)
	}
	if got := tel.sums(t, "keys.limiter.errors"); got[""] != 1 {
		t.Fatalf("keys.limiter.errors: %v", got)
	}
	if got := tel.sums(t, "keys.verifications"); got["outcome=unavailable"] != 1 {
		t.Fatalf("keys.verifications: %v", got)
	}
}

// A store's own counters, read at collection.
func TestObserveStore(t *testing.T) {
	tel := newTelemetry(t)
	if err := tel.o.ObserveStore(func() keysotel.StoreStats {
		return keysotel.StoreStats{CacheHits: 7, FilterRefusals: 5, Queries: 3, CreditQueries: 11, SpentRefusals: 13, NotificationLag: 1500 * time.Microsecond, Listening: true}
	}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"keys.store.cache.hits": 7, "keys.store.filter.refusals": 5, "keys.store.queries": 3,
		"keys.store.credit.queries": 11, "keys.store.credit.spent_refusals": 13, "keys.store.notification.lag": 1500, "keys.store.listening": 1} {
		if got := tel.sums(t, name)[""]; got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
	}
}

// The duration histogram records the sampled verifications (one in 16),
// under their outcome; the counter records them all.
func TestDurationHistogramSamples(t *testing.T) {
	ctx := context.Background()
	tel := newTelemetry(t)
	m, err := keys.New(memstore.New(), keys.WithObserver(tel.o))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "otel", Environment: keys.Test, AccountID: "acct_otel"})
	if err != nil {
		t.Fatal(err)
	}
	for range 4000 {
		if _, err := m.Verify(ctx, string(k.Key)); err != nil {
			t.Fatal(err)
		}
	}
	if n := tel.sums(t, "keys.verifications")["outcome=valid"]; n != 4000 {
		t.Fatalf("counted %d of 4000", n)
	}
	if n := tel.sums(t, "keys.verification.duration")["outcome=valid"]; n < 150 || n > 400 {
		t.Fatalf("%d durations recorded for 4000 verifications, want about 250", n)
	}
}

// A wrapped store keeps its optional capabilities: through o.Store, a
// memstore still keeps credits and usage (before Unwrap, the demo's
// --metrics-addr silently turned both off).
func TestWrappedStoreKeepsCapabilities(t *testing.T) {
	ctx := context.Background()
	o, err := keysotel.New(keysotel.WithMeterProvider(noopmetric.NewMeterProvider()), keysotel.WithTracerProvider(nooptrace.NewTracerProvider()))
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.New(o.Store(memstore.New()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close(ctx) }()
	one := int64(1)
	k, err := m.Create(ctx, keys.APIKeyCreate{AccountID: "acct_w", Name: "wrapped", Environment: keys.Live, Credits: &credits.Budget{Remaining: one}})
	if err != nil {
		t.Fatalf("credits through the wrapper: %v", err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Verify(ctx, string(k.Key)); !errors.Is(err, keys.ErrCreditsExhausted) {
		t.Fatalf("the second request on a budget of 1: %v", err)
	}
	if _, err := m.UsageSummary(ctx, "acct_w", usage.Filter{}); err != nil {
		t.Fatalf("usage through the wrapper: %v", err)
	}
}

// Kind names each kind of an operation's error, wrapped or not, from its
// fixed set; anything else is "error", never its text.
func TestKind(t *testing.T) {
	for err, want := range map[error]string{
		nil: "",
		&keys.ValidationError{Param: "name", Message: "secret text"}:  "validation_error",
		&keys.PermissionError{Message: "this needs developers:write"}: "permission_denied",
		keys.ErrPermissionDenied:                "permission_denied",
		fmt.Errorf("get: %w", keys.ErrNotFound): "not_found",
		keys.ErrKeyLimit:                        "key_limit_reached",
		keys.ErrIdempotencyConflict:             "idempotency_conflict",
		keys.ErrClosed:                          "closed",
		fmt.Errorf("%w: storing key: disk full", keys.ErrUnavailable): "unavailable",
		fmt.Errorf("query: %w", context.Canceled):                     "canceled",
		context.DeadlineExceeded:                                      "deadline_exceeded",
		errors.New("txc_live_0123456789 leaked in an error"):          "error",
	} {
		if got := keysotel.Kind(err); got != want {
			t.Errorf("Kind(%v) = %q, want %q", err, got, want)
		}
	}
}
