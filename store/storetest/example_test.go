package storetest_test

import (
	"fmt"
	"testing"

	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/store/storetest"
)

// A store's tests run the conformance suite with a constructor; every case
// gets a fresh store.
func ExampleRun() {
	_ = func(t *testing.T) { // in a _test.go file: func TestConformance(t *testing.T)
		storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
	}
}

// Equal says how two records differ, for a store's own tests.
func ExampleEqual() {
	a := &store.Record{ID: "key_1", AccountID: "acct_1", Environment: "test", Version: 1}
	b := a.Clone()
	fmt.Printf("%q\n", storetest.Equal(b, a))
	b.Version = 2
	fmt.Println(storetest.Equal(b, a))
	// Output:
	// ""
	// Version 2, want 1
}
