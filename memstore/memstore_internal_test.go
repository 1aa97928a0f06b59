package memstore

import (
	"context"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/keystest"
)

// With every writer lock held, lookups still answer: a flood of lookups
// (unknown keys included) never waits on, or holds up, a lock.
func TestLookupTakesNoLock(t *testing.T) {
	s := New()
	r := keystest.NewRecord(t)
	h := r.Digest
	if err := s.Write(context.Background(), keys.Write{Insert: r}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
	done := make(chan error, 1)
	go func() {
		if _, err := s.LookupDigest(context.Background(), h); err != nil {
			done <- err
			return
		}
		_, err := s.LookupDigest(context.Background(), keys.Digest{9, 9, 9})
		if err != keys.ErrNotFound {
			done <- err
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LookupDigest waited for a lock")
	}
	for i := range s.shards {
		s.shards[i].mu.Unlock()
	}
	s.mu.Unlock()
}

// Expired idempotency entries go by themselves: the Manager's periodic
// last-used flush expires them (in chunks), with no idempotent create
// having to come along; an entry whose scope a newer entry took stays.
func TestIdempotencyEntriesExpireWithoutANewCreate(t *testing.T) {
	s := New()
	created := time.Date(2031, 7, 1, 0, 0, 0, 0, time.UTC)
	var kept keys.Digest
	for i := range 1000 {
		r := keystest.NewRecord(t)
		e := &keys.IdempotencyRecord{KeyID: r.ID, CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour)}
		e.Scope[0], e.Scope[1] = byte(i), byte(i>>8)
		switch i {
		case 998: // expires at the very instant of the flush: due
			e.CreatedAt, e.ExpiresAt = created.Add(12*time.Hour), created.Add(36*time.Hour)
		case 999: // one microsecond later: kept
			e.CreatedAt, e.ExpiresAt = created.Add(12*time.Hour), created.Add(36*time.Hour+time.Microsecond)
			kept = e.Scope
		}
		if err := s.Write(context.Background(), keys.Write{Insert: r, Idempotency: e}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TouchLastUsed(context.Background(), []keys.LastUsed{{ID: "key_unknown", At: created.Add(36 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	n, has := len(s.idem), s.idem[kept] != nil
	s.mu.RUnlock()
	if n != 1 || !has {
		t.Fatalf("%d idempotency entries left after they expired (want the 1 that has not)", n)
	}
}
