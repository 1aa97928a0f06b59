package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// Metadata that passes is a compact JSON object within the bounds, that
// passes again unchanged; nothing panics.
func FuzzValidateMetadata(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"a":2}`, `[1]`, `{"a":"\u00e9\ud83d\ude00"}`, "{\"a\":\"\xff\"}", ` { "a" : [ ] } `, `{"a":{},"b":{}}`, `{"":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := validateMetadata(raw)
		if err != nil {
			if !errors.Is(err, ErrValidation) {
				t.Fatalf("an error that is not a validation error: %v", err)
			}
			return
		}
		if len(raw) == 0 {
			if out != nil {
				t.Fatalf("empty input gave %q", out)
			}
			return
		}
		if len(out) > maxMetadataBytes || out[0] != '{' || !json.Valid(out) {
			t.Fatalf("accepted %q as %q", raw, out)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, out); err != nil || buf.String() != string(out) {
			t.Fatalf("%q is not compact", out)
		}
		again, err := validateMetadata(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("its own output %q: %q, %v", out, again, err)
		}
	})
}

// Oversized metadata is refused before it is walked: a 60 KiB object of
// tiny objects (a map each, in the walk) costs a few allocations, not
// thousands.
func TestOversizedMetadataIsNotWalked(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("{")
	for i := 0; b.Len() < 60<<10; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":{}`, i)
	}
	b.WriteString("}")
	raw := b.Bytes()
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := validateMetadata(raw); err == nil {
			t.Fatal("60 KiB of metadata accepted")
		}
	})
	if allocs > 20 {
		t.Fatalf("refusing 60 KiB of metadata took %.0f allocations", allocs)
	}
}
