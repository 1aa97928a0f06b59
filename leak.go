package keys

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
)

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

// ReportLeak handles a report that key was seen in public (where says
// where): if it is a stored key, it revokes or disables it as action
// says (unless it is already revoked, or disabled for LeakDisable), and
// emits key.leaked, with event.Event.Leak, for every report of a stored
// key, so that the host can tell its holder. A key rolled and in its
// grace period is revoked at once.
//
// A key that is not stored (malformed, never issued, or pruned) is not
// Found, and nothing changes. Package secretscanning receives GitHub's
// reports and calls it.
func (m *Manager) ReportLeak(ctx context.Context, key string, where event.Leak, action LeakAction) (rep LeakReport, err error) {
	ctx, end := m.op(ctx, observe.ReportLeak)
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
	case errors.Is(err, store.ErrNotFound):
		return rep, nil
	case err != nil:
		return rep, fmt.Errorf("%w: looking up key: %w", ErrUnavailable, err)
	case !digestEqual(&rec.Digest, &d):
		return rep, nil
	}
	rep.Found, rep.KeyID = true, rec.ID
	now := m.now()
	live := rec.RevokedAt.IsZero() || now.Before(rec.RevokedAt)
	switch {
	case live && action == LeakRevoke:
		_, err = m.revokeLeaked(ctx, trusted, rec.ID, &where)
		rep.Acted = err == nil
	case live && rec.Disabled != store.DisabledByHost:
		_, err = m.updateKeyLeaked(ctx, trusted, rec.ID, APIKeyUpdate{Enabled: Change(false)}, &where)
		rep.Acted = err == nil
	case m.listens(): // nothing to change: the report alone
		k := apiKeyOf(rec)
		err = m.record(ctx, leakEvent(ctx, &k, rec.AccountID, &where, now))
	}
	return rep, err
}

// leakEvent is key.leaked for the key k, found where leak says.
func leakEvent(ctx context.Context, k *APIKey, account string, leak *event.Leak, now time.Time) event.Event {
	e := newEvent(ctx, event.KeyLeaked, account, trusted, now, keyData{APIKey: *k, Leak: leak})
	e.KeyID, e.Leak, e.Environment = k.ID, leak, string(k.Environment)
	return e
}
