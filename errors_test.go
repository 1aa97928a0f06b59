package keys_test

import (
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/store"
)

// The errors a store returns and the Manager passes on are one value
// each, so a host matches either name.
func TestStoreErrorsAreTheManagers(t *testing.T) {
	for name, pair := range map[string][2]error{
		"ErrNotFound":         {keys.ErrNotFound, store.ErrNotFound},
		"ErrKeyLimit":         {keys.ErrKeyLimit, store.ErrKeyLimit},
		"ErrCreditsExhausted": {keys.ErrCreditsExhausted, store.ErrCreditsExhausted},
	} {
		if pair[0] != pair[1] {
			t.Errorf("keys.%s and store.%s are two values", name, name)
		}
	}
}
