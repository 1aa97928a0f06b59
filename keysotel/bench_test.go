package keysotel_test

import (
	"context"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/keysotel"
	"github.com/txcloud/keys/memstore"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
)

// BenchmarkVerify: Verify with keysotel on OpenTelemetry's no-op
// providers (target: at most 30 ns over the floor, 0 allocs), and on the
// real metrics SDK, beside Verify with no observer in the same run.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	run := func(opts ...keys.Option) func(*testing.B) {
		return func(b *testing.B) {
			m, err := keys.New(memstore.New(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(ctx)
			k, err := m.Create(ctx, keys.APIKeyCreate{Name: "bench", Environment: keys.Live, AccountID: "acct_bench"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Verify(ctx, string(k.Key)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	noop, err := keysotel.New(keysotel.WithMeterProvider(noopmetric.NewMeterProvider()), keysotel.WithTracerProvider(nooptrace.NewTracerProvider()))
	if err != nil {
		b.Fatal(err)
	}
	sdk, err := keysotel.New(keysotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))),
		keysotel.WithTracerProvider(nooptrace.NewTracerProvider()))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("floor-no-observer", run())
	b.Run("noop-provider", run(keys.WithObserver(noop)))
	b.Run("sdk", run(keys.WithObserver(sdk)))
}
