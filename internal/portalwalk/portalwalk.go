// Package portalwalk walks the developer portal's pages and forms over
// HTTP, on a Manager of any store: what storetest is to a store, for the
// portal's use of it. The portal's own tests run it on memstore, pgstore's
// and sqlitestore's on theirs: an idempotent endpoint create (every one
// the portal makes) once failed on both databases while memstore, where
// the portal's tests ran, let it pass.
package portalwalk

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/portal"
)

// Walk signs in with a new key of a new account and, through the
// portal's forms: creates a key (its secret once; the form resubmitted
// creates nothing), rolls and revokes it, adds a webhook endpoint (its
// secret once, idempotent too), rolls its secret (idempotent), sends it a
// test event, disables and enables it, deletes it; reads the usage and
// log pages; signs out. m must deliver webhooks to loopback over http
// (webhook.Config AllowLoopback and AllowHTTP).
func Walk(t *testing.T, m *keys.Manager) {
	t.Helper()
	ctx := context.Background()
	p, err := portal.New(m, portal.Config{Secret: []byte(rand.Text() + rand.Text())})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/portal/", p)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	account := "acct_walk_" + strings.ToLower(rand.Text()[:10])
	owner, err := m.Create(ctx, keys.APIKeyCreate{AccountID: account, Name: "owner", Environment: keys.Live, Permissions: m.Vocabulary()})
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	w := &walker{t: t, base: srv.URL + "/portal", c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}

	page := w.get("/sign-in", 200)
	w.post("/sign-in", url.Values{"csrf": {field(t, page, "csrf")}, "key": {string(owner.Key)}}, http.StatusSeeOther)
	w.get("/keys", 200)

	// A key: created once from one form, rolled, revoked.
	form := w.get("/keys/new", 200)
	vals := url.Values{"csrf": {field(t, form, "csrf")}, "nonce": {field(t, form, "nonce")}, "name": {"walked"}, "environment": {"live"}}
	created := w.post("/keys", vals, http.StatusCreated)
	key := secret(t, created, "txc_live_")
	if again := w.post("/keys", vals, http.StatusOK); strings.Contains(again, key) {
		t.Fatal("the resubmitted key form showed the key again")
	}
	v, err := m.Verify(ctx, key)
	if err != nil {
		t.Fatalf("the key the portal showed: %v", err)
	}
	keyPage := "/keys/" + url.PathEscape(v.KeyID)
	page = w.get(keyPage, 200)
	rolled := secret(t, w.post(keyPage+"/roll", url.Values{"csrf": {field(t, page, "csrf")}, "nonce": {field(t, page, "nonce")}, "grace_hours": {"0"}}, http.StatusCreated), "txc_live_")
	nv, err := m.Verify(ctx, rolled)
	if err != nil {
		t.Fatalf("the rolled key: %v", err)
	}
	if _, err := m.Verify(ctx, key); err == nil {
		t.Fatal("the key rolled without grace still verifies")
	}
	rolledPage := "/keys/" + url.PathEscape(nv.KeyID)
	page = w.get(rolledPage+"/revoke", 200)
	w.post(rolledPage+"/revoke", url.Values{"csrf": {field(t, page, "csrf")}}, http.StatusSeeOther)
	if _, err := m.Verify(ctx, rolled); err == nil {
		t.Fatal("the revoked key still verifies")
	}

	// An endpoint: created once from one form, its secret rolled once
	// from one form, tested, disabled and enabled, deleted.
	form = w.get("/webhooks/new", 200)
	vals = url.Values{"csrf": {field(t, form, "csrf")}, "nonce": {field(t, form, "nonce")}, "url": {"http://127.0.0.1:9/walk"}, "events": {"*"}, "environment": {"live"}}
	first := secret(t, w.post("/webhooks", vals, http.StatusCreated), "whsec_")
	if again := w.post("/webhooks", vals, http.StatusOK); strings.Contains(again, first) {
		t.Fatal("the resubmitted endpoint form showed the secret again")
	}
	list, err := m.As(keys.Principal{AccountID: account}).Webhooks().List(ctx)
	if err != nil || len(list.Data) != 1 {
		t.Fatalf("endpoints after a create and its resubmit: %v, %v", list, err)
	}
	hook := "/webhooks/" + url.PathEscape(list.Data[0].ID)
	page = w.get(hook, 200)
	roll := url.Values{"csrf": {field(t, page, "csrf")}, "nonce": {field(t, page, "nonce")}, "grace_hours": {"1"}}
	if next := secret(t, w.post(hook+"/roll-secret", roll, http.StatusCreated), "whsec_"); next == first {
		t.Fatal("the rolled endpoint kept its secret")
	}
	if again := w.post(hook+"/roll-secret", roll, http.StatusOK); strings.Contains(again, "whsec_") {
		t.Fatal("the resubmitted roll showed a secret")
	}
	for _, action := range []string{"/test", "/disable", "/enable"} {
		w.post(hook+action, url.Values{"csrf": {field(t, w.get(hook, 200), "csrf")}}, http.StatusSeeOther)
	}
	page = w.get(hook+"/delete", 200)
	w.post(hook+"/delete", url.Values{"csrf": {field(t, page, "csrf")}}, http.StatusSeeOther)
	w.get(hook, http.StatusNotFound)

	// The reads, then sign-out.
	w.get("/usage", 200)
	w.get("/logs", 200)
	w.post("/sign-out", url.Values{"csrf": {field(t, w.get("/keys", 200), "csrf")}}, http.StatusSeeOther)
	if r := w.do("GET", "/keys", nil); r.status != http.StatusSeeOther || !strings.Contains(r.location, "/sign-in") {
		t.Fatalf("after sign-out, the keys page: %d to %q", r.status, r.location)
	}
}

type walker struct {
	t    *testing.T
	base string
	c    *http.Client
}

type response struct {
	status   int
	location string
	body     string
}

func (w *walker) do(method, path string, form url.Values) response {
	w.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, w.base+path, body)
	if err != nil {
		w.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header.Get("Location"), string(b)}
}

func (w *walker) get(path string, status int) string {
	w.t.Helper()
	r := w.do("GET", path, nil)
	if r.status != status {
		w.t.Fatalf("GET %s: %d, want %d: %.600s", path, r.status, status, r.body)
	}
	return r.body
}

func (w *walker) post(path string, form url.Values, status int) string {
	w.t.Helper()
	r := w.do("POST", path, form)
	if r.status != status {
		w.t.Fatalf("POST %s: %d, want %d: %.600s", path, r.status, status, r.body)
	}
	return r.body
}

// field is the value of the named hidden field of the page's first form
// that has one.
func field(t *testing.T, page, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no %s field on the page: %.600s", name, page)
	}
	return m[1]
}

// secret is the secret the page shows, which must start with prefix.
func secret(t *testing.T, page, prefix string) string {
	t.Helper()
	m := regexp.MustCompile(`id="secret" type="text" readonly value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil || !strings.HasPrefix(m[1], prefix) {
		t.Fatalf("no %s… secret on the page: %.600s", prefix, page)
	}
	return m[1]
}
