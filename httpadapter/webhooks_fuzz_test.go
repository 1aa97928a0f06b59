package httpadapter_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/webhook"
)

// FuzzDecodeWebhook: the webhook bodies' decoders never panic; what the
// create decoder accepts re-encodes to the same request; and no URL the
// checks accept is one a delivery may not reach: a literal address they
// pass is a public one.
func FuzzDecodeWebhook(f *testing.F) {
	f.Add([]byte(`{"url":"https://93.184.215.14/hook","events":["key.created","key.revoked"],"description":"d","enabled":false}`))
	f.Add([]byte(`{"url":"https://[::ffff:10.0.0.1]/","events":["*"]}`))
	f.Add([]byte(`{"url":"https://0x7f.1/","events":["*"],"environment":"test"}`))
	f.Add([]byte(`{"url":"https://example.com:443/a?b=c","events":["*"],"url":"x"}`))
	f.Add([]byte(`{"grace_period_seconds":86400}`))
	cfg, err := webhook.Config{Resolver: noDNS{}}.WithDefaults()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if u, err := httpadapter.DecodeWebhookUpdate(body); err == nil && u.URL != nil {
			checkURL(t, &cfg, *u.URL)
		}
		req, err := httpadapter.DecodeWebhookCreate(body)
		if err != nil {
			return
		}
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := httpadapter.DecodeWebhookCreate(b)
		if err != nil {
			t.Fatalf("re-decoding an accepted body failed: %v", err)
		}
		if again.URL != req.URL || !slices.Equal(again.Events, req.Events) || again.Description != req.Description ||
			again.Environment != req.Environment || (again.Enabled == nil) != (req.Enabled == nil) {
			t.Fatalf("round trip changed the request: %+v, %+v", req, again)
		}
		checkURL(t, &cfg, req.URL)
	})
}

// checkURL fails if CheckURL accepts a URL whose host is a literal
// address a delivery may not reach.
func checkURL(t *testing.T, cfg *webhook.Config, raw string) {
	u, err := cfg.CheckURL(context.Background(), raw)
	if err != nil {
		return
	}
	if ip, ok := literalHost(u); ok && !cfg.Allowed(ip) {
		t.Fatalf("CheckURL accepted %q, which reaches %v", raw, ip)
	}
}
