package keys

import (
	"net/netip"
	"testing"
)

func TestParseAllowedIP(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"192.0.2.7/32":         "192.0.2.7",
		"10.1.2.3/8":           "10.0.0.0/8",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"::ffff:10.0.0.0/104":  "10.0.0.0/8",
		"2001:DB8::1":          "2001:db8::1",
		"2001:db8::1/32":       "2001:db8::/32",
		"2001:db8:0:0:0:0:0:1": "2001:db8::1",
		"0.0.0.1/1":            "0.0.0.0/1",
	} {
		p, err := parseAllowedIP(in)
		if err != nil || formatPrefix(p) != want {
			t.Errorf("%q: got %q, %v; want %q", in, formatPrefix(p), err, want)
		}
	}
	for _, in := range []string{"", "banana", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.4/33", "::/129", "::/0", "0.0.0.0/0",
		"fe80::1%eth0", "fe80::1%eth0/64", "1.2.3.4/-1", "1.2.3.4/", "/8", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4:80", "[::1]"} {
		if p, err := parseAllowedIP(in); err == nil {
			t.Errorf("%q accepted as %v", in, p)
		}
	}
}

// FuzzParseAllowedIP: no panic, and what is accepted is canonical: masked,
// no zone, no IPv4-mapped form, not /0, and it reads back from its stored
// text unchanged.
func FuzzParseAllowedIP(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "10.1.2.3/8", "::ffff:10.0.0.0/104", "2001:db8::/32", "fe80::1%eth0", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseAllowedIP(s)
		if err != nil {
			return
		}
		a := p.Addr()
		if !p.IsValid() || p != p.Masked() || a.Zone() != "" || a.Is4In6() || p.Bits() == 0 {
			t.Fatalf("%q gave non-canonical %v", s, p)
		}
		again, err := parseAllowedIP(formatPrefix(p))
		if err != nil || again != p {
			t.Fatalf("%q: stored form %q reads back as %v, %v", s, formatPrefix(p), again, err)
		}
		if !ipAllowed([]netip.Prefix{p}, a) {
			t.Fatalf("%v does not contain its own address", p)
		}
	})
}
