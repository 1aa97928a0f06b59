package webhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/txcloud/keys/webhook"
)

// Every kind of address a delivery may not reach, in each of its forms.
func TestAllowedAddresses(t *testing.T) {
	var strict, dev webhook.Config
	dev.AllowLoopback = true
	for addr, want := range map[string][2]bool{ // {strict, with AllowLoopback}
		"93.184.215.14":          {true, true},
		"2606:2800:220:1::1":     {true, true},
		"127.0.0.1":              {false, true},
		"127.9.9.9":              {false, true},
		"::1":                    {false, true},
		"::ffff:127.0.0.1":       {false, true},
		"10.0.0.1":               {false, false},
		"172.16.5.4":             {false, false},
		"192.168.1.1":            {false, false},
		"169.254.169.254":        {false, false},
		"::ffff:169.254.169.254": {false, false},
		"fd00:ec2::254":          {false, false},
		"fe80::1":                {false, false},
		"100.100.100.200":        {false, false},
		"0.0.0.0":                {false, false},
		"::":                     {false, false},
		"224.0.0.1":              {false, false},
		"ff02::1":                {false, false},
		"255.255.255.255":        {false, false},
		"64:ff9b::a9fe:a9fe":     {false, false},
		"2002:a9fe:a9fe::1":      {false, false},
		"::a9fe:a9fe":            {false, false},
		"198.18.0.1":             {false, false},
	} {
		ip := netip.MustParseAddr(addr)
		if got := [2]bool{strict.Allowed(ip), dev.Allowed(ip)}; got != want {
			t.Errorf("%s: allowed %v, want %v", addr, got, want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	var c webhook.Config
	c.Resolver = nil
	for raw, ok := range map[string]bool{
		"https://93.184.215.14/hook":       true,
		"https://93.184.215.14:8443/a?b=c": true,
		"http://93.184.215.14/":            false,
		"https://127.0.0.1/":               false,
		"https://localhost./":              false,
		"https://a.localhost/":             false,
		"https://2130706433/":              false,
		"https://0x7f.1/":                  false,
		"https://127.1/":                   false,
		"https://u:p@93.184.215.14/":       false,
		"https://93.184.215.14/#frag":      false,
		"mailto:a@b.c":                     false,
		"":                                 false,
	} {
		if _, err := c.CheckURL(context.Background(), raw); (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", raw, err, ok)
		}
	}
}

// A created endpoint, which holds its secret, prints and logs without it:
// every fmt verb, and slog's text and JSON handlers (the JSON one would
// otherwise encode the struct, secret included).
func TestEndpointPrintsNoSecret(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ep := webhook.Endpoint{ID: "we_1", URL: "https://example.com/hook", Secret: secret}
	var out strings.Builder
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		fmt.Fprintf(&out, verb+"\n", ep)
		fmt.Fprintf(&out, verb+"\n", &ep)
		fmt.Fprintf(&out, verb+"\n", ep.Secret)
	}
	slog.New(slog.NewJSONHandler(&out, nil)).Info("created", "endpoint", ep, "ptr", &ep, "secret", ep.Secret)
	slog.New(slog.NewTextHandler(&out, nil)).Info("created", "endpoint", ep, "secret", ep.Secret)
	if strings.Contains(out.String(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
		t.Fatalf("the secret was printed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "we_1") {
		t.Fatalf("nothing of the endpoint was printed:\n%s", out.String())
	}
}
