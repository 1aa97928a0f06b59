package httpadapter_test

import (
	"context"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/internal/hostile"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// snapshot is every record of the test accounts, as the store has them.
func snapshot(t *testing.T, s store.Store) map[string]*store.Record {
	t.Helper()
	out := map[string]*store.Record{}
	for _, acct := range []string{"acct_a", "acct_b"} {
		rs, err := s.List(context.Background(), store.ListQuery{AccountID: acct, Limit: 10_000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			out[r.ID] = r
		}
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]*store.Record) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("%d records before, %d after", len(before), len(after))
	}
	for id, b := range before {
		a, ok := after[id]
		if !ok {
			t.Fatalf("record %s disappeared", id)
		}
		if d := storetest.Equal(a, b); d != "" {
			t.Fatalf("record %s changed: %s", id, d)
		}
	}
}

// TestHostileInput sends malformed and hostile requests to every endpoint
// and checks each gets its status in the envelope and changes nothing.
func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	target := newKey(t, h, e.admin, `{"name":"target","environment":"test","permissions":["identity:read"]}`)
	rows := hostile.Requests(hostile.Keys{Admin: e.admin, Revoked: e.revoked, Stranger: e.stranger, StrangerKeyID: keyIDOf(t, e, e.stranger), TargetID: target.ID})
	if len(rows) < 160 {
		t.Fatalf("only %d hostile requests", len(rows))
	}
	before := snapshot(t, e.store)
	evs, err := e.m.As(keys.Principal{AccountID: "acct_a"}).Events(context.Background(), event.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Run(r.Name, func(t *testing.T) {
			rec := serve(h, request{method: r.Method, path: r.Path, headers: r.Headers, body: r.Body})
			if rec.Code != r.Status {
				t.Fatalf("status %d, want %d: %.300s", rec.Code, r.Status, rec.Body)
			}
			envelope(t, rec)
		})
	}
	sameSnapshot(t, before, snapshot(t, e.store))
	after, err := e.m.As(keys.Principal{AccountID: "acct_a"}).Events(context.Background(), event.Filter{Limit: 100})
	if err != nil || len(after.Data) != len(evs.Data) {
		t.Fatalf("events: %d before, %d after (%v): a hostile request changed something", len(evs.Data), len(after.Data), err)
	}
	if l, err := e.m.As(keys.Principal{AccountID: "acct_a"}).Webhooks().List(context.Background()); err != nil || len(l.Data) != 0 {
		t.Fatalf("a hostile request registered an endpoint: %+v, %v", l, err)
	}
	t.Logf("%d hostile requests, all refused in the envelope, nothing changed", len(rows))
}
