package demo

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Summary logs a kind of event that may come in floods (refused
// credentials, accept errors) as at most one line per interval, with a
// count, instead of one line per event. It needs no goroutine: the line
// for an interval is written by the first event after it ends, or by
// Flush.
type Summary struct {
	logger   *slog.Logger
	msg      string
	interval time.Duration
	mu       sync.Mutex
	count    int
	since    time.Time
}

func NewSummary(logger *slog.Logger, msg string, interval time.Duration) *Summary {
	return &Summary{logger: logger, msg: msg, interval: interval}
}

// Add counts one event, logging the first of a quiet period at once and
// the rest in the interval's summary line.
func (s *Summary) Add(attrs ...slog.Attr) {
	s.mu.Lock()
	now := time.Now()
	if s.count == 0 && now.Sub(s.since) >= s.interval {
		s.since = now
		s.mu.Unlock()
		s.logger.LogAttrs(context.Background(), slog.LevelInfo, s.msg, attrs...)
		return
	}
	s.count++
	if now.Sub(s.since) < s.interval {
		s.mu.Unlock()
		return
	}
	n, since := s.count, s.since
	s.count, s.since = 0, now
	s.mu.Unlock()
	s.logger.LogAttrs(context.Background(), slog.LevelInfo, s.msg+" (summary)", slog.Int("count", n), slog.Duration("over", now.Sub(since)))
}

// Flush writes the pending summary, if any.
func (s *Summary) Flush() {
	s.mu.Lock()
	n, since := s.count, s.since
	s.count = 0
	s.mu.Unlock()
	if n > 0 {
		s.logger.LogAttrs(context.Background(), slog.LevelInfo, s.msg+" (summary)", slog.Int("count", n), slog.Duration("over", time.Since(since)))
	}
}

// summaryWriter adapts a summary to the io.Writer that http.Server's
// ErrorLog needs: accept errors ("too many open files") repeat every few
// milliseconds while they last.
type summaryWriter struct{ s *Summary }

func (w summaryWriter) Write(p []byte) (int, error) {
	w.s.Add(slog.String("error", string(p)))
	return len(p), nil
}
