package keys

import (
	"context"
	"crypto/sha256"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/usage"
)

// What the Manager observes and reports as events, beside the changes it
// makes: a credit budget crossing the host's low mark or reaching 0
// (seen by the one spend that crossed it: two comparisons on the request's
// path, and a channel send only when it crossed), and an account's day
// quota reaching 80% and 100% (checked after a usage flush, off the
// request's path). The background goroutine turns them into events.

// crossing is a budget's crossing, as the spend saw it.
type crossing struct {
	typ       event.Type
	account   string
	keyID     string // "": the account's budget
	env       string
	remaining int64
	threshold int64
	at        time.Time
}

// maxObserved bounds the crossings waiting for the background goroutine;
// past it they are dropped, and counted.
const maxObserved = 4096

// observations holds what waits to become events.
type observations struct {
	crossings chan crossing
	dropped   atomic.Int64
	// quota remembers, per account, the highest threshold reported today
	// and when the account was last checked.
	mu    sync.Mutex
	quota map[string]quotaSeen
}

type quotaSeen struct {
	day     int64 // days since 1970, UTC
	level   int   // 0, 80 or 100
	checked time.Time
}

// crossed notes a spend that left b; it costs two comparisons unless the
// spend crossed a mark.
func (m *Manager) crossed(rec *store.Record, keyID string, b store.Budget, cost int64, now time.Time) {
	low := m.creditsLow
	if b.Remaining != 0 && (low <= 0 || b.Remaining > low || b.Remaining+cost <= low) || !m.listens() {
		return
	}
	env := string(Live)
	if keyID != "" {
		env = rec.Environment
	}
	c := crossing{account: rec.AccountID, keyID: keyID, env: env, remaining: b.Remaining, at: now}
	if low > 0 && b.Remaining <= low && b.Remaining+cost > low {
		c.typ, c.threshold = event.CreditsLow, low
		m.observe(c)
	}
	if b.Remaining == 0 && cost > 0 {
		c.typ, c.threshold = event.CreditsExhausted, 0
		m.observe(c)
	}
}

func (m *Manager) observe(c crossing) {
	select {
	case m.seen.crossings <- c:
	default:
		m.seen.dropped.Add(1)
	}
}

// recordCrossings turns waiting crossings into events.
func (m *Manager) recordCrossings(ctx context.Context, first crossing) {
	evs := []event.Event{m.crossingEvent(ctx, first)}
	for len(evs) < 100 {
		select {
		case c := <-m.seen.crossings:
			evs = append(evs, m.crossingEvent(ctx, c))
			continue
		default:
		}
		break
	}
	if err := m.record(ctx, evs...); err != nil {
		m.logger.Warn("keys: storing credits events failed; they are lost", "events", len(evs), "err", err)
	}
}

func (m *Manager) crossingEvent(ctx context.Context, c crossing) event.Event {
	e := newEvent(ctx, c.typ, c.account, trusted, c.at, event.Credits{KeyID: c.keyID, Remaining: c.remaining, Threshold: c.threshold})
	e.KeyID, e.Environment = c.keyID, c.env
	return e
}

// quotaCheckEvery is how often one account's day quota is checked, at
// most, on one instance.
const quotaCheckEvery = 30 * time.Second

// checkQuotas reports usage.quota_threshold for the accounts among
// accounts (those a usage flush just wrote) that reached 80% or 100% of
// their plan's requests per day, once each per UTC day across instances
// (Deduplicate). Usage counts what the quota does: the requests its
// limits let through. Only accounts whose plan is in memory are checked,
// each once per quotaCheckEvery at most.
func (m *Manager) checkQuotas(ctx context.Context, accounts map[string]struct{}) {
	if m.plans == nil || m.meter == nil || !m.listens() {
		return
	}
	now := m.now()
	day := now.Unix() / 86400
	start := time.Unix(day*86400, 0).UTC()
	checked := 0
	for account := range accounts {
		if checked == 1000 { // a bound per flush; the others are checked at the next
			return
		}
		v, ok := m.plans.entries.Load(account)
		if !ok {
			continue
		}
		limit := v.(*planEntry).plan.PerDay
		if limit <= 0 {
			continue
		}
		m.seen.mu.Lock()
		s := m.seen.quota[account]
		if s.day != day {
			s = quotaSeen{day: day}
		}
		due := s.level < 100 && now.Sub(s.checked) >= quotaCheckEvery
		if due {
			s.checked = now
			m.seen.quota[account] = s
		}
		m.seen.mu.Unlock()
		if !due {
			continue
		}
		checked++
		rows, err := m.meter.store.Usage(ctx, store.UsageQuery{AccountID: account, Granularity: usage.Day, From: start, To: start.Add(24 * time.Hour)})
		if err != nil {
			m.logger.Warn("keys: reading usage for the quota events failed; will retry", "err", err)
			return
		}
		var used int64
		for _, r := range rows {
			used += r.Successful + r.Failed - r.RateLimited
		}
		for _, t := range []int{80, 100} {
			if s.level >= t || used*100 < int64(t)*int64(limit) {
				continue
			}
			s.level = t
			id := sha256.Sum256([]byte("usage.quota_threshold|" + account + "|" + start.Format(time.DateOnly) + "|" + strconv.Itoa(t)))
			fresh, _, err := m.Deduplicate(ctx, id, 48*time.Hour)
			if err != nil || !fresh {
				continue
			}
			e := newEvent(ctx, event.UsageQuotaThreshold, account, trusted, now, event.Quota{Threshold: t, Limit: limit, Used: used, Day: start.Format(time.DateOnly)})
			if err := m.record(ctx, e); err != nil {
				m.logger.Warn("keys: storing a quota event failed", "err", err)
			}
		}
		m.seen.mu.Lock()
		if cur := m.seen.quota[account]; cur.day == day && cur.level < s.level {
			cur.level = s.level
			m.seen.quota[account] = cur
		}
		if len(m.seen.quota) > 100_000 { // a bound: forget yesterday's
			for a, q := range m.seen.quota {
				if q.day != day {
					delete(m.seen.quota, a)
				}
			}
		}
		m.seen.mu.Unlock()
	}
}
