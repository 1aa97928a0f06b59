package portal_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/portal"
)

var secret = []byte(strings.Repeat("s", 32))

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// fixture is a portal on a memstore, served on loopback, with the
// Manager behind it and a key of account acct_a holding every
// permission.
type fixture struct {
	t     *testing.T
	m     *keys.Manager
	p     *portal.Portal
	srv   *httptest.Server
	clock *clock
	key   *keys.APIKeyCreated
}

func newFixture(t *testing.T, st *memstore.Store, opts ...keys.Option) *fixture {
	t.Helper()
	if st == nil {
		st = memstore.New()
	}
	m, err := keys.New(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return newFixtureOn(t, m, secret)
}

func newFixtureOn(t *testing.T, m *keys.Manager, secret []byte) *fixture {
	t.Helper()
	p, err := portal.New(m, portal.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, m: m, p: p, clock: &clock{now: time.Now()}}
	p.SetClock(f.clock.Now)
	mux := http.NewServeMux()
	mux.Handle("/portal/", p)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.key = f.create("acct_a", "owner", m.Vocabulary()...)
	return f
}

// create issues a key of account with perms, as the host.
func (f *fixture) create(account, name string, perms ...string) *keys.APIKeyCreated {
	f.t.Helper()
	c, err := f.m.Create(context.Background(), keys.APIKeyCreate{AccountID: account, Name: name, Environment: keys.Live, Permissions: perms})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// browser is a client with its own cookies, that follows no redirect.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: f.t, base: f.srv.URL + "/portal", c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// signedIn is a browser signed in with key.
func (f *fixture) signedIn(key *keys.APIKeyCreated) *browser {
	b := f.browser()
	page := b.get("/sign-in", 200)
	resp := b.post("/sign-in", url.Values{"csrf": {field(b.t, page, "csrf")}, "key": {string(key.Key)}})
	if resp.status != http.StatusSeeOther || !strings.HasSuffix(resp.location, "/portal/keys") {
		f.t.Fatalf("sign-in answered %d to %q: %s", resp.status, resp.location, resp.body)
	}
	return b
}

type response struct {
	status   int
	location string
	header   http.Header
	body     string
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, location: resp.Header.Get("Location"), header: resp.Header, body: string(body)}
}

// get fetches path (under /portal) and wants status (0: any).
func (b *browser) get(path string, status int) string {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.base+path, nil)
	r := b.do(req)
	if status != 0 && r.status != status {
		b.t.Fatalf("GET %s: %d, want %d: %.400s", path, r.status, status, r.body)
	}
	return r.body
}

func (b *browser) post(path string, form url.Values) response {
	b.t.Helper()
	req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// field is the value of the named hidden field of a page's first form
// that has one.
func field(t testing.TB, page, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no %s field on the page: %.600s", name, page)
	}
	return m[1]
}

// secretOn is the secret a page shows (the read-only field), or "".
func secretOn(page string) string {
	m := regexp.MustCompile(`id="secret" type="text" readonly value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return m[1]
}

// createKey submits the create form with the values given (name and
// environment at least), from a fresh form.
func (b *browser) createKey(vals url.Values) (response, string) {
	b.t.Helper()
	form := b.get("/keys/new", 200)
	vals.Set("csrf", field(b.t, form, "csrf"))
	vals.Set("nonce", field(b.t, form, "nonce"))
	return b.post("/keys", vals), vals.Get("nonce")
}
