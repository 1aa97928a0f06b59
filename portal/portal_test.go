package portal_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/portal"
	"github.com/txcloud/keys/store"
	"github.com/txcloud/keys/webhook"
)

func count(t *testing.T, m *keys.Manager, account string) int {
	t.Helper()
	n, cursor := 0, ""
	for {
		l, err := m.List(context.Background(), keys.ListFilter{AccountID: account, Limit: 100, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		n += len(l.Data)
		if !l.HasMore {
			return n
		}
		cursor = l.NextCursor
	}
}

func TestNewRefusesWhatWouldDoNothing(t *testing.T) {
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]portal.Config{
		"no secret":                {},
		"a short secret":           {Secret: secret[:31]},
		"a sign-in URL, no host":   {Secret: secret, SignInURL: "/login"},
		"a path ending in a slash": {Secret: secret, Path: "/portal/"},
		"a relative path":          {Secret: secret, Path: "portal"},
	} {
		if _, err := portal.New(m, c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := portal.New(nil, portal.Config{Secret: secret}); err == nil {
		t.Error("a nil Manager: accepted")
	}
}

// TestCreateShowsTheSecretOnceAndNeverTwice: the create answer shows the
// key, which verifies; the same form again (a reload, a second click)
// creates nothing and shows no secret; the key never appears on a later
// page.
func TestCreateShowsTheSecretOnceAndNeverTwice(t *testing.T) {
	f := newFixture(t, nil)
	b := f.signedIn(f.key)
	before := count(t, f.m, "acct_a")
	vals := url.Values{"name": {"billing"}, "environment": {"live"}, "permissions": {"identity:read"}, "rate_limit": {"100"},
		"allowed_ips": {"10.0.0.0/8\n192.0.2.7"}, "metadata": {`{"team":"billing"}`}, "expires_at": {"2099-01-31T18:00"}}
	resp, nonce := b.createKey(vals)
	if resp.status != http.StatusCreated {
		t.Fatalf("create: %d: %.500s", resp.status, resp.body)
	}
	key := secretOn(resp.body)
	if !strings.HasPrefix(key, "txc_live_") {
		t.Fatalf("no key shown: %.800s", resp.body)
	}
	if cc := resp.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the secret's page has Cache-Control %q", cc)
	}
	v, err := f.m.Verify(context.Background(), key, keys.FromIP(netip.MustParseAddr("192.0.2.7")))
	if err != nil || v.AccountID != "acct_a" {
		t.Fatalf("the shown key does not verify for the account: %v", err)
	}
	got, _ := f.m.Get(context.Background(), v.KeyID)
	if got.Name != "billing" || *got.RateLimit != 100 || len(got.AllowedIPs) != 2 || got.ExpiresAt.Format(time.RFC3339) != "2099-01-31T18:00:00Z" ||
		string(got.Metadata) != `{"team":"billing"}` || strings.Join(got.Permissions, ",") != "identity:read" {
		t.Fatalf("the key was not created as the form said: %+v", got)
	}
	// The same form again, twice.
	for range 2 {
		vals.Set("nonce", nonce)
		again := b.post("/keys", vals)
		if again.status != http.StatusOK || secretOn(again.body) != "" || strings.Contains(again.body, key) || !strings.Contains(again.body, "already submitted") {
			t.Fatalf("a resubmitted form: %d, secret shown %v: %.500s", again.status, secretOn(again.body) != "", again.body)
		}
	}
	if n := count(t, f.m, "acct_a"); n != before+1 {
		t.Fatalf("%d keys after one create and two resubmits; want %d", n, before+1)
	}
	for _, path := range []string{"/keys", "/keys/" + v.KeyID, "/usage", "/logs"} {
		if strings.Contains(b.get(path, 200), key) {
			t.Errorf("%s shows the secret", path)
		}
	}
}

// TestStateChangesNeedTheFormsToken: every post without the CSRF token,
// with a wrong one, or with another session's is a 403 and changes
// nothing.
func TestStateChangesNeedTheFormsToken(t *testing.T) {
	f := newFixture(t, nil, keys.WithWebhooks(webhook.Config{AllowLoopback: true, AllowHTTP: true}))
	b := f.signedIn(f.key)
	other := f.signedIn(f.key) // the same key, another browser
	target := f.create("acct_a", "target", "identity:read")
	hooks := f.m.As(keys.Principal{AccountID: "acct_a", Subject: "host", Permissions: f.m.Vocabulary()}).Webhooks()
	ep, err := hooks.Create(context.Background(), webhook.EndpointCreate{URL: "http://127.0.0.1:9/h", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	theirs := field(t, other.get("/keys/new", 200), "csrf")
	nonce := field(t, b.get("/keys/new", 200), "nonce")
	id, eid := target.ID, ep.ID
	posts := map[string]url.Values{
		"/keys":                                        {"name": {"x"}, "environment": {"live"}, "nonce": {nonce}},
		"/keys/" + id:                                  {"name": {"renamed"}},
		"/keys/" + id + "/disable":                     {},
		"/keys/" + id + "/revoke":                      {},
		"/keys/" + id + "/roll":                        {"grace_hours": {"1"}, "nonce": {nonce}},
		"/webhooks":                                    {"url": {"https://example.com/h"}, "events": {"*"}, "nonce": {nonce}},
		"/webhooks/" + eid + "/test":                   {},
		"/webhooks/" + eid + "/disable":                {},
		"/webhooks/" + eid + "/roll-secret":            {"grace_hours": {"1"}, "nonce": {nonce}},
		"/webhooks/" + eid + "/delete":                 {},
		"/webhooks/" + eid + "/deliveries/dlv_x/retry": {},
		"/sign-out":                                    {},
	}
	before := count(t, f.m, "acct_a")
	sent, _ := hooks.Deliveries(context.Background(), eid, 10, "")
	for path, vals := range posts {
		for name, token := range map[string]string{"missing": "", "wrong": strings.Repeat("A", 43), "another session's": theirs} {
			v := url.Values{}
			for k, vs := range vals {
				v[k] = vs
			}
			if token != "" {
				v.Set("csrf", token)
			}
			if r := b.post(path, v); r.status != http.StatusForbidden {
				t.Errorf("POST %s with the token %s: %d, want 403", path, name, r.status)
			}
		}
	}
	k, _ := f.m.Get(context.Background(), id)
	if k.Name != "target" || !k.Enabled || k.RevokedAt != nil || count(t, f.m, "acct_a") != before {
		t.Fatalf("a refused post changed something: %+v", k)
	}
	if eps, _ := hooks.List(context.Background()); len(eps.Data) != 1 || !eps.Data[0].Enabled || !eps.Data[0].UpdatedAt.Equal(ep.UpdatedAt) {
		t.Fatalf("a refused post created, changed or deleted an endpoint: %+v", eps.Data)
	}
	if ds, _ := hooks.Deliveries(context.Background(), eid, 10, ""); len(ds.Data) != len(sent.Data) {
		t.Fatalf("a refused post sent a test event: %d deliveries, %d before", len(ds.Data), len(sent.Data))
	}
	b.get("/keys", 200) // still signed in: the refused sign-out did nothing
	// A post from another origin, with a valid token, is refused too.
	req, _ := http.NewRequest("POST", b.base+"/keys/"+id+"/disable", strings.NewReader("csrf="+field(t, b.get("/keys", 200), "csrf")))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := b.do(req); r.status != http.StatusForbidden {
		t.Errorf("a cross-site post: %d, want 403", r.status)
	}
	if k, _ := f.m.Get(context.Background(), id); !k.Enabled {
		t.Fatal("the cross-site post disabled the key")
	}
	// A token is its session's: after signing in again in the same
	// browser (the same CSRF cookie), an old page's token is refused.
	old := field(t, b.get("/keys", 200), "csrf")
	page := b.get("/sign-in", 200)
	if r := b.post("/sign-in", url.Values{"csrf": {field(t, page, "csrf")}, "key": {string(f.key.Key)}}); r.status != http.StatusSeeOther {
		t.Fatalf("signing in again: %d", r.status)
	}
	if r := b.post("/keys/"+id+"/disable", url.Values{"csrf": {old}}); r.status != http.StatusForbidden {
		t.Errorf("the previous session's token: %d, want 403", r.status)
	}
	if r := b.post("/keys/"+id+"/disable", url.Values{"csrf": {field(t, b.get("/keys", 200), "csrf")}}); r.status != http.StatusSeeOther {
		t.Errorf("the new session's token: %d, want 303", r.status)
	}
	// A create or roll whose form nonce the portal did not make (a
	// script's, or none) is refused: it would not be idempotent.
	csrf := field(t, b.get("/keys", 200), "csrf")
	for _, nonce := range []string{"", "x", strings.Repeat("A", 42), strings.Repeat("A", 44), strings.Repeat("*", 43)} {
		if r := b.post("/keys", url.Values{"csrf": {csrf}, "nonce": {nonce}, "name": {"n"}, "environment": {"live"}}); r.status != http.StatusForbidden {
			t.Errorf("a create with the nonce %q: %d, want 403", nonce, r.status)
		}
	}
	if n := count(t, f.m, "acct_a"); n != before {
		t.Fatalf("%d keys after refused creates, want %d", n, before)
	}
	// The sign-in form's token is not a session's.
	if r := b.post("/sign-in", url.Values{"csrf": {"x"}, "key": {string(f.key.Key)}}); r.status != http.StatusForbidden {
		t.Errorf("a sign-in with a wrong token: %d, want 403", r.status)
	}
}

// TestAnotherAccountsIDsAreNotFound: a key, endpoint or request of
// another account is a 404 on every page and action, and nothing of it
// changes.
func TestAnotherAccountsIDsAreNotFound(t *testing.T) {
	f := newFixture(t, nil, keys.WithWebhooks(webhook.Config{AllowLoopback: true, AllowHTTP: true}))
	b := f.signedIn(f.key)
	theirs := f.create("acct_b", "theirs", "identity:read")
	hooksB := f.m.As(keys.Principal{AccountID: "acct_b", Subject: "host", Permissions: f.m.Vocabulary()}).Webhooks()
	ep, err := hooksB.Create(context.Background(), webhook.EndpointCreate{URL: "http://127.0.0.1:9/h", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	delivery, err := hooksB.Test(context.Background(), ep.ID) // a delivery that exists, of their endpoint
	if err != nil {
		t.Fatal(err)
	}
	page := b.get("/keys/new", 200)
	csrf, nonce := field(t, page, "csrf"), field(t, page, "nonce")
	for _, path := range []string{"/keys/" + theirs.ID, "/keys/" + theirs.ID + "/revoke", "/usage?key_id=" + theirs.ID, "/webhooks/" + ep.ID, "/webhooks/" + ep.ID + "/delete",
		"/logs/req_NOSUCHREQUEST0000000000000", "/keys/nosuch"} {
		body := b.get(path, http.StatusNotFound)
		if strings.Contains(body, "theirs") {
			t.Errorf("%s shows the other account's key", path)
		}
	}
	for path, vals := range map[string]url.Values{
		"/keys/" + theirs.ID:                                           {"name": {"mine now"}},
		"/keys/" + theirs.ID + "/disable":                              {},
		"/keys/" + theirs.ID + "/revoke":                               {},
		"/keys/" + theirs.ID + "/roll":                                 {"grace_hours": {"0"}, "nonce": {nonce}},
		"/webhooks/" + ep.ID + "/test":                                 {},
		"/webhooks/" + ep.ID + "/disable":                              {},
		"/webhooks/" + ep.ID + "/enable":                               {},
		"/webhooks/" + ep.ID + "/roll-secret":                          {"grace_hours": {"0"}, "nonce": {nonce}},
		"/webhooks/" + ep.ID + "/delete":                               {},
		"/webhooks/" + ep.ID + "/deliveries/" + delivery.ID + "/retry": {},
	} {
		vals.Set("csrf", csrf)
		if r := b.post(path, vals); r.status != http.StatusNotFound {
			t.Errorf("POST %s: %d, want 404", path, r.status)
		}
	}
	k, _ := f.m.Get(context.Background(), theirs.ID)
	if k.Name != "theirs" || !k.Enabled || k.RevokedAt != nil || count(t, f.m, "acct_b") != 1 {
		t.Fatalf("the other account's key changed: %+v", k)
	}
	if strings.Contains(b.get("/keys", 200), theirs.ID) {
		t.Fatal("the list shows the other account's key")
	}
	if got, err := f.m.As(keys.Principal{AccountID: "acct_b"}).Webhooks().Get(context.Background(), ep.ID); err != nil || !got.Enabled || !got.UpdatedAt.Equal(ep.UpdatedAt) {
		t.Fatalf("the other account's endpoint changed: %+v, %v", got, err)
	}
}

// TestNamesAreText: a key, metadata and an endpoint description holding
// markup render as text, on every page that shows them.
func TestNamesAreText(t *testing.T) {
	f := newFixture(t, nil, keys.WithWebhooks(webhook.Config{AllowLoopback: true, AllowHTTP: true}))
	b := f.signedIn(f.key)
	const xss = `<script>alert(1)</script>`
	const attr = `"><img src=x onerror=alert(1)>`
	resp, _ := b.createKey(url.Values{"name": {xss + attr}, "environment": {"live"}, "metadata": {`{"x":"` + strings.ReplaceAll(xss, `/`, `\/`) + `"}`}})
	if resp.status != http.StatusCreated {
		t.Fatalf("create: %d %.300s", resp.status, resp.body)
	}
	v, _ := f.m.Verify(context.Background(), secretOn(resp.body))
	form := b.get("/webhooks/new", 200)
	r := b.post("/webhooks", url.Values{"csrf": {field(t, form, "csrf")}, "nonce": {field(t, form, "nonce")}, "url": {"http://127.0.0.1:9/h"},
		"events": {"*"}, "description": {xss}, "environment": {"live"}})
	if r.status != http.StatusCreated {
		t.Fatalf("endpoint: %d %.300s", r.status, r.body)
	}
	pages := map[string]string{"create answer": resp.body, "endpoint answer": r.body}
	for _, path := range []string{"/keys", "/keys/" + v.KeyID, "/keys/" + v.KeyID + "/revoke", "/usage?key_id=" + v.KeyID, "/webhooks"} {
		pages[path] = b.get(path, 200)
	}
	for name, page := range pages {
		if strings.Contains(page, "<script>alert") || strings.Contains(page, "<img src=x") {
			t.Errorf("%s renders markup from a name", name)
		}
	}
	if !strings.Contains(pages["/keys"], "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the list does not show the name as text")
	}
}

// TestSessionCookie: HttpOnly, SameSite=Strict, Secure unless the host
// is this machine; the key's ID in it and never the key; a cookie signed
// under another secret, or altered, is refused.
func TestSessionCookie(t *testing.T) {
	f := newFixture(t, nil)
	b := f.browser()
	page := b.get("/sign-in", 200)
	r := b.post("/sign-in", url.Values{"csrf": {field(t, page, "csrf")}, "key": {string(f.key.Key)}})
	var sess *http.Cookie
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "portal_session" {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Secure || sess.Path != "/portal" {
		t.Fatalf("session cookie on loopback: %+v", sess)
	}
	if strings.Contains(sess.Value, string(f.key.Key)) || strings.Contains(sess.Value, string(f.key.Key)[9:20]) {
		t.Fatal("the cookie holds the key")
	}
	// Secure when the host is not this machine.
	req, _ := http.NewRequest("GET", b.base+"/sign-in", nil)
	req.Host = "portal.example.com"
	if c := (&http.Response{Header: b.do(req).header}).Cookies(); len(c) == 0 || !c[0].Secure {
		t.Errorf("a cookie for portal.example.com without Secure: %+v", c)
	}
	// Another instance on the same store with another secret refuses it;
	// one with the same secret accepts it.
	other := newFixtureOn(t, f.m, []byte(strings.Repeat("o", 32)))
	same := newFixtureOn(t, f.m, secret)
	for name, fx := range map[string]*fixture{"another secret": other, "the same secret": same} {
		req, _ := http.NewRequest("GET", fx.srv.URL+"/portal/keys", nil)
		req.AddCookie(sess)
		got := b.do(req)
		accepted := got.status == http.StatusOK
		if accepted != (fx == same) {
			t.Errorf("an instance with %s: %d", name, got.status)
		}
	}
	altered := *sess
	altered.Value = strings.Replace(sess.Value, sess.Value[5:6], map[bool]string{true: "A", false: "B"}[sess.Value[5] != 'A'], 1)
	req, _ = http.NewRequest("GET", b.base+"/keys", nil)
	req.AddCookie(&altered)
	if got := b.do(req); got.status != http.StatusSeeOther {
		t.Errorf("an altered cookie: %d", got.status)
	}
}

// endedBecause loads the keys page and returns why the session ended (the
// sign-in page's ended= reason); it fails if the page loaded.
func (b *browser) endedBecause() string {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+"/keys", nil)
	r := b.do(req)
	if r.status != http.StatusSeeOther {
		b.t.Fatalf("the session still holds: %d", r.status)
	}
	u, err := url.Parse(r.location)
	if err != nil || u.Path != "/portal/sign-in" {
		b.t.Fatalf("sent to %q", r.location)
	}
	return u.Query().Get("ended")
}

// TestSessionEnds: at sign-out (on every instance at once: a copy of the
// cookie is refused), after 30 minutes idle, after 12 hours in all, and
// when its key is revoked, disabled, or past its roll's grace period.
func TestSessionEnds(t *testing.T) {
	signedOutCopy := func(t *testing.T, f *fixture) {
		b := f.signedIn(f.key)
		cookies := b.c.Jar.Cookies(mustURL(t, b.base+"/"))
		if r := b.post("/sign-out", url.Values{"csrf": {field(t, b.get("/keys", 200), "csrf")}}); r.status != http.StatusSeeOther || !strings.Contains(r.location, "signed-out") {
			t.Fatalf("sign-out: %d %s", r.status, r.location)
		}
		if why := b.endedBecause(); why != "" { // no cookie left: simply not signed in
			t.Fatalf("after sign-out: %q", why)
		}
		// The cookie, kept by someone, on a second instance sharing the store.
		same := newFixtureOn(t, f.m, secret)
		req, _ := http.NewRequest("GET", same.srv.URL+"/portal/keys", nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		if r := b.do(req); r.status != http.StatusSeeOther || !strings.Contains(r.location, "ended=signed-out") {
			t.Fatalf("a copy of a signed-out session's cookie: %d to %q", r.status, r.location)
		}
	}
	t.Run("sign-out", func(t *testing.T) { signedOutCopy(t, newFixture(t, nil)) })
	t.Run("idle", func(t *testing.T) {
		f := newFixture(t, nil)
		b := f.signedIn(f.key)
		f.clock.Advance(29 * time.Minute)
		b.get("/keys", 200) // activity: the idle time starts again
		f.clock.Advance(29 * time.Minute)
		b.get("/keys", 200)
		f.clock.Advance(30 * time.Minute)
		if why := b.endedBecause(); why != "idle" {
			t.Fatalf("ended: %q, want idle", why)
		}
	})
	t.Run("12 hours", func(t *testing.T) {
		f := newFixture(t, nil)
		b := f.signedIn(f.key)
		for range 24 {
			f.clock.Advance(29 * time.Minute)
			b.get("/keys", 200)
		}
		f.clock.Advance(23 * time.Minute) // 11 h 59 min after sign-in
		b.get("/keys", 200)
		f.clock.Advance(time.Minute) // 12 h, active all along
		if why := b.endedBecause(); why != "expired" {
			t.Fatalf("ended: %q, want expired", why)
		}
	})
	for _, c := range []struct {
		name, why string
		end       func(*fixture) error
	}{
		{"revoked", "revoked", func(f *fixture) error { _, err := f.m.Revoke(context.Background(), f.key.ID); return err }},
		{"disabled", "disabled", func(f *fixture) error {
			_, err := f.m.Update(context.Background(), f.key.ID, keys.APIKeyUpdate{Enabled: keys.Change(false)})
			return err
		}},
		{"no longer developers:write", "permissions", func(f *fixture) error {
			_, err := f.m.Update(context.Background(), f.key.ID, keys.APIKeyUpdate{Permissions: keys.Change([]string{"developers:read"})})
			return err
		}},
		{"expired", "expired", func(f *fixture) error {
			_, err := f.m.Update(context.Background(), f.key.ID, keys.APIKeyUpdate{ExpiresAt: keys.Change(time.Now().Add(time.Minute))})
			f.clock.Advance(2 * time.Minute)
			return err
		}},
		{"rolled, expired within the grace", "expired", func(f *fixture) error {
			if _, err := f.m.Update(context.Background(), f.key.ID, keys.APIKeyUpdate{ExpiresAt: keys.Change(time.Now().Add(time.Minute))}); err != nil {
				return err
			}
			_, err := f.m.Roll(context.Background(), f.key.ID, time.Hour)
			f.clock.Advance(2 * time.Minute) // past its expiry, within the roll's grace
			return err
		}},
		{"rolled, past the grace", "revoked", func(f *fixture) error {
			_, err := f.m.Roll(context.Background(), f.key.ID, time.Minute)
			f.clock.Advance(2 * time.Minute) // within the idle timeout, past the grace
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, nil)
			b := f.signedIn(f.key)
			b.get("/keys", 200)
			f.clock.Advance(time.Second) // the portal's frozen clock, past the Manager's now
			if err := c.end(f); err != nil {
				t.Fatal(err)
			}
			if why := b.endedBecause(); why != c.why {
				t.Fatalf("ended: %q, want %q", why, c.why)
			}
		})
	}
	t.Run("rolled, within the grace", func(t *testing.T) {
		f := newFixture(t, nil)
		b := f.signedIn(f.key)
		if _, err := f.m.Roll(context.Background(), f.key.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(29 * time.Minute)
		b.get("/keys", 200)
		f.clock.Advance(29 * time.Minute) // 58 minutes of the hour's grace
		b.get("/keys", 200)
	})
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSignInRefusesInWords: a made-up key, a revoked one and one without
// developers:write are refused with a reason, and the page never echoes
// the key.
func TestSignInRefusesInWords(t *testing.T) {
	f := newFixture(t, nil)
	reader := f.create("acct_a", "reader", "developers:read")
	revoked := f.create("acct_a", "revoked", f.m.Vocabulary()...)
	if _, err := f.m.Revoke(context.Background(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"txc_live_notakeyatall":  "not a valid API key",
		string(reader.Key):       "lacks the developers:read and developers:write",
		string(revoked.Key):      "has been revoked",
		"":                       "not a valid API key",
		strings.Repeat("x", 300): "not a valid API key",
	} {
		b := f.browser()
		r := b.post("/sign-in", url.Values{"csrf": {field(t, b.get("/sign-in", 200), "csrf")}, "key": {key}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, want) || (key != "" && strings.Contains(r.body, key)) {
			t.Errorf("sign-in with %.20q: %d, want 401 saying %q", key, r.status, want)
		}
		b.get("/keys", http.StatusSeeOther) // no session was made
	}
}

// TestHeaders: every page forbids inline script and style and framing,
// sends no referrer and is not stored.
func TestHeaders(t *testing.T) {
	f := newFixture(t, nil)
	b := f.signedIn(f.key)
	for _, path := range []string{"/sign-in", "/keys", "/keys/new", "/usage", "/logs", "/webhooks", "/nosuch"} {
		req, _ := http.NewRequest("GET", b.base+path, nil)
		r := b.do(req)
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "style-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			strings.Contains(csp, "unsafe-inline") || r.header.Get("Referrer-Policy") != "no-referrer" || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: CSP %q, Referrer-Policy %q, Cache-Control %q", path, csp, r.header.Get("Referrer-Policy"), r.header.Get("Cache-Control"))
		}
		if strings.Contains(r.body, "<script>") || strings.Contains(r.body, " style=") || strings.Contains(r.body, "<style") || strings.Contains(r.body, " on") && strings.Contains(r.body, "onclick") {
			t.Errorf("%s has inline script or style", path)
		}
	}
	for _, asset := range []string{"/static/portal.css", "/static/portal.js", "/static/favicon.svg"} {
		if body := b.get(asset, 200); len(body) < 100 {
			t.Errorf("%s: %d bytes", asset, len(body))
		}
	}
	b.get("/static/", http.StatusNotFound) // no listing of the assets
	b.get("/static/nosuch.js", http.StatusNotFound)
}

// markDown is a memstore whose marks cannot be read: every signed-in
// page is a fault.
type markDown struct{ *memstore.Store }

func (markDown) Marked(context.Context, store.Digest, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

// TestFaultsLogNoKey: a fault on a page whose path holds a key (pasted
// where a request ID belongs) is logged by its route, never its path;
// the visitor gets a 503 that says nothing of the cause.
func TestFaultsLogNoKey(t *testing.T) {
	st := markDown{memstore.New()}
	m, err := keys.New(st)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	var logs bytes.Buffer
	p, err := portal.New(m, portal.Config{Secret: secret, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, m: m, p: p, clock: &clock{now: time.Now()}}
	f.srv = httptest.NewServer(p)
	defer f.srv.Close()
	key := f.create("acct_a", "owner", "developers:read", "developers:write")
	b := f.signedIn(key)
	body := b.get("/logs/"+string(key.Key), http.StatusServiceUnavailable)
	if strings.Contains(body, "refused") || strings.Contains(body, string(key.Key)) {
		t.Fatalf("the page tells the cause or the key: %.300s", body)
	}
	if !strings.Contains(logs.String(), "route=\"GET /portal/logs/{request_id}\"") || strings.Contains(logs.String(), string(key.Key)) || strings.Contains(logs.String(), string(key.Key)[9:30]) {
		t.Fatalf("the log: %s", logs.String())
	}
}
