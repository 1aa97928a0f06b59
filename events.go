package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/internal/sentinel"
	"github.com/txcloud/keys/observe"
	"github.com/txcloud/keys/store"
)

// The event log (package event): each change's events are made before the
// change is stored and go into its store.Write, so that the change and
// its events are stored together or not at all; once stored, the host's
// hook hears them and this instance's deliverer is woken.

// defaultEventRetention is how long events are kept: 30 days.
const defaultEventRetention = 30 * 24 * time.Hour

// newEvent is an event of typ in account by c, made at now, about data
// (encoded as the API shows it), with the request in ctx if any.
func newEvent(ctx context.Context, typ event.Type, account string, c caller, now time.Time, data any) event.Event {
	e := event.Event{ID: newEventID(now), Type: typ, At: storedTime(now), AccountID: account, Environment: string(Live), Actor: c.p.Subject}
	if o, ok := event.OriginFrom(ctx); ok {
		e.RequestID, e.ClientIP = o.RequestID, o.ClientIP
	}
	e.Data, _ = json.Marshal(data) // every data type of ours encodes
	return e
}

// keyData is a key event's data: the key as the API shows it, and for
// key.rolled the key it replaces, for key.leaked where it was found.
type keyData struct {
	APIKey
	Replaces string      `json:"replaces,omitempty"`
	Leak     *event.Leak `json:"leak,omitempty"`
}

// keyEvent is the event of a change by c to the key k.
func keyEvent(ctx context.Context, typ event.Type, c caller, k *APIKey, account string, now time.Time) event.Event {
	e := newEvent(ctx, typ, account, c, now, keyData{APIKey: *k})
	e.KeyID, e.Environment = k.ID, string(k.Environment)
	return e
}

// logsEvents reports whether the store keeps events, so that a Write
// carries them.
func (m *Manager) logsEvents() bool { return m.events != nil }

// listens reports whether anyone hears events: the store's log or the
// host's hook. Without either, no event is made (they cost an ID from
// crypto/rand and the key's JSON each).
func (m *Manager) listens() bool { return m.events != nil || m.onEvent != nil }

// stored hands events that were just stored (or, on a store without an
// event log, just happened) to the host's hook, and wakes this
// instance's deliverer.
func (m *Manager) stored(ctx context.Context, evs []event.Event) {
	if len(evs) == 0 {
		return
	}
	if m.onEvent != nil {
		for _, e := range evs {
			m.onEvent(ctx, e)
		}
	}
	if m.hooks != nil {
		m.hooks.wake()
	}
}

// record stores events that are no change's (a key expiring, a
// threshold crossed, a test), then hands them on.
func (m *Manager) record(ctx context.Context, evs ...event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	if m.logsEvents() {
		if err := m.store.Write(ctx, store.Write{Events: evs}); err != nil {
			return fmt.Errorf("%w: storing events: %w", ErrUnavailable, err)
		}
	}
	m.stored(ctx, evs)
	return nil
}

// Events pages through the principal's account's events, newest first:
// its audit trail. A test principal sees the events of test keys and of
// its account's webhooks only.
func (s Scoped) Events(ctx context.Context, f event.Filter) (_ *event.Page, err error) {
	m := s.m
	ctx, end := m.op(ctx, observe.Events)
	defer func() { end(err) }()
	if err := m.readsEvents(s.c); err != nil {
		return nil, err
	}
	q := store.EventQuery{AccountID: s.c.p.AccountID, Type: f.Type, KeyID: f.KeyID, Start: f.Start, End: f.End, Limit: f.Limit}
	switch {
	case f.Type != "" && !f.Type.Known():
		return nil, invalid("type", "type must be one of the event types")
	case !f.Start.IsZero() && !f.End.IsZero() && !f.Start.Before(f.End):
		return nil, invalid("end", "end must be after start")
	case q.Limit == 0:
		q.Limit = 20
	case q.Limit < 1 || q.Limit > 100:
		return nil, invalid("limit", "limit must be from 1 to 100")
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, err
		}
		q.After = &store.ListPosition{CreatedAt: at, ID: id}
	}
	if !s.c.trusted && s.c.p.Environment != "" {
		q.Environment = string(s.c.p.Environment) // a test principal reads test events
	}
	want := q.Limit
	q.Limit++ // one more than asked tells whether there is another page
	evs, err := m.events.Events(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%w: reading events: %w", ErrUnavailable, err)
	}
	out := &event.Page{Data: evs}
	if len(evs) > want {
		out.Data, out.HasMore = evs[:want], true
		last := out.Data[want-1]
		out.NextCursor = encodeCursor(last.At, last.ID)
	}
	return out, nil
}

// Event returns one of the principal's account's events, or ErrNotFound.
func (s Scoped) Event(ctx context.Context, id string) (_ *event.Event, err error) {
	m := s.m
	ctx, end := m.op(ctx, observe.Events)
	defer func() { end(err) }()
	if err := m.readsEvents(s.c); err != nil {
		return nil, err
	}
	if len(id) > 64 {
		return nil, ErrNotFound
	}
	evs, err := m.events.Events(ctx, store.EventQuery{AccountID: s.c.p.AccountID, ID: id, Limit: 1})
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: reading events: %w", ErrUnavailable, err)
	case len(evs) == 0 || !s.c.seesEvent(&evs[0]):
		return nil, ErrNotFound
	}
	return &evs[0], nil
}

func (m *Manager) readsEvents(c caller) error {
	switch {
	case m.closed.Load():
		return ErrClosed
	case m.events == nil:
		// No event log (store.EventStore): no events to read and no
		// webhooks; the HTTP adapter answers 404.
		return fmt.Errorf("%w: %w", ErrNotFound, sentinel.ErrEventsNotKept)
	}
	return c.valid()
}

// seesEvent is the rule of sees for events: a test principal sees its
// account's test events only (those of test keys and test endpoints).
func (c caller) seesEvent(e *event.Event) bool {
	return c.trusted || c.p.Environment == "" || e.Environment == string(c.p.Environment)
}

// pruneEvents deletes events past the retention, at most once an hour.
func (m *Manager) pruneEvents(ctx context.Context) error {
	if m.events == nil {
		return nil
	}
	now := m.now()
	if last := m.eventsPruned.Load(); last != 0 && now.UnixNano()-last < int64(time.Hour) {
		return nil
	}
	m.eventsPruned.Store(now.UnixNano())
	return m.events.PruneEvents(ctx, now.Add(-m.eventRetention))
}
