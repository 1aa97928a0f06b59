package keys

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/reqlog"
)

// background is the Manager's one goroutine: it writes last-used times
// every flush interval, and usage counts every usageFlushInterval (with a
// store that keeps usage), and after each last-used flush takes the
// states of keys no longer in use out of memory. Close stops it.
type background struct {
	mu       sync.Mutex // flushMu: one flush, drain or sweep at a time
	stopping chan struct{}
	done     chan struct{}
	// swept is when the last sweep ran (the Manager's clock, Unix ns): a
	// state noted since is in use.
	swept int64
}

// startBackground sets m.background and starts the goroutine.
func (m *Manager) startBackground(interval time.Duration) {
	m.background = &background{stopping: make(chan struct{}), done: make(chan struct{}), swept: m.now().UnixNano()}
	if m.rlog == nil {
		go m.run(m.background, interval)
		return
	}
	// The request log has its own goroutine, so that a slow log write
	// delays no usage or last-used flush; done closes when both end.
	logsDone := make(chan struct{})
	run := make(chan struct{})
	go func() {
		defer close(logsDone)
		m.runLogs(m.background.stopping)
	}()
	go func() {
		defer close(run)
		m.runNoClose(m.background, interval)
	}()
	go func() {
		<-logsDone
		<-run
		close(m.background.done)
	}()
}

// runLogs flushes the request log every reqlog.FlushInterval, or when a
// ring has filled a quarter more, and prunes it once an hour, until stopping closes.
func (m *Manager) runLogs(stopping chan struct{}) {
	t := time.NewTicker(reqlog.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-stopping:
			return
		case <-t.C:
		case <-m.rlog.wake:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*reqlog.FlushInterval)
		if err := m.flushLogs(ctx); err != nil {
			m.rlog.failed(m, err)
		}
		if err := m.pruneLogs(ctx); err != nil {
			m.logger.Warn("keys: pruning the request log failed; will retry in an hour", "err", err)
		}
		cancel()
	}
}

func (m *Manager) run(b *background, interval time.Duration) {
	defer close(b.done)
	m.runNoClose(b, interval)
}

func (m *Manager) runNoClose(b *background, interval time.Duration) {
	lastUsed := time.NewTicker(interval)
	defer lastUsed.Stop()
	var usageTick <-chan time.Time
	if m.meter != nil {
		t := time.NewTicker(usageFlushInterval)
		defer t.Stop()
		usageTick = t.C
	}
	for {
		select {
		case <-b.stopping:
			return
		case c := <-m.seen.crossings:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			m.recordCrossings(ctx, c)
			cancel()
		case <-usageTick:
			ctx, cancel := context.WithTimeout(context.Background(), usageFlushInterval)
			if err := m.flushUsageObserved(ctx, false); err != nil {
				m.logger.Warn("keys: flushing usage failed; will retry", "err", err)
			}
			cancel()
		case <-lastUsed.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			if err := m.flushLastUsedObserved(ctx); err != nil {
				m.logger.Warn("keys: flushing last-used times failed; will retry", "err", err)
			}
			if err := m.pruneEvents(ctx); err != nil {
				m.logger.Warn("keys: pruning the event log failed; will retry", "err", err)
			}
			cancel()
		}
	}
}

// Flush writes to the store now, instead of at the next interval, the
// last-used times noted so far, the usage counted so far (the current
// minute's too) and the request log, then lets go of the memory of keys no longer in use.
func (m *Manager) Flush(ctx context.Context) error {
	err := m.flushLastUsedObserved(ctx)
	if m.meter != nil {
		err = errors.Join(err, m.flushUsageObserved(ctx, false))
	}
	if m.rlog != nil {
		err = errors.Join(err, m.flushLogs(ctx))
	}
	return err
}

func (m *Manager) flushLastUsedObserved(ctx context.Context) (err error) {
	ctx, end := m.op(ctx, observe.FlushLastUsed)
	defer func() { end(err) }()
	b := m.background
	b.mu.Lock()
	defer b.mu.Unlock()
	err = m.lastUsed.flush(ctx, m.store, m.states)
	m.sweep()
	return err
}

func (m *Manager) flushUsageObserved(ctx context.Context, all bool) (err error) {
	ctx, end := m.op(ctx, observe.FlushUsage)
	defer func() { end(err) }()
	m.background.mu.Lock()
	defer m.background.mu.Unlock()
	return m.flushUsage(ctx, all)
}

// sweep takes out of memory the states of keys not used since the last
// sweep: not on a pending list, and (with usage kept) drained empty. A
// key used again gets a fresh state. The caller holds b.mu.
func (m *Manager) sweep() {
	b := m.background
	since := b.swept
	b.swept = m.now().UnixNano()
	m.states.sweep(func(st *keyState) bool {
		return !st.queued.Load() && st.noted.Load() < since && (m.meter == nil || st.idle > 0)
	})
}

// stop ends the goroutine and writes what is pending, within ctx.
func (b *background) stop(ctx context.Context, m *Manager) error {
	close(b.stopping)
	select {
	case <-b.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	var err error
	if m.meter != nil {
		err = m.flushUsageObserved(ctx, true)
	}
	if m.rlog != nil {
		err = errors.Join(err, m.flushLogs(ctx))
	}
	return errors.Join(m.flushLastUsedObserved(ctx), err)
}
