package storetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/store"
)

// The event log's and webhook deliveries' rules (store.EventStore).

func eventStore(t *testing.T, s store.Store) store.EventStore {
	es, ok := s.(store.EventStore)
	if !ok {
		t.Skip("not a store.EventStore: no event log is kept")
	}
	return es
}

var evSeq atomic.Int64

// newTestEvent is an event of acct at base+at.
func newTestEvent(acct string, typ event.Type, at time.Duration, key string) event.Event {
	return event.Event{ID: fmt.Sprintf("evt_%06d_%s", evSeq.Add(1), rand.Text()[:6]), Type: typ, At: base.Add(at).UTC(), AccountID: acct, KeyID: key, Environment: "live",
		Actor: "key_actor", RequestID: "req_1", ClientIP: "192.0.2.7", Data: json.RawMessage(`{"id":"` + key + `","name":"n"}`)}
}

func newEndpoint(acct string, events ...string) *store.Endpoint {
	return &store.Endpoint{ID: "we_" + rand.Text()[:12], AccountID: acct, Environment: "live", URL: "https://example.com/hook", Events: events,
		Description: "d", Enabled: true, Secret: []byte("sealed-secret"), CreatedAt: base, UpdatedAt: base, Version: 1}
}

func readEvents(t *testing.T, es store.EventStore, q store.EventQuery) []event.Event {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 100
	}
	got, err := es.Events(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func ids(evs []event.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func sameIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Events are stored with their change, all or nothing, and read back as
// written, newest first, filtered and paged.
func testEvents(t *testing.T, s store.Store) {
	es := eventStore(t, s)
	ctx := context.Background()
	a, b := "acct_"+rand.Text()[:8], "acct_"+rand.Text()[:8]
	rec := NewRecord(t)
	rec.AccountID = a
	e1 := newTestEvent(a, event.KeyCreated, 0, rec.ID)
	if err := s.Write(ctx, store.Write{Insert: rec, Events: []event.Event{e1}}); err != nil {
		t.Fatal(err)
	}
	got := readEvents(t, es, store.EventQuery{AccountID: a})
	if len(got) != 1 {
		t.Fatalf("%d events", len(got))
	}
	g := got[0]
	if g.ID != e1.ID || g.Type != e1.Type || !g.At.Equal(e1.At) || g.AccountID != a || g.KeyID != rec.ID || g.Actor != e1.Actor || g.Environment != "live" ||
		g.RequestID != e1.RequestID || g.ClientIP != e1.ClientIP || string(g.Data) != string(e1.Data) || g.To != "" {
		t.Fatalf("read back %+v, want %+v", g, e1)
	}
	// A Write refused stores none of its events.
	dup := NewRecord(t)
	dup.ID, dup.AccountID = rec.ID, a
	refused := []store.Write{
		{Insert: dup, Events: []event.Event{newTestEvent(a, event.KeyCreated, time.Second, rec.ID)}},
		{Insert: func() *store.Record { r := NewRecord(t); r.AccountID = a; return r }(), MaxActive: 1, Events: []event.Event{newTestEvent(a, event.KeyCreated, time.Second, "k")}},
		{Replace: func() *store.Record { r := rec.Clone(); r.Version = 5; return r }(), Events: []event.Event{newTestEvent(a, event.KeyUpdated, time.Second, rec.ID)}},
		{Endpoint: func() *store.Endpoint { e := newEndpoint(a, "*"); e.Version = 3; return e }(), Events: []event.Event{newTestEvent(a, event.EndpointUpdated, time.Second, "")}},
	}
	for i, w := range refused {
		if err := s.Write(ctx, w); err == nil {
			t.Fatalf("refused write %d was applied", i)
		}
	}
	if got := readEvents(t, es, store.EventQuery{AccountID: a}); len(got) != 1 {
		t.Fatalf("%d events after refused writes, want 1", len(got))
	}
	// A Write of events alone; equal times sort by ID.
	e2 := newTestEvent(a, event.KeyExpiring, 2*time.Second, rec.ID)
	e3 := newTestEvent(a, event.KeyRevoked, 2*time.Second, rec.ID)
	e4 := newTestEvent(a, event.CreditsLow, 3*time.Second, "")
	eb := newTestEvent(b, event.KeyCreated, 2*time.Second, "key_b")
	if err := s.Write(ctx, store.Write{Events: []event.Event{e4, e2, eb, e3}}); err != nil {
		t.Fatal(err)
	}
	all := ids(readEvents(t, es, store.EventQuery{AccountID: a}))
	if want := []string{e4.ID, e3.ID, e2.ID, e1.ID}; !sameIDs(all, want) {
		t.Fatalf("order %v, want %v", all, want)
	}
	for name, c := range map[string]struct {
		q    store.EventQuery
		want []string
	}{
		"type":   {store.EventQuery{AccountID: a, Type: event.KeyRevoked}, []string{e3.ID}},
		"key":    {store.EventQuery{AccountID: a, KeyID: rec.ID}, []string{e3.ID, e2.ID, e1.ID}},
		"window": {store.EventQuery{AccountID: a, Start: base.Add(time.Second), End: base.Add(3 * time.Second)}, []string{e3.ID, e2.ID}},
		"id":     {store.EventQuery{AccountID: a, ID: e2.ID}, []string{e2.ID}},
		"other":  {store.EventQuery{AccountID: b, ID: e2.ID}, []string{}},
		"after":  {store.EventQuery{AccountID: a, After: &store.ListPosition{CreatedAt: e3.At, ID: e3.ID}}, []string{e2.ID, e1.ID}},
		"limit":  {store.EventQuery{AccountID: a, Limit: 2}, []string{e4.ID, e3.ID}},
		"b":      {store.EventQuery{AccountID: b}, []string{eb.ID}},
		"live":   {store.EventQuery{AccountID: a, Environment: "live", Limit: 2}, []string{e4.ID, e3.ID}},
		"test":   {store.EventQuery{AccountID: a, Environment: "test"}, []string{}},
	} {
		if got := ids(readEvents(t, es, c.q)); !sameIDs(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
	// Pruning deletes the older events, not the newer.
	if err := es.PruneEvents(ctx, base.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := ids(readEvents(t, es, store.EventQuery{AccountID: a})); !sameIDs(got, []string{e4.ID, e3.ID, e2.ID}) {
		t.Fatalf("after pruning: %v", got)
	}
}

// Endpoints: inserted, replaced by version, capped per account, deleted
// with their deliveries; an idempotency entry goes in with an insert or a
// replace, or refuses it whole.
func testEndpoints(t *testing.T, s store.Store) {
	es := eventStore(t, s)
	ctx := context.Background()
	a := "acct_" + rand.Text()[:8]
	e1, e2 := newEndpoint(a, "*"), newEndpoint(a, "key.created", "key.revoked")
	e2.CreatedAt = base.Add(time.Second) // Endpoints lists oldest first
	// e1 goes in with an idempotency entry naming it (an idempotent
	// create); an insert whose entry's scope is taken goes in not at all.
	created := newIdem(t, e1.ID, base)
	taken := newEndpoint(a, "*")
	if err := s.Write(ctx, store.Write{Endpoint: e1.Clone(), MaxEndpoints: 2, Idempotency: created}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LookupIdempotency(ctx, created.Scope, base); err != nil || got.KeyID != e1.ID {
		t.Fatalf("the idempotency entry of an endpoint insert: %+v, %v", got, err)
	}
	if err := s.Write(ctx, store.Write{Endpoint: taken, MaxEndpoints: 2, Idempotency: newIdemScope(t, created.Scope, taken.ID, base)}); !errors.Is(err, store.ErrIdempotencyKeyExists) {
		t.Fatalf("an endpoint insert whose idempotency scope is taken: %v", err)
	}
	if _, err := es.Endpoint(ctx, taken.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the refused insert stored its endpoint: %v", err)
	}
	if err := s.Write(ctx, store.Write{Endpoint: e2.Clone(), MaxEndpoints: 2}); err != nil {
		t.Fatal(err)
	}
	third := newEndpoint(a, "*")
	if err := s.Write(ctx, store.Write{Endpoint: third, MaxEndpoints: 2, Events: []event.Event{newTestEvent(a, event.EndpointCreated, 0, "")}}); !errors.Is(err, store.ErrEndpointLimit) {
		t.Fatalf("a third endpoint past 2: %v", err)
	}
	if got := readEvents(t, es, store.EventQuery{AccountID: a}); len(got) != 0 {
		t.Fatalf("the refused endpoint's event was stored")
	}
	if err := s.Write(ctx, store.Write{Endpoint: e1.Clone()}); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("inserting an endpoint twice: %v", err)
	}
	list, err := es.Endpoints(ctx, a)
	if err != nil || len(list) != 2 || list[0].ID != e1.ID || list[1].ID != e2.ID {
		t.Fatalf("Endpoints: %v, %v", list, err)
	}
	g := list[1]
	if g.URL != e2.URL || g.Environment != "live" || len(g.Events) != 2 || g.Events[1] != "key.revoked" || g.Description != "d" || !g.Enabled ||
		string(g.Secret) != "sealed-secret" || len(g.PreviousSecret) != 0 || !g.CreatedAt.Equal(e2.CreatedAt) || g.Version != 1 {
		t.Fatalf("read back %+v", g)
	}
	next := e2.Clone()
	next.Version, next.URL, next.PreviousSecret, next.PreviousUntil = 2, "https://example.org/2", []byte("old"), base.Add(time.Hour)
	if err := s.Write(ctx, store.Write{Endpoint: next}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, store.Write{Endpoint: next.Clone()}); !errors.Is(err, store.ErrStale) {
		t.Fatalf("a stale replace: %v", err)
	}
	g, err = es.Endpoint(ctx, e2.ID)
	if err != nil || g.URL != "https://example.org/2" || string(g.PreviousSecret) != "old" || !g.PreviousUntil.Equal(base.Add(time.Hour)) || g.Version != 2 {
		t.Fatalf("after replace: %+v, %v", g, err)
	}
	if _, err := es.Endpoint(ctx, "we_nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	// An idempotency entry beside a replace (a roll of the signing
	// secret): stored with it; a second entry of its scope refuses the
	// next replace whole, its events included.
	entry := newIdem(t, e2.ID, base)
	third2 := next.Clone()
	third2.Version, third2.Secret = 3, []byte("rolled")
	if err := s.Write(ctx, store.Write{Endpoint: third2, Idempotency: entry}); err != nil {
		t.Fatalf("a replace with an idempotency entry: %v", err)
	}
	if got, err := s.LookupIdempotency(ctx, entry.Scope, base); err != nil || got.KeyID != e2.ID || string(got.Sealed) != string(entry.Sealed) {
		t.Fatalf("the replace's idempotency entry: %+v, %v", got, err)
	}
	again := third2.Clone()
	again.Version, again.Secret = 4, []byte("rolled twice")
	if err := s.Write(ctx, store.Write{Endpoint: again, Idempotency: newIdemScope(t, entry.Scope, e2.ID, base.Add(time.Minute)),
		Events: []event.Event{newTestEvent(a, event.EndpointUpdated, 0, "")}}); !errors.Is(err, store.ErrIdempotencyKeyExists) {
		t.Fatalf("a replace whose idempotency scope is taken: %v", err)
	}
	if g, err := es.Endpoint(ctx, e2.ID); err != nil || g.Version != 3 || string(g.Secret) != "rolled" {
		t.Fatalf("the refused replace changed the endpoint: %+v, %v", g, err)
	}
	if got := readEvents(t, es, store.EventQuery{AccountID: a}); len(got) != 0 {
		t.Fatalf("the refused replace's event was stored")
	}
	missing := newEndpoint(a, "*")
	missing.Version = 2
	if err := s.Write(ctx, store.Write{Endpoint: missing}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replacing a missing endpoint: %v", err)
	}
	// Delete: by version, with its deliveries.
	if err := s.Write(ctx, store.Write{Events: []event.Event{newTestEvent(a, event.KeyCreated, 0, "k")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, store.Write{DeleteEndpoint: e1}); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Endpoint(ctx, e1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted endpoint: %v", err)
	}
	if ds, err := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: e1.ID, Limit: 10}); err != nil || len(ds) != 0 {
		t.Fatalf("deliveries of a deleted endpoint: %v, %v", ds, err)
	}
	if err := s.Write(ctx, store.Write{DeleteEndpoint: e1}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := s.Write(ctx, store.Write{DeleteEndpoint: e2}); !errors.Is(err, store.ErrStale) {
		t.Fatalf("deleting an old version: %v", err)
	}
	if list, _ := es.Endpoints(ctx, a); len(list) != 1 {
		t.Fatalf("%d endpoints left", len(list))
	}
}

// Each event gets a delivery to each endpoint of its account that
// subscribes to its type (or to the one it is addressed to), pending if
// the endpoint is enabled, skipped otherwise.
func testDeliveryFanOut(t *testing.T, s store.Store) {
	es := eventStore(t, s)
	ctx := context.Background()
	a, b := "acct_"+rand.Text()[:8], "acct_"+rand.Text()[:8]
	created, all, revoked, off, other, testEP := newEndpoint(a, "key.created"), newEndpoint(a, "*"), newEndpoint(a, "key.revoked"), newEndpoint(a, "*"), newEndpoint(b, "*"), newEndpoint(a, "*")
	off.Enabled = false
	testEP.Environment = "test" // a test endpoint hears test events only
	for _, e := range []*store.Endpoint{created, all, revoked, off, other, testEP} {
		if err := s.Write(ctx, store.Write{Endpoint: e.Clone()}); err != nil {
			t.Fatal(err)
		}
	}
	ev := newTestEvent(a, event.KeyCreated, time.Second, "k")
	test := newTestEvent(a, event.WebhookTest, 2*time.Second, "")
	test.To = revoked.ID
	if err := s.Write(ctx, store.Write{Events: []event.Event{ev, test}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]store.DeliveryStatus{created.ID: store.DeliveryPending, all.ID: store.DeliveryPending, off.ID: store.DeliverySkipped}
	for _, e := range []*store.Endpoint{created, all, revoked, off, other, testEP} {
		ds, err := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: e.ID, EventID: ev.ID, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		st, ok := want[e.ID]
		switch {
		case !ok && len(ds) != 0:
			t.Errorf("endpoint %s (%v) got a delivery of %s", e.ID, e.Events, ev.Type)
		case ok && len(ds) != 1:
			t.Errorf("endpoint %s (%v): %d deliveries", e.ID, e.Events, len(ds))
		case ok:
			d := ds[0]
			if d.ID != store.DeliveryID(ev.ID, e.ID) || d.Status != st || d.EventID != ev.ID || d.AccountID != a || d.EndpointID != e.ID ||
				!d.CreatedAt.Equal(ev.At) || (st == store.DeliveryPending) != d.NextAt.Equal(ev.At) || d.Tries != 0 || len(d.Attempts) != 0 {
				t.Errorf("endpoint %s: %+v", e.ID, d)
			}
		}
	}
	ds, err := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: revoked.ID, Limit: 10})
	if err != nil || len(ds) != 1 || ds[0].EventID != test.ID {
		t.Fatalf("the event addressed to one endpoint: %+v, %v", ds, err)
	}
	if ds, _ := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: all.ID, Limit: 10}); len(ds) != 1 {
		t.Fatalf("the addressed event reached another endpoint: %d", len(ds))
	}
	te := newTestEvent(a, event.KeyRevoked, 3*time.Second, "k")
	te.Environment = "test"
	if err := s.Write(ctx, store.Write{Events: []event.Event{te}}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: testEP.ID, Limit: 10}); len(ds) != 1 || ds[0].EventID != te.ID {
		t.Fatalf("the test endpoint: %+v, want the test event alone", ds)
	}
	if got := readEvents(t, es, store.EventQuery{AccountID: a, ID: te.ID}); len(got) != 1 || got[0].Environment != "test" {
		t.Fatalf("a test event read back: %+v", got)
	}
}

// Claims lease each due delivery to one claim; an attempt is recorded
// only under its claim; a retry by hand makes a delivery due again.
func testDeliveryClaims(t *testing.T, s store.Store) {
	es := eventStore(t, s)
	ctx := context.Background()
	a := "acct_" + rand.Text()[:8]
	e1, e2 := newEndpoint(a, "*"), newEndpoint(a, "*")
	for _, e := range []*store.Endpoint{e1, e2} {
		if err := s.Write(ctx, store.Write{Endpoint: e.Clone()}); err != nil {
			t.Fatal(err)
		}
	}
	var evs []event.Event
	for i := range 5 {
		evs = append(evs, newTestEvent(a, event.KeyCreated, time.Duration(i)*time.Second, "k"))
	}
	if err := s.Write(ctx, store.Write{Events: evs}); err != nil {
		t.Fatal(err)
	}
	now := base.Add(time.Hour)
	claim := func(lease string, limit, per int, skip ...string) []*store.Delivery {
		t.Helper()
		ds, err := es.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(time.Minute), Lease: lease, Limit: limit, PerEndpoint: per, Skip: skip})
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	// Not yet due: nothing.
	if ds, _ := es.ClaimDeliveries(ctx, store.Claim{Now: base.Add(-time.Second), Until: now, Lease: "x", Limit: 10, PerEndpoint: 10}); len(ds) != 0 {
		t.Fatalf("claimed %d deliveries not due", len(ds))
	}
	first := claim("c1", 10, 2, e2.ID)
	if len(first) != 2 || first[0].EndpointID != e1.ID || first[1].EndpointID != e1.ID || first[0].EventID != evs[0].ID || first[1].EventID != evs[1].ID ||
		first[0].Lease != "c1" || !first[0].LeaseUntil.Equal(now.Add(time.Minute)) {
		t.Fatalf("per endpoint 2, skipping e2, oldest first: %+v", first)
	}
	// Concurrent claims share the rest: each delivery once.
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds, err := es.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(time.Minute), Lease: fmt.Sprint("c", i+2), Limit: 10, PerEndpoint: 10})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			for _, d := range ds {
				seen[d.ID]++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(seen) != 8 {
		t.Fatalf("concurrent claims got %d deliveries, want the other 8", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("%s claimed %d times", id, n)
		}
	}
	// An attempt under another claim's name is refused; under its own,
	// recorded, and the endpoint's health follows.
	d := first[0].Clone()
	d.Lease = "someone else"
	if _, err := es.FinishDelivery(ctx, d); !errors.Is(err, store.ErrStale) {
		t.Fatalf("finishing another claim's delivery: %v", err)
	}
	d = first[0].Clone()
	d.Tries, d.Status, d.NextAt = 1, store.DeliveryPending, now.Add(time.Minute)
	d.Attempts = []store.Attempt{{At: now, Code: 500, Latency: 12 * time.Millisecond}}
	failing, err := es.FinishDelivery(ctx, d)
	if err != nil || !failing.Equal(now) {
		t.Fatalf("after a failure: failing since %v, %v", failing, err)
	}
	d2 := first[1].Clone()
	d2.Tries, d2.Status = 1, store.DeliveryFailed
	d2.Attempts = []store.Attempt{{At: now.Add(time.Second), Error: "timeout", Latency: time.Second}}
	if failing, err := es.FinishDelivery(ctx, d2); err != nil || !failing.Equal(now) {
		t.Fatalf("a second failure moved FailingSince to %v, %v", failing, err)
	}
	// A replace keeps the endpoint's health; enabling it again clears it.
	ep, err := es.Endpoint(ctx, e1.ID)
	if err != nil || !ep.FailingSince.Equal(now) {
		t.Fatalf("FailingSince %v, %v", ep.FailingSince, err)
	}
	ep.Version, ep.Enabled = ep.Version+1, false
	if err := s.Write(ctx, store.Write{Endpoint: ep.Clone()}); err != nil {
		t.Fatal(err)
	}
	if ep, _ = es.Endpoint(ctx, e1.ID); !ep.FailingSince.Equal(now) {
		t.Fatalf("a replace cleared FailingSince")
	}
	ep.Version, ep.Enabled = ep.Version+1, true
	if err := s.Write(ctx, store.Write{Endpoint: ep.Clone()}); err != nil {
		t.Fatal(err)
	}
	if ep, _ = es.Endpoint(ctx, e1.ID); !ep.FailingSince.IsZero() {
		t.Fatalf("enabling kept FailingSince %v", ep.FailingSince)
	}
	got, err := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: e1.ID, ID: d.ID, Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if g := got[0]; g.Status != store.DeliveryPending || !g.NextAt.Equal(now.Add(time.Minute)) || g.Tries != 1 || len(g.Attempts) != 1 ||
		g.Attempts[0].Code != 500 || g.Attempts[0].Latency != 12*time.Millisecond || !g.Attempts[0].At.Equal(now) || g.Lease != "" {
		t.Fatalf("recorded %+v", g)
	}
	// Its lease ended: due again at NextAt, not before.
	if ds := claim("c9", 10, 10); len(ds) != 0 {
		t.Fatalf("claimed %d before they are due or while leased", len(ds))
	}
	// A retry by hand: due at once; refused while a claim holds it.
	if err := es.RetryDelivery(ctx, d2.ID, now); err != nil {
		t.Fatal(err)
	}
	re := claim("c10", 10, 10)
	if len(re) != 1 || re[0].ID != d2.ID || re[0].Tries != 1 || len(re[0].Attempts) != 1 {
		t.Fatalf("after a retry by hand: %+v", re)
	}
	if err := es.RetryDelivery(ctx, d2.ID, now); !errors.Is(err, store.ErrStale) {
		t.Fatalf("retrying a claimed delivery: %v", err)
	}
	if err := es.RetryDelivery(ctx, "dlv_nope", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retrying an unknown delivery: %v", err)
	}
	ok := re[0].Clone()
	ok.Tries, ok.Status = 2, store.DeliverySucceeded
	ok.Attempts = append(ok.Attempts, store.Attempt{At: now.Add(2 * time.Second), Code: 204})
	if failing, err := es.FinishDelivery(ctx, ok); err != nil || !failing.IsZero() {
		t.Fatalf("a success leaves the endpoint failing since %v, %v", failing, err)
	}
	// A claim whose lease ran out is taken by the next claim, and the
	// first claimant's late answer is refused.
	if err := es.RetryDelivery(ctx, first[1].ID, now); err != nil {
		t.Fatal(err)
	}
	short, err := es.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(time.Second), Lease: "dies", Limit: 10, PerEndpoint: 10, Skip: []string{e2.ID}})
	if err != nil || len(short) != 1 || short[0].ID != first[1].ID {
		t.Fatalf("a claim of one second: %+v, %v", short, err)
	}
	if again, _ := es.ClaimDeliveries(ctx, store.Claim{Now: now.Add(500 * time.Millisecond), Until: now.Add(time.Minute), Lease: "early", Limit: 10, PerEndpoint: 10, Skip: []string{e2.ID}}); len(again) != 0 {
		t.Fatalf("claimed during another's lease: %+v", again)
	}
	later, err := es.ClaimDeliveries(ctx, store.Claim{Now: now.Add(2 * time.Second), Until: now.Add(time.Minute), Lease: "heir", Limit: 10, PerEndpoint: 10, Skip: []string{e2.ID}})
	if err != nil || len(later) != 1 || later[0].ID != first[1].ID || later[0].Lease != "heir" {
		t.Fatalf("after the lease: %+v, %v", later, err)
	}
	late := short[0].Clone()
	late.Status, late.Tries = store.DeliverySucceeded, late.Tries+1
	if _, err := es.FinishDelivery(ctx, late); !errors.Is(err, store.ErrStale) {
		t.Fatalf("the dead claim's answer: %v", err)
	}
	heir := later[0].Clone()
	heir.Status, heir.Tries = store.DeliveryFailed, heir.Tries+1
	if _, err := es.FinishDelivery(ctx, heir); err != nil {
		t.Fatal(err)
	}
	// Newest first, paged.
	all, err := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: e1.ID, Limit: 10})
	if err != nil || len(all) != 5 || all[0].EventID != evs[4].ID || all[4].EventID != evs[0].ID {
		t.Fatalf("deliveries newest first: %d, %v", len(all), err)
	}
	page, err := es.Deliveries(ctx, store.DeliveryQuery{EndpointID: e1.ID, Limit: 2, After: &store.ListPosition{CreatedAt: all[1].CreatedAt, ID: all[1].ID}})
	if err != nil || len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Fatalf("after a cursor: %v, %v", page, err)
	}
}

// A claim is fair: one endpoint's many due deliveries hide no other
// endpoint's.
func testDeliveryClaimsAreFair(t *testing.T, s store.Store) {
	es := eventStore(t, s)
	ctx := context.Background()
	a, b := "acct_"+rand.Text()[:8], "acct_"+rand.Text()[:8]
	flood, quiet := newEndpoint(a, "*"), newEndpoint(b, "*")
	for _, e := range []*store.Endpoint{flood, quiet} {
		if err := s.Write(ctx, store.Write{Endpoint: e.Clone()}); err != nil {
			t.Fatal(err)
		}
	}
	var evs []event.Event
	for i := range 300 {
		evs = append(evs, newTestEvent(a, event.KeyCreated, time.Duration(i)*time.Millisecond, "k"))
	}
	evs = append(evs, newTestEvent(b, event.KeyCreated, time.Second, "k"))
	if err := s.Write(ctx, store.Write{Events: evs}); err != nil {
		t.Fatal(err)
	}
	now := base.Add(time.Hour)
	ds, err := es.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(time.Minute), Lease: "c1", Limit: 3, PerEndpoint: 1})
	if err != nil || len(ds) != 2 || ds[0].EndpointID != flood.ID || ds[1].EndpointID != quiet.ID {
		t.Fatalf("one of each endpoint: %d, %v", len(ds), err)
	}
	ds, err = es.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(time.Minute), Lease: "c2", Limit: 3, PerEndpoint: 2, Skip: []string{flood.ID}})
	if err != nil || len(ds) != 0 {
		t.Fatalf("skipping the flooded endpoint: %d, %v", len(ds), err)
	}
	// Past the window a store may read: the quiet endpoint's delivery,
	// due after more than ClaimWindow of the flood's, is claimed once the
	// flooded endpoint is skipped.
	c, q := "acct_"+rand.Text()[:8], "acct_"+rand.Text()[:8]
	flood, quiet = newEndpoint(c, "*"), newEndpoint(q, "*")
	for _, e := range []*store.Endpoint{flood, quiet} {
		if err := s.Write(ctx, store.Write{Endpoint: e.Clone()}); err != nil {
			t.Fatal(err)
		}
	}
	evs = nil
	for i := range store.ClaimWindow + 100 {
		evs = append(evs, newTestEvent(c, event.KeyCreated, time.Duration(i)*time.Microsecond, "k"))
	}
	late := newTestEvent(q, event.KeyCreated, time.Second, "k")
	if err := s.Write(ctx, store.Write{Events: append(evs, late)}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for i, skip := range [][]string{nil, {flood.ID}} {
		ds, err := es.ClaimDeliveries(ctx, store.Claim{Now: now, Until: now.Add(time.Minute), Lease: fmt.Sprint("w", i), Limit: 10, PerEndpoint: 2, Skip: skip})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			got[d.EndpointID] = true
		}
	}
	if !got[flood.ID] || !got[quiet.ID] {
		t.Fatalf("past the window: claimed for the flood %v, for the quiet endpoint %v", got[flood.ID], got[quiet.ID])
	}
}
