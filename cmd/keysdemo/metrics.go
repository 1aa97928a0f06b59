package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/txcloud/keys/keysotel"
	"github.com/txcloud/keys/pgstore"
	"github.com/txcloud/keys/store"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// serveMetrics serves Prometheus's /metrics on addr, fed by keysotel
// through the OpenTelemetry SDK and its Prometheus exporter: the path a
// host that already uses OpenTelemetry takes, with no second adapter. The
// registry is the demo's own, not Prometheus's global one. It returns the
// Observer and a function that stops the server.
func serveMetrics(ctx context.Context, addr string, store store.Store, logger *slog.Logger) (*keysotel.Observer, func(), error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	o, err := keysotel.New(keysotel.WithMeterProvider(mp))
	if err != nil {
		return nil, nil, err
	}
	if pg, ok := store.(*pgstore.Store); ok {
		if err := o.ObserveStore(func() keysotel.StoreStats { return keysotel.StoreStats(pg.Stats()) }); err != nil {
			return nil, nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second, IdleTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("keysdemo: metrics server", "err", err)
		}
	}()
	logger.Info("keysdemo metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return o, func() {
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		_ = mp.Shutdown(shutdown)
	}, nil
}
