package keys

import (
	"math/big"
	"strings"
	"testing"
)

// FuzzEndpointPattern: parsing and matching never panic; a pattern without
// "*" matches exactly its own path (and a trailing slash), for its
// method; a pattern's "*" segments filled in with a segment match.
func FuzzEndpointPattern(f *testing.F) {
	for _, s := range [][3]string{
		{"POST /identity/verify", "POST", "/identity/verify"},
		{"GET /*/analytics/*", "GET", "/fraud/analytics/daily/2026"},
		{"* /a", "DELETE", "/a/"},
		{"GET /a//b", "GET", "/a//b"},
		{"GET", "GET", "/"},
		{"GET /*", "GET", "//"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, method, path string) {
		ep, err := parseEndpointPattern(pattern)
		if err != nil {
			return
		}
		got := ep.match(method, path)
		m, p, _ := strings.Cut(pattern, " ")
		if !strings.Contains(p, "*") {
			want := (m == "*" || m == method) && (path == p || path == p+"/")
			if got != want {
				t.Fatalf("%q against %s %q: %v, want %v", pattern, method, path, got, want)
			}
			return
		}
		filled := strings.ReplaceAll(p, "*", "x")
		if m != "*" && !ep.match(m, filled) {
			t.Fatalf("%q does not match %q", pattern, filled)
		}
	})
}

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
