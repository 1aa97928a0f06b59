package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/store"
)

var _ store.EventStore = (*Store)(nil)

// EventWindow is how many events the store keeps per account: the newest,
// up to the retention. An account whose events outrun it loses its own
// oldest, never another's. An event holds the key as the API shows it,
// up to about 5 KB with 4 KiB of metadata: 50 MB a full window.
const EventWindow = 10_000

// eventLog is the store's events, endpoints and deliveries, behind the
// store's lock (Write changes them with the records they report).
type eventLog struct {
	events     map[string][]*event.Event // by account, oldest first
	eventByID  map[string]*event.Event
	endpoints  map[string]*store.Endpoint
	byAccount  map[string][]string          // endpoint IDs, oldest first
	deliveries map[string]*store.Delivery   // by ID
	byEndpoint map[string][]*store.Delivery // oldest first
	// pending holds each endpoint's pending deliveries in the order they
	// are due (NextAt, then ID), so that a claim reads the heads alone.
	pending map[string][]*store.Delivery
	byEvent map[string][]string // delivery IDs of an event
}

// dueOrder orders pending deliveries: NextAt, then ID.
func dueOrder(a, b *store.Delivery) int {
	if n := a.NextAt.Compare(b.NextAt); n != 0 {
		return n
	}
	return strings.Compare(a.ID, b.ID)
}

// addPending files d, pending, under its endpoint.
func (l *eventLog) addPending(d *store.Delivery) {
	q := l.pending[d.EndpointID]
	i, _ := slices.BinarySearchFunc(q, d, dueOrder)
	l.pending[d.EndpointID] = slices.Insert(q, i, d)
}

// dropPending takes d out of its endpoint's pending deliveries, if there;
// its NextAt and ID must be those it was filed under.
func (l *eventLog) dropPending(d *store.Delivery) {
	q := l.pending[d.EndpointID]
	i, _ := slices.BinarySearchFunc(q, d, dueOrder)
	if i < len(q) && q[i] == d {
		q = slices.Delete(q, i, i+1)
		if len(q) == 0 {
			delete(l.pending, d.EndpointID)
		} else {
			l.pending[d.EndpointID] = q
		}
	}
}

func (l *eventLog) init() {
	if l.events == nil {
		l.events = make(map[string][]*event.Event)
		l.eventByID = make(map[string]*event.Event)
		l.endpoints = make(map[string]*store.Endpoint)
		l.byAccount = make(map[string][]string)
		l.deliveries = make(map[string]*store.Delivery)
		l.byEndpoint = make(map[string][]*store.Delivery)
		l.pending = make(map[string][]*store.Delivery)
		l.byEvent = make(map[string][]string)
	}
}

// checkEvents checks w's endpoint changes against what is stored; the
// caller holds s.mu.
func (s *Store) checkEvents(w *store.Write) error {
	l := &s.ev
	l.init()
	if e := w.Endpoint; e != nil {
		old := l.endpoints[e.ID]
		switch {
		case e.Version == 1 && old != nil:
			return fmt.Errorf("memstore: endpoint %s: %w", e.ID, store.ErrDuplicate)
		case e.Version == 1 && w.MaxEndpoints > 0 && len(l.byAccount[e.AccountID]) >= w.MaxEndpoints:
			return fmt.Errorf("memstore: %w", store.ErrEndpointLimit)
		case e.Version != 1 && old == nil:
			return store.ErrNotFound
		case e.Version != 1 && old.Version != e.Version-1:
			return fmt.Errorf("memstore: endpoint %s: %w", e.ID, store.ErrStale)
		}
	}
	if e := w.DeleteEndpoint; e != nil {
		old := l.endpoints[e.ID]
		switch {
		case old == nil:
			return store.ErrNotFound
		case old.Version != e.Version:
			return fmt.Errorf("memstore: endpoint %s: %w", e.ID, store.ErrStale)
		}
	}
	return nil
}

// applyEvents stores w's endpoint change and events, after checkEvents;
// the caller holds s.mu.
func (s *Store) applyEvents(w *store.Write) {
	l := &s.ev
	if e := w.Endpoint; e != nil {
		e = e.Clone()
		if old := l.endpoints[e.ID]; old != nil {
			if old.Enabled || !e.Enabled {
				e.FailingSince = old.FailingSince
			} else {
				e.FailingSince = time.Time{} // enabled again: its failures count afresh
			}
		} else {
			l.byAccount[e.AccountID] = append(l.byAccount[e.AccountID], e.ID)
		}
		l.endpoints[e.ID] = e
	}
	if e := w.DeleteEndpoint; e != nil {
		old := l.endpoints[e.ID]
		delete(l.endpoints, e.ID)
		l.byAccount[old.AccountID] = slices.DeleteFunc(l.byAccount[old.AccountID], func(id string) bool { return id == e.ID })
		if len(l.byAccount[old.AccountID]) == 0 {
			delete(l.byAccount, old.AccountID)
		}
		for _, d := range l.byEndpoint[e.ID] {
			delete(l.deliveries, d.ID)
		}
		delete(l.byEndpoint, e.ID)
		delete(l.pending, e.ID)
	}
	for i := range w.Events {
		e := w.Events[i]
		e.Data = slices.Clone(e.Data)
		es := l.events[e.AccountID]
		at := len(es)
		for at > 0 && earlier(&e, es[at-1]) {
			at--
		}
		es = slices.Insert(es, at, &e)
		l.eventByID[e.ID] = &e
		if len(es) > EventWindow {
			s.dropEvent(es[0])
			es = slices.Delete(es, 0, 1)
		}
		l.events[e.AccountID] = es
		eps := make([]*store.Endpoint, 0, len(l.byAccount[e.AccountID]))
		for _, id := range l.byAccount[e.AccountID] {
			eps = append(eps, l.endpoints[id])
		}
		for _, d := range store.NewDeliveries(&e, eps) {
			if l.deliveries[d.ID] != nil {
				continue
			}
			l.deliveries[d.ID] = d
			l.byEndpoint[d.EndpointID] = append(l.byEndpoint[d.EndpointID], d)
			l.byEvent[e.ID] = append(l.byEvent[e.ID], d.ID)
			if d.Status == store.DeliveryPending {
				l.addPending(d)
			}
		}
	}
}

// earlier reports whether a comes before b in time order (At, then ID).
func earlier(a, b *event.Event) bool {
	return a.At.Before(b.At) || a.At.Equal(b.At) && a.ID < b.ID
}

// dropEvent deletes an event's deliveries; the caller holds s.mu.
func (s *Store) dropEvent(e *event.Event) {
	l := &s.ev
	for _, id := range l.byEvent[e.ID] {
		if d := l.deliveries[id]; d != nil {
			delete(l.deliveries, id)
			if d.Status == store.DeliveryPending {
				l.dropPending(d)
			}
			l.byEndpoint[d.EndpointID] = slices.DeleteFunc(l.byEndpoint[d.EndpointID], func(x *store.Delivery) bool { return x == d })
		}
	}
	delete(l.byEvent, e.ID)
	delete(l.eventByID, e.ID)
}

// Events implements store.EventStore.
func (s *Store) Events(_ context.Context, q store.EventQuery) ([]event.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []event.Event{}
	if q.ID != "" { // one event, by its ID
		if e := s.ev.eventByID[q.ID]; e != nil && q.Matches(e) && q.Limit > 0 {
			c := *e
			c.Data = slices.Clone(e.Data)
			out = append(out, c)
		}
		return out, nil
	}
	es := s.ev.events[q.AccountID]
	for i := len(es) - 1; i >= 0 && len(out) < q.Limit; i-- {
		if q.Matches(es[i]) {
			e := *es[i]
			e.Data = slices.Clone(e.Data)
			out = append(out, e)
		}
	}
	return out, nil
}

// PruneEvents implements store.EventStore.
func (s *Store) PruneEvents(_ context.Context, before time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for acct, es := range s.ev.events {
		n := 0
		for n < len(es) && es[n].At.Before(before) {
			s.dropEvent(es[n])
			n++
		}
		if n == len(es) {
			delete(s.ev.events, acct)
		} else if n > 0 {
			s.ev.events[acct] = slices.Delete(es, 0, n)
		}
	}
	return nil
}

// Endpoints implements store.EventStore.
func (s *Store) Endpoints(_ context.Context, accountID string) ([]*store.Endpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []*store.Endpoint{}
	for _, id := range s.ev.byAccount[accountID] {
		out = append(out, s.ev.endpoints[id].Clone())
	}
	return out, nil
}

// Endpoint implements store.EventStore.
func (s *Store) Endpoint(_ context.Context, id string) (*store.Endpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.ev.endpoints[id]
	if e == nil {
		return nil, store.ErrNotFound
	}
	return e.Clone(), nil
}

// ClaimDeliveries implements store.EventStore: it reads the head of each
// endpoint's pending deliveries (due first), PerEndpoint of each at most.
func (s *Store) ClaimDeliveries(_ context.Context, c store.Claim) ([]*store.Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	per := c.PerEndpoint
	if per <= 0 {
		per = c.Limit
	}
	var due []*store.Delivery
	for ep, q := range s.ev.pending {
		if slices.Contains(c.Skip, ep) {
			continue
		}
		n := 0
		for _, d := range q {
			if d.NextAt.After(c.Now) || n == per {
				break
			}
			if !d.LeaseUntil.After(c.Now) {
				due = append(due, d)
				n++
			}
		}
	}
	slices.SortFunc(due, dueOrder)
	var out []*store.Delivery
	for _, d := range due[:min(len(due), c.Limit)] {
		d.Lease, d.LeaseUntil = c.Lease, c.Until
		out = append(out, d.Clone())
	}
	return out, nil
}

// FinishDelivery implements store.EventStore.
func (s *Store) FinishDelivery(_ context.Context, d *store.Delivery) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.ev.deliveries[d.ID]
	switch {
	case cur == nil:
		return time.Time{}, store.ErrNotFound
	case cur.Lease != d.Lease || d.Lease == "":
		return time.Time{}, fmt.Errorf("memstore: delivery %s: %w", d.ID, store.ErrStale)
	}
	n := d.Clone()
	if len(n.Attempts) > store.MaxAttemptsKept {
		n.Attempts = n.Attempts[len(n.Attempts)-store.MaxAttemptsKept:]
	}
	n.Lease, n.LeaseUntil = "", time.Time{}
	if cur.Status == store.DeliveryPending {
		s.ev.dropPending(cur)
	}
	*cur = *n
	if cur.Status == store.DeliveryPending {
		s.ev.addPending(cur)
	}
	ep := s.ev.endpoints[cur.EndpointID]
	if ep == nil || len(n.Attempts) == 0 {
		return time.Time{}, nil
	}
	last := n.Attempts[len(n.Attempts)-1]
	if e := ep.Clone(); last.Code >= 200 && last.Code < 300 {
		e.FailingSince = time.Time{}
		s.ev.endpoints[e.ID] = e
	} else if ep.FailingSince.IsZero() {
		e.FailingSince = last.At
		s.ev.endpoints[e.ID] = e
	}
	return s.ev.endpoints[cur.EndpointID].FailingSince, nil
}

// Deliveries implements store.EventStore.
func (s *Store) Deliveries(_ context.Context, q store.DeliveryQuery) ([]*store.Delivery, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ds := s.ev.byEndpoint[q.EndpointID]
	out := []*store.Delivery{}
	for i := len(ds) - 1; i >= 0 && len(out) < q.Limit; i-- {
		d := ds[i]
		if (q.ID == "" || d.ID == q.ID) && (q.EventID == "" || d.EventID == q.EventID) &&
			(q.After == nil || d.CreatedAt.Before(q.After.CreatedAt) || d.CreatedAt.Equal(q.After.CreatedAt) && d.ID < q.After.ID) {
			out = append(out, d.Clone())
		}
	}
	return out, nil
}

// RetryDelivery implements store.EventStore.
func (s *Store) RetryDelivery(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.ev.deliveries[id]
	switch {
	case d == nil:
		return store.ErrNotFound
	case d.LeaseUntil.After(at):
		return fmt.Errorf("memstore: delivery %s is being attempted: %w", id, store.ErrStale)
	}
	if d.Status == store.DeliveryPending {
		s.ev.dropPending(d)
	}
	d.Status, d.NextAt, d.Lease, d.LeaseUntil = store.DeliveryPending, at, "", time.Time{}
	s.ev.addPending(d)
	return nil
}
