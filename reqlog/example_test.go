package reqlog_test

import (
	"fmt"
	"net/netip"

	"github.com/txcloud/keys/reqlog"
)

// How much of a client's address an entry keeps.
func ExampleIPMode_Apply() {
	for _, ip := range []string{"198.51.100.77", "2001:db8:1234:5678::1"} {
		a := netip.MustParseAddr(ip)
		fmt.Println(reqlog.IPTruncated.Apply(a), reqlog.IPFull.Apply(a), reqlog.IPNone.Apply(a).IsValid())
	}
	// Output:
	// 198.51.100.0 198.51.100.77 false
	// 2001:db8:1234:: 2001:db8:1234:5678::1 false
}

// The status filter of GET /developers/logs: a code or a class.
func ExampleParseStatus() {
	for _, s := range []string{"429", "4xx", "600"} {
		st, err := reqlog.ParseStatus(s)
		fmt.Println(st.Min, st.Max, err)
	}
	// Output:
	// 429 429 <nil>
	// 400 499 <nil>
	// 0 0 status must be a code such as 429 or a class such as 4xx
}
