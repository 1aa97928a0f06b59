// Package keysotel reports what a keys.Manager does to OpenTelemetry:
// metrics of every verification and lifecycle operation, spans of the
// operations and of the store calls inside them, and the store's and the
// limiter's errors.
//
//	o, err := keysotel.New()                           // the global providers, or WithMeterProvider/WithTracerProvider
//	m, err := keys.New(o.Store(store), keys.WithObserver(o), keys.WithLimiter(o.Limiter(limiter)))
//
// Metrics (meter "github.com/txcloud/keys"):
//
//	keys.verifications               counter    outcome
//	keys.verification.duration       histogram  outcome       seconds; one verification in 16 (see observe.Observer)
//	keys.operations                  counter    operation, result
//	keys.operation.duration          histogram  operation, result   seconds
//	keys.store.errors                counter    method
//	keys.limiter.errors              counter
//	keys.store.cache.hits, keys.store.filter.refusals, keys.store.queries   counters (ObserveStore)
//	keys.store.notification.lag      gauge, seconds (ObserveStore)
//	keys.store.listening             gauge, 0 or 1 (ObserveStore)
//
// Every label has a small fixed set of values: a key's ID, account or
// name is never a label, and no span or label ever holds a key or a
// digest. Span names are "keys.<operation>" and "keys.store.<method>"; a
// failed one gets status Error with the error's kind (for example
// "unavailable"), not its text, which a store's driver may have written.
// There are no OpenTelemetry semantic conventions for API keys; names
// follow the general naming rules (dotted lower case, durations as
// float seconds, error.type for the kind of failure).
package keysotel

import (
	"context"
	"errors"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/observe"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of the meter and the tracer.
const Name = "github.com/txcloud/keys"

// Observer is a observe.Observer on OpenTelemetry. Use New.
type Observer struct {
	meter  metric.Meter
	tracer trace.Tracer

	verifications metric.Int64Counter
	verifyTime    metric.Float64Histogram
	operations    metric.Int64Counter
	opTime        metric.Float64Histogram
	storeErrors   metric.Int64Counter
	limiterErrors metric.Int64Counter

	// The options of each outcome's label set, made once, in slices
	// passed as they are: recording a verification allocates nothing.
	byOutcome [observe.NumOutcomes]outcomeOpts
}

type outcomeOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

var _ observe.Observer = (*Observer)(nil)

type config struct {
	mp metric.MeterProvider
	tp trace.TracerProvider
}

// Option configures New.
type Option func(*config)

// WithMeterProvider records metrics to mp (default: otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithTracerProvider records spans to tp (default: otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// New creates the instruments.
func New(opts ...Option) (*Observer, error) {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	o := &Observer{meter: c.mp.Meter(Name), tracer: c.tp.Tracer(Name)}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	o.verifications, err = o.meter.Int64Counter("keys.verifications", metric.WithUnit("{verification}"),
		metric.WithDescription("API key verifications, by outcome"))
	add(err)
	o.verifyTime, err = o.meter.Float64Histogram("keys.verification.duration", metric.WithUnit("s"),
		metric.WithDescription("How long a verification took (a sample of one in 16)"),
		metric.WithExplicitBucketBoundaries(1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 0.1, 1))
	add(err)
	o.operations, err = o.meter.Int64Counter("keys.operations", metric.WithUnit("{operation}"),
		metric.WithDescription("Key lifecycle operations and last-used flushes, by operation and result"))
	add(err)
	o.opTime, err = o.meter.Float64Histogram("keys.operation.duration", metric.WithUnit("s"),
		metric.WithDescription("How long a lifecycle operation or flush took"))
	add(err)
	o.storeErrors, err = o.meter.Int64Counter("keys.store.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Store calls that failed (not the contract's answers such as not found), by method"))
	add(err)
	o.limiterErrors, err = o.meter.Int64Counter("keys.limiter.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Rate limiter calls that failed"))
	add(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for oc := range observe.Outcome(observe.NumOutcomes) {
		set := metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", oc.String())))
		o.byOutcome[oc] = outcomeOpts{add: []metric.AddOption{set}, record: []metric.RecordOption{set}}
	}
	return o, nil
}

// Verify implements observe.Observer.
func (o *Observer) Verify(ctx context.Context, outcome observe.Outcome, took time.Duration) {
	if int(outcome) >= len(o.byOutcome) {
		outcome = observe.Unavailable // none such: a newer keys than this keysotel
	}
	opts := &o.byOutcome[outcome]
	o.verifications.Add(ctx, 1, opts.add...)
	if took > 0 {
		o.verifyTime.Record(ctx, took.Seconds(), opts.record...)
	}
}

// Operation implements observe.Observer: a span "keys.<op>" around the
// operation, and its count and duration when it ends.
func (o *Observer) Operation(ctx context.Context, op observe.Op) (context.Context, func(error)) {
	ctx, span := o.tracer.Start(ctx, "keys."+string(op), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("keys.operation", string(op))))
	start := time.Now()
	return ctx, func(err error) {
		result := "ok"
		attrs := []attribute.KeyValue{attribute.String("operation", string(op))}
		if err != nil {
			result = "error"
			kind := Kind(err)
			span.SetStatus(codes.Error, kind)
			span.SetAttributes(attribute.String("error.type", kind))
		}
		set := metric.WithAttributes(append(attrs, attribute.String("result", result))...)
		o.operations.Add(ctx, 1, set)
		o.opTime.Record(ctx, time.Since(start).Seconds(), set)
		span.End()
	}
}

// Kind names the kind of an error of a Manager's operation, or of its
// store, for a span's status and error.type: one of a fixed set, never
// the error's text. (Verify's refusals are not operations' errors: they
// reach the Observer as an observe.Outcome.)
func Kind(err error) string {
	var ve *keys.ValidationError
	var pe *keys.PermissionError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ve):
		return "validation_error"
	case errors.As(err, &pe), errors.Is(err, keys.ErrPermissionDenied):
		return "permission_denied"
	case errors.Is(err, keys.ErrNotFound):
		return "not_found"
	case errors.Is(err, keys.ErrKeyLimit):
		return "key_limit_reached"
	case errors.Is(err, keys.ErrIdempotencyConflict):
		return "idempotency_conflict"
	case errors.Is(err, keys.ErrClosed):
		return "closed"
	case errors.Is(err, keys.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	}
	return "error"
}

// StoreStats is what a store counts of its own work. pgstore.Stats has
// the same fields: keysotel.StoreStats(pg.Stats()) converts it.
type StoreStats struct {
	CacheHits       int64
	FilterRefusals  int64
	Queries         int64
	CreditQueries   int64
	SpentRefusals   int64
	NotificationLag time.Duration
	Listening       bool
}

// ObserveStore reports stats, read at each collection, as the
// keys.store.cache.hits, keys.store.filter.refusals, keys.store.queries,
// keys.store.credit.queries and keys.store.credit.spent_refusals counters,
// and the keys.store.notification.lag gauge.
func (o *Observer) ObserveStore(stats func() StoreStats) error {
	hits, err1 := o.meter.Int64ObservableCounter("keys.store.cache.hits", metric.WithUnit("{lookup}"),
		metric.WithDescription("Digest lookups answered from the store's cache"))
	refusals, err2 := o.meter.Int64ObservableCounter("keys.store.filter.refusals", metric.WithUnit("{lookup}"),
		metric.WithDescription("Digest lookups the store's filter refused without a query (keys never issued)"))
	queries, err3 := o.meter.Int64ObservableCounter("keys.store.queries", metric.WithUnit("{lookup}"),
		metric.WithDescription("Digest lookups that queried the database"))
	lag, err4 := o.meter.Float64ObservableGauge("keys.store.notification.lag", metric.WithUnit("s"),
		metric.WithDescription("How long the latest insert notification took to come back to this instance"))
	listening, err5 := o.meter.Int64ObservableGauge("keys.store.listening", metric.WithUnit("1"),
		metric.WithDescription("1 while the store's invalidation listener is connected"))
	creditQueries, err6 := o.meter.Int64ObservableCounter("keys.store.credit.queries", metric.WithUnit("{statement}"),
		metric.WithDescription("Statements spending credits (one per spend; two when a budget is found spent)"))
	spentRefusals, err7 := o.meter.Int64ObservableCounter("keys.store.credit.spent_refusals", metric.WithUnit("{spend}"),
		metric.WithDescription("Spends of a budget remembered spent, refused without a statement"))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return err
	}
	_, err := o.meter.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		s := stats()
		obs.ObserveInt64(hits, s.CacheHits)
		obs.ObserveInt64(refusals, s.FilterRefusals)
		obs.ObserveInt64(queries, s.Queries)
		obs.ObserveInt64(creditQueries, s.CreditQueries)
		obs.ObserveInt64(spentRefusals, s.SpentRefusals)
		obs.ObserveFloat64(lag, s.NotificationLag.Seconds())
		up := int64(0)
		if s.Listening {
			up = 1
		}
		obs.ObserveInt64(listening, up)
		return nil
	}, hits, refusals, queries, creditQueries, spentRefusals, lag, listening)
	return err
}
