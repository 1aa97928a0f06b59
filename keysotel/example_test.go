package keysotel_test

import (
	"context"
	"fmt"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/keysotel"
	"github.com/txcloud/keys/memstore"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// OpenTelemetry metrics of a Manager: verifications by outcome, and
// operations. (A host passes its own providers, or none for the global
// ones; the example reads a manual reader.)
func ExampleNew() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	o, _ := keysotel.New(keysotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	m, _ := keys.New(o.Store(memstore.New()), keys.WithObserver(o))
	defer m.Close(ctx)
	k, _ := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1"})
	_, _ = m.Verify(ctx, string(k.Key))
	_, _ = m.Verify(ctx, string(k.Key))
	_, _ = m.Verify(ctx, "txc_live_forged")

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if sum, ok := mt.Data.(metricdata.Sum[int64]); ok && mt.Name == "keys.verifications" {
				for _, outcome := range []string{"valid", "invalid"} {
					for _, dp := range sum.DataPoints {
						if v, _ := dp.Attributes.Value("outcome"); v.AsString() == outcome {
							fmt.Println(mt.Name, outcome, dp.Value)
						}
					}
				}
			}
		}
	}
	// Output:
	// keys.verifications valid 2
	// keys.verifications invalid 1
}
