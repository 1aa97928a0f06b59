package demo

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// capListener refuses connections beyond max open ones: it closes them as
// soon as they are accepted, so a client holding thousands of idle
// keep-alive connections cannot exhaust the process's memory and file
// descriptors. golang.org/x/net/netutil.LimitListener blocks Accept at the
// cap instead, which leaves new clients queued in the kernel behind the
// idle holders; refusing fast, with a short idle timeout freeing slots, is
// what a host wants here.
type capListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused *Summary // logs refusals, a line per interval at most
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			_ = c.Close()
			l.refused.Add(slog.Int64("max_conns", l.max))
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

type capConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

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
