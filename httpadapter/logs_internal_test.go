package httpadapter

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/txcloud/keys/reqlog"
)

// FuzzLogQuery: any query string is either a filter within its bounds or
// a 400 naming a parameter; it never panics.
func FuzzLogQuery(f *testing.F) {
	for _, q := range []string{"", "status=4xx&limit=100", "status=429&key_id=key_1&method=GET", "start=2026-11-01T00:00:00Z&end=2026-11-02T00:00:00Z",
		"cursor=MTIz&request_id=req_X", "limit=0", "status=600", "api=GET+%2Fv1%2Fping", "status=429&status=500", "%zz"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/developers/logs", nil)
		r.URL.RawQuery = q
		lf, err := logFilter(r)
		if err != nil {
			var he *Error
			// A parameter with an empty name is refused with no param to
			// name.
			_, blank := r.URL.Query()[""]
			if !errors.As(err, &he) || he.Status != 400 || he.Param == "" && !blank {
				t.Fatalf("%q: %v is not a 400 naming a parameter", q, err)
			}
			return
		}
		switch {
		case lf.Limit < 0 || lf.Limit > reqlog.MaxLimit:
			t.Fatalf("%q: limit %d", q, lf.Limit)
		case lf.Status != (reqlog.Status{}) && (lf.Status.Min < 100 || lf.Status.Max > 599 || lf.Status.Min > lf.Status.Max):
			t.Fatalf("%q: status %+v", q, lf.Status)
		case len(lf.KeyID) > 256 || len(lf.Method) > 32 || len(lf.API) > 256 || len(lf.RequestID) > reqlog.MaxRequestIDLen || len(lf.Cursor) > 512:
			t.Fatalf("%q: a filter past its bound", q)
		}
	})
}
