package portal_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/portal"
)

// BenchmarkKeysPage: the first page of the keys list, for an account of
// 10 keys, 20 (a full page) and 10,000, beside its floor: the same List
// of 20 the page makes, without the session check or the HTML.
func BenchmarkKeysPage(b *testing.B) {
	m, err := keys.New(memstore.New(), keys.WithMaxKeysPerAccount(20_000))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	p, err := portal.New(m, portal.Config{Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	signer := map[int]*keys.APIKeyCreated{}
	for _, n := range []int{10, 20, 10_000} {
		account := fmt.Sprintf("acct_%d", n)
		signer[n], err = m.Create(ctx, keys.APIKeyCreate{AccountID: account, Name: "signer", Environment: keys.Live, Permissions: []string{"developers:read", "developers:write"}})
		if err != nil {
			b.Fatal(err)
		}
		for range n - 1 {
			if _, err := m.Create(ctx, keys.APIKeyCreate{AccountID: account, Name: "key", Environment: keys.Live}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("floor: List of 20", func(b *testing.B) {
		as := m.As(keys.Principal{AccountID: "acct_10000"})
		for b.Loop() {
			if _, err := as.List(ctx, keys.ListFilter{Limit: 20}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{10, 20, 10_000} {
		cookies := signIn(b, p, string(signer[n].Key))
		b.Run("page of an account of "+map[int]string{10: "10", 20: "20", 10_000: "10,000"}[n]+" keys", func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest("GET", "/portal/keys", nil)
				for _, c := range cookies {
					req.AddCookie(c)
				}
				rec := httptest.NewRecorder()
				p.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}

// signIn signs in with key through the handler, returning the cookies.
func signIn(tb testing.TB, p *portal.Portal, key string) []*http.Cookie {
	tb.Helper()
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/portal/sign-in", nil))
	csrf := rec.Result().Cookies()
	req := httptest.NewRequest("POST", "/portal/sign-in", strings.NewReader(url.Values{"csrf": {field(tb, rec.Body.String(), "csrf")}, "key": {key}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range csrf {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		tb.Fatalf("sign-in: %d", rec.Code)
	}
	return append(csrf, rec.Result().Cookies()...)
}
