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
