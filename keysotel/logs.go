package keysotel

import (
	"context"
	"strconv"
	"time"

	"github.com/txcloud/keys/reqlog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
)

// LogExporter sends every request-log entry, those of no account
// included, as an OpenTelemetry log record (event "keys.request"), for a
// host whose traffic outgrows its database's window:
//
//	x := keysotel.NewLogExporter()                     // the global LoggerProvider, or WithLoggerProvider
//	m, err := keys.New(st, keys.WithRequestLogs(reqlog.Config{Exporter: x}))
//
// A record's attributes follow the HTTP semantic conventions where one
// applies (http.request.method, http.route, http.response.status_code,
// client.address, user_agent.original, http.request.body.size,
// http.response.body.size, error.type) and are keys.* otherwise
// (keys.request.id, keys.account.id, keys.key.id, keys.environment,
// keys.api, keys.error.code, keys.limit). Its severity is INFO for a
// success, WARN for a 4xx, ERROR for a 5xx; its body "GET /v1/ping 429".
// No record holds a key.
type LogExporter struct {
	logger log.Logger
}

var _ reqlog.Exporter = (*LogExporter)(nil)

// LogOption configures NewLogExporter.
type LogOption func(*logConfig)

type logConfig struct{ lp log.LoggerProvider }

// WithLoggerProvider emits to lp (default: otel.GetLoggerProvider()).
func WithLoggerProvider(lp log.LoggerProvider) LogOption {
	return func(c *logConfig) { c.lp = lp }
}

// NewLogExporter returns an exporter on the logger Name of its provider.
func NewLogExporter(opts ...LogOption) *LogExporter {
	var c logConfig
	for _, o := range opts {
		o(&c)
	}
	if c.lp == nil {
		c.lp = otel.GetLoggerProvider()
	}
	return &LogExporter{logger: c.lp.Logger(Name)}
}

// Export implements reqlog.Exporter: one record an entry, emitted to the
// provider's processors (which batch and send them).
func (x *LogExporter) Export(ctx context.Context, entries []reqlog.Entry) error {
	now := time.Now()
	for i := range entries {
		e := &entries[i]
		var r log.Record
		r.SetEventName("keys.request")
		r.SetTimestamp(e.Timestamp)
		r.SetObservedTimestamp(now)
		switch {
		case e.Status >= 500:
			r.SetSeverity(log.SeverityError)
		case e.Status >= 400:
			r.SetSeverity(log.SeverityWarn)
		default:
			r.SetSeverity(log.SeverityInfo)
		}
		r.SetBody(attribute.StringValue(e.Method + " " + e.Path + " " + strconv.Itoa(e.Status)))
		r.AddAttributes(
			attribute.String("keys.request.id", e.RequestID),
			attribute.String("http.request.method", e.Method),
			attribute.String("http.route", e.Path),
			attribute.Int("http.response.status_code", e.Status),
			attribute.Float64("keys.latency_ms", float64(e.Latency.Microseconds())/1000),
			attribute.Int64("http.request.body.size", e.RequestBytes),
			attribute.Int64("http.response.body.size", e.ResponseBytes),
		)
		for _, kv := range [...]struct{ k, v string }{
			{"keys.account.id", e.AccountID}, {"keys.key.id", e.KeyID}, {"keys.environment", e.Environment},
			{"keys.api", e.API}, {"error.type", e.ErrorType}, {"keys.error.code", e.ErrorCode}, {"keys.limit", e.Limit},
			{"user_agent.original", e.UserAgent},
		} {
			if kv.v != "" {
				r.AddAttributes(attribute.String(kv.k, kv.v))
			}
		}
		if e.IP.IsValid() {
			r.AddAttributes(attribute.String("client.address", e.IP.String()))
		}
		x.logger.Emit(ctx, r)
	}
	return nil
}
