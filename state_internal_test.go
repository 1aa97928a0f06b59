package keys

import (
	"testing"

	"github.com/txcloud/keys/store"
)

// A slot's tag only spares a probe the loads of states that cannot
// match: digests alike in their shard, their probe's start and their tag
// get states of their own, found again, and swept one without the other.
func TestStatesAlikeInTagAndHome(t *testing.T) {
	s := newStates()
	like := func(b byte) *store.Digest {
		d := store.Digest{31: 5, 16: 1, 0: 2} // shard 5, home 1, tag 2
		d[8] = b
		return &d
	}
	a := s.insert(like(1), "key_a", "acct", "")
	b := s.insert(like(2), "key_b", "acct", "")
	if a == b || s.get(like(1)) != a || s.get(like(2)) != b {
		t.Fatal("two digests alike in tag and home share a state")
	}
	if s.get(like(3)) != nil {
		t.Fatal("a digest alike in tag and home but never used has a state")
	}
	s.sweep(func(st *keyState) bool { return st == a })
	if s.get(like(1)) != nil || s.get(like(2)) != b {
		t.Fatal("sweeping one of them swept the other, or kept it")
	}
}
