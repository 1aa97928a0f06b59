package keys

import (
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
