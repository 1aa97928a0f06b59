package keys

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leak says where a key was found in public (a secret-scanning report).
type Leak struct {
	URL    string // where it was found
	Source string // what kind of place: "content", "commit", "npm", …
	Type   string // the scanner's name for the kind of secret
}

// LeakAction is what ReportLeak does to a live key.
type LeakAction uint8

// The actions on a leaked key.
const (
	// LeakRevoke revokes the key: the holder must make a new one.
	LeakRevoke LeakAction = iota
	// LeakDisable disables it: reversible, for hosts that want a human to
	// decide (a key leaked in a private test is disabled, then enabled).
	LeakDisable
)

// LeakReport is what ReportLeak found.
type LeakReport struct {
	// Found is true when the key is one of this Manager's (stored, in any
	// state): the report was right.
	Found bool
	// Acted is true when the key was live (neither revoked nor disabled)
	// and has now been revoked or disabled.
	Acted bool
	// KeyID names the key, when Found.
	KeyID string
}

// ReportLeak handles a report that key was seen in public: if it is a
// stored key, it revokes or disables it as action says (unless it is
// already revoked, or disabled for LeakDisable), and emits key.leaked,
// with Event.Leak, for every report of a stored key, so that the host can
// tell its holder. A key rolled and in its grace period is revoked at
// once. A key that is not stored (malformed, never issued, or pruned) is
// not Found, and nothing changes.
func (m *Manager) ReportLeak(ctx context.Context, key string, leak Leak, action LeakAction) (rep LeakReport, err error) {
	ctx, end := m.op(ctx, OpReportLeak)
	defer func() { end(err) }()
	if m.closed.Load() {
		return rep, ErrClosed
	}
	if action != LeakRevoke && action != LeakDisable {
		return rep, fmt.Errorf("keys: ReportLeak: unknown action %d", action)
	}
	d, ok := m.presentedDigest(key)
	if !ok {
		return rep, nil
	}
	rec, err := m.store.LookupDigest(ctx, d)
	switch {
	case errors.Is(err, ErrNotFound):
		return rep, nil
	case err != nil:
		return rep, fmt.Errorf("%w: looking up key: %w", ErrUnavailable, err)
	case !rec.Digest.equal(&d):
		return rep, nil
	}
	rep.Found, rep.KeyID = true, rec.ID
	now := m.now()
	live := rec.RevokedAt.IsZero() || now.Before(rec.RevokedAt)
	var k *APIKey
	switch {
	case live && action == LeakRevoke:
		k, err = m.revoke(ctx, trusted, rec.ID)
		rep.Acted = err == nil
	case live && rec.Disabled != DisabledByHost:
		k, err = m.updateKey(ctx, trusted, rec.ID, APIKeyUpdate{Enabled: Change(false)})
		rep.Acted = err == nil
	default:
		kk := rec.APIKey()
		k = &kk
	}
	if err != nil {
		return rep, err
	}
	if m.onEvent != nil {
		l := leak
		m.onEvent(ctx, Event{Type: EventKeyLeaked, Key: *k, At: m.now(), Leak: &l})
	}
	return rep, nil
}

// NotifyExpiring emits key.expiring for every unrevoked key, of every
// account, whose expiry falls in [from, to), and returns how many. The
// host schedules it: called every hour with [now+7d, now+7d+1h) and
// [now+24h, now+25h), each key is announced once 7 days and once a day
// before it stops working (GitLab's schedule), with no state kept here.
// Windows are read a page of 100 keys at a time.
func (m *Manager) NotifyExpiring(ctx context.Context, from, to time.Time) (n int, err error) {
	ctx, end := m.op(ctx, OpNotifyExpiring)
	defer func() { end(err) }()
	if m.closed.Load() {
		return 0, ErrClosed
	}
	if !from.Before(to) {
		return 0, invalid("to", "the window must end after it starts")
	}
	no := false
	q := ListQuery{Revoked: &no, ExpiresFrom: from, ExpiresBefore: to, Limit: 100}
	for {
		recs, err := m.store.List(ctx, q)
		if err != nil {
			return n, fmt.Errorf("%w: listing expiring keys: %w", ErrUnavailable, err)
		}
		for _, r := range recs {
			if m.onEvent != nil {
				m.onEvent(ctx, Event{Type: EventKeyExpiring, Key: r.APIKey(), At: m.now()})
			}
			n++
		}
		if len(recs) < q.Limit {
			return n, nil
		}
		last := recs[len(recs)-1]
		q.After = &ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	}
}
