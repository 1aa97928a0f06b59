package keysotel

import (
	"context"
	"errors"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/limit"
	"github.com/txcloud/keys/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Store wraps s: each call gets a span "keys.store.<method>" when the
// caller's span is recording (so a Verify outside any trace costs no
// span), and each failure counts in keys.store.errors. The contract's
// answers (ErrNotFound, ErrStale, ErrDuplicate, ErrIdempotencyKeyExists,
// ErrKeyLimit) are not failures. The wrapper adds no method to s: pass it
// where s would go. The Manager still finds s's optional capabilities
// (usage, credits, import) through its Unwrap; calls to those are not
// traced.
func (o *Observer) Store(s store.Store) store.Store {
	st := &tracedStore{s: s, o: o, attrs: map[string]metric.MeasurementOption{}}
	for _, m := range []string{"Write", "LookupDigest", "Get", "List", "LookupIdempotency", "TouchLastUsed"} {
		st.attrs[m] = metric.WithAttributeSet(attribute.NewSet(attribute.String("method", m)))
	}
	return st
}

type tracedStore struct {
	s     store.Store
	o     *Observer
	attrs map[string]metric.MeasurementOption
}

// call runs f under a span (if the caller is traced) and counts its
// failure.
func (s *tracedStore) call(ctx context.Context, method string, f func(context.Context) error) error {
	var span trace.Span
	if trace.SpanFromContext(ctx).IsRecording() {
		ctx, span = s.o.tracer.Start(ctx, "keys.store."+method, trace.WithSpanKind(trace.SpanKindInternal))
	}
	err := f(ctx)
	if failed(ctx, err) {
		s.o.storeErrors.Add(ctx, 1, s.attrs[method])
		if span != nil {
			span.SetStatus(codes.Error, Kind(err))
		}
	}
	if span != nil {
		span.End()
	}
	return err
}

// failed reports whether err is a failure of the store: neither one of
// the contract's answers nor the end of a call whose caller left (a client
// that goes away is not an outage, and counting it would let any client
// raise the alarm).
func failed(ctx context.Context, err error) bool {
	return err != nil && !errors.Is(err, keys.ErrNotFound) && !errors.Is(err, store.ErrStale) && !errors.Is(err, store.ErrDuplicate) &&
		!errors.Is(err, store.ErrIdempotencyKeyExists) && !errors.Is(err, keys.ErrKeyLimit) && !callerLeft(ctx, err)
}

// callerLeft reports whether err ends a call because its caller cancelled
// it.
func callerLeft(ctx context.Context, err error) bool {
	return errors.Is(err, context.Canceled) && ctx.Err() != nil
}

// Unwrap returns the wrapped store, where the Manager finds its optional
// capabilities.
func (s *tracedStore) Unwrap() store.Store { return s.s }

func (s *tracedStore) Write(ctx context.Context, w store.Write) error {
	return s.call(ctx, "Write", func(ctx context.Context) error { return s.s.Write(ctx, w) })
}

// LookupDigest is on Verify's hot path: with no recording span and no
// error, it costs one check beyond the store's own lookup.
func (s *tracedStore) LookupDigest(ctx context.Context, d store.Digest) (*store.Record, error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		r, err := s.s.LookupDigest(ctx, d)
		if failed(ctx, err) {
			s.o.storeErrors.Add(ctx, 1, s.attrs["LookupDigest"])
		}
		return r, err
	}
	var r *store.Record
	err := s.call(ctx, "LookupDigest", func(ctx context.Context) (err error) { r, err = s.s.LookupDigest(ctx, d); return })
	return r, err
}

func (s *tracedStore) Get(ctx context.Context, id string) (*store.Record, error) {
	var r *store.Record
	err := s.call(ctx, "Get", func(ctx context.Context) (err error) { r, err = s.s.Get(ctx, id); return })
	return r, err
}

func (s *tracedStore) List(ctx context.Context, q store.ListQuery) ([]*store.Record, error) {
	var rs []*store.Record
	err := s.call(ctx, "List", func(ctx context.Context) (err error) { rs, err = s.s.List(ctx, q); return })
	return rs, err
}

func (s *tracedStore) LookupIdempotency(ctx context.Context, scope store.Digest, now time.Time) (*store.IdempotencyRecord, error) {
	var e *store.IdempotencyRecord
	err := s.call(ctx, "LookupIdempotency", func(ctx context.Context) (err error) { e, err = s.s.LookupIdempotency(ctx, scope, now); return })
	return e, err
}

func (s *tracedStore) TouchLastUsed(ctx context.Context, batch []store.LastUsed) error {
	return s.call(ctx, "TouchLastUsed", func(ctx context.Context) error { return s.s.TouchLastUsed(ctx, batch) })
}

// Limiter wraps l: each failure counts in keys.limiter.errors. A
// limit.ConcurrencyLimiter stays one, and a limit.Refunder's refunds reach
// it (the wrapper refunds nothing on a limiter that cannot).
func (o *Observer) Limiter(l limit.Limiter) limit.Limiter {
	if cl, ok := l.(limit.ConcurrencyLimiter); ok {
		return &concurrencyLimiter{limiter{l: l, o: o}, cl}
	}
	return &limiter{l: l, o: o}
}

type limiter struct {
	l limit.Limiter
	o *Observer
}

func (l *limiter) Allow(ctx context.Context, checks limit.Checks, now time.Time) (limit.Status, bool, error) {
	rl, ok, err := l.l.Allow(ctx, checks, now)
	if err != nil && !callerLeft(ctx, err) {
		l.o.limiterErrors.Add(ctx, 1)
	}
	return rl, ok, err
}

var _ limit.Refunder = (*limiter)(nil)

// Refund forwards to l's Refund, if it has one.
func (l *limiter) Refund(ctx context.Context, checks limit.Checks, now time.Time) error {
	r, ok := l.l.(limit.Refunder)
	if !ok {
		return nil
	}
	err := r.Refund(ctx, checks, now)
	if err != nil && !callerLeft(ctx, err) {
		l.o.limiterErrors.Add(ctx, 1)
	}
	return err
}

type concurrencyLimiter struct {
	limiter
	cl limit.ConcurrencyLimiter
}

var _ limit.ConcurrencyLimiter = (*concurrencyLimiter)(nil)

func (l *concurrencyLimiter) Acquire(ctx context.Context, account string, max int, now time.Time) (limit.Lease, bool, error) {
	lease, ok, err := l.cl.Acquire(ctx, account, max, now)
	if err != nil && !callerLeft(ctx, err) {
		l.o.limiterErrors.Add(ctx, 1)
	}
	return lease, ok, err
}

func (l *concurrencyLimiter) Release(ctx context.Context, lease limit.Lease) error {
	err := l.cl.Release(ctx, lease)
	if err != nil && !callerLeft(ctx, err) {
		l.o.limiterErrors.Add(ctx, 1)
	}
	return err
}
