package pgstore

import (
	"testing"
	"time"

	"github.com/txcloud/keys/store"
)

// A record read before an invalidation is not cached after it: put checks
// the generation it was read under, so a lookup racing a revocation cannot
// put the old record back for a TTL.
func TestPutAfterInvalidationIsDropped(t *testing.T) {
	c := newCache(100, time.Hour)
	r := &store.Record{ID: "key_race", Digest: store.Digest{1}}
	gen := c.generation() // the lookup starts
	c.invalidate(r.ID)    // a revocation lands meanwhile
	c.put(r, gen)         // the lookup's now-stale answer
	if got := c.get(r.Digest); got != nil {
		t.Fatal("a record read before an invalidation was cached after it")
	}
	c.put(r, c.generation()) // read after: cached
	if got := c.get(r.Digest); got != r {
		t.Fatal("a record read after the invalidation was not cached")
	}
	c.invalidate(r.ID)
	if got := c.get(r.Digest); got != nil {
		t.Fatal("an invalidation left the record cached")
	}
}
