package keys

import (
	"context"
	"fmt"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
)

// NotifyExpiring emits key.expiring for every unrevoked key, of every
// account, whose expiry falls in [from, to), and returns how many. The
// host schedules it: called every hour with [now+7d, now+7d+1h) and
// [now+24h, now+25h), each key is announced once 7 days and once a day
// before it stops working (GitLab's schedule), with no state kept here.
// Windows are read a page of 100 keys at a time.
func (m *Manager) NotifyExpiring(ctx context.Context, from, to time.Time) (n int, err error) {
	ctx, end := m.op(ctx, observe.NotifyExpiring)
	defer func() { end(err) }()
	if m.closed.Load() {
		return 0, ErrClosed
	}
	if !from.Before(to) {
		return 0, invalid("to", "the window must end after it starts")
	}
	no := false
	q := store.ListQuery{Revoked: &no, ExpiresFrom: from, ExpiresBefore: to, Limit: 100}
	for {
		recs, err := m.store.List(ctx, q)
		if err != nil {
			return n, fmt.Errorf("%w: listing expiring keys: %w", ErrUnavailable, err)
		}
		now := m.now()
		evs := make([]event.Event, 0, len(recs))
		for _, r := range recs {
			if !m.listens() {
				break // counted, announced to no one
			}
			k := apiKeyOf(r)
			evs = append(evs, keyEvent(ctx, event.KeyExpiring, trusted, &k, r.AccountID, now))
		}
		if err := m.record(ctx, evs...); err != nil {
			return n, err
		}
		n += len(recs)
		if len(recs) < q.Limit {
			return n, nil
		}
		last := recs[len(recs)-1]
		q.After = &store.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	}
}
