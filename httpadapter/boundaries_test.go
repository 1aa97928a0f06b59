package httpadapter_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/txcloud/keys/httpadapter"
)

// Each numeric option accepts both ends of its range and refuses one past
// either.
func TestOptionRangesAtTheirEdges(t *testing.T) {
	e := newEnv(t)
	build := func(opt httpadapter.Option) (ok bool) {
		defer func() { ok = recover() == nil }()
		httpadapter.New(e.m, opt)
		return true
	}
	for name, c := range map[string]struct {
		opt httpadapter.Option
		ok  bool
	}{
		"WithMaxBodyBytes(1)":             {httpadapter.WithMaxBodyBytes(1), true},
		"WithMaxBodyBytes(0)":             {httpadapter.WithMaxBodyBytes(0), false},
		"WithManagementLimit(1)":          {httpadapter.WithManagementLimit(1), true},
		"WithManagementLimit(0)":          {httpadapter.WithManagementLimit(0), false},
		"WithManagementLimit(10,000,000)": {httpadapter.WithManagementLimit(10_000_000), true},
		"WithManagementLimit(10,000,001)": {httpadapter.WithManagementLimit(10_000_001), false},
	} {
		if got := build(c.opt); got != c.ok {
			t.Errorf("%s: built %v, want %v", name, got, c.ok)
		}
	}
}

// ?revoked= takes exactly "true" or "false": strconv.ParseBool's other
// spellings (1, t, TRUE, …) are refused, so one value has one spelling.
func TestRevokedQuerySpellings(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	for v, want := range map[string]int{"true": 200, "false": 200, "1": 400, "0": 400, "t": 400, "TRUE": 400, "True": 400, "yes": 400, "": 400} {
		rec := serve(h, request{method: "GET", path: "/developers/keys?revoked=" + v, headers: map[string][]string{"Authorization": bearer(e.admin)}})
		if rec.Code != want {
			t.Errorf("?revoked=%s: %d, want %d", v, rec.Code, want)
		}
	}
}

// An integer too large for 64 bits is "out of range", not "must be an
// integer": the client sent a number.
func TestIntegerOutOfRange(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	for body, want := range map[string]string{
		`{"name":"n","environment":"test","rate_limit":99999999999999999999}`: "out of range",
		`{"name":"n","environment":"test","rate_limit":1.5}`:                  "must be",
	} {
		rec := serve(h, request{headers: jsonHeaders(e.admin), body: body})
		if d := envelope(t, rec); rec.Code != 400 || d.Param != "rate_limit" || !strings.Contains(d.Message, want) || (want == "must be" && strings.Contains(d.Message, "range")) {
			t.Errorf("%s: %d %+v, want a message with %q", body, rec.Code, d, want)
		}
	}
}

// WriteError logs server faults (5xx, from 500 up) with the request ID,
// and nothing below.
func TestWriteErrorLogsServerFaults(t *testing.T) {
	e := newEnv(t)
	var logs bytes.Buffer
	a := httpadapter.New(e.m, httpadapter.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	for _, c := range []struct {
		err    error
		logged bool
	}{
		{errors.New("database exploded"), true},
		{&httpadapter.Error{Status: 500, Type: httpadapter.TypeAPI, Code: "boom", Message: "boom"}, true},
		{&httpadapter.Error{Status: 499, Type: httpadapter.TypeValidation, Code: "client", Message: "client"}, false},
	} {
		logs.Reset()
		rec := httptest.NewRecorder()
		a.WriteError(rec, httptest.NewRequest(http.MethodGet, "/", nil), c.err)
		if got := strings.Contains(logs.String(), "request failed"); got != c.logged {
			t.Errorf("%v (status %d): logged %v, want %v: %s", c.err, rec.Code, got, c.logged, logs.String())
		}
	}
}
