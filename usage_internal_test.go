package keys

import (
	"math/big"
	"strings"
	"testing"
)

// FuzzParseMicros: a price is read exactly, and written back as the same
// amount.
func FuzzParseMicros(f *testing.F) {
	for _, s := range []string{"0", "0.002", "1.000001", "12", "999999999999.999999", "1.", ".5", "-1", "1e3", "0.0000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseMicros(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("%q read as %d", s, n)
		}
		want, ok := new(big.Rat).SetString(strings.TrimSuffix(s, "."))
		if !ok || want.Cmp(new(big.Rat).SetFrac64(n, 1_000_000)) != 0 {
			t.Fatalf("%q read as %d millionths", s, n)
		}
		back, err := parseMicros(string(formatMicros(n)))
		if err != nil || back != n {
			t.Fatalf("%d written as %q, read back as %d (%v)", n, formatMicros(n), back, err)
		}
	})
}
