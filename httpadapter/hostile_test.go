package httpadapter_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/keystest"
)

// snapshot is every record of the test accounts, as the store has them.
func snapshot(t *testing.T, s keys.Store) map[string]*keys.Record {
	t.Helper()
	out := map[string]*keys.Record{}
	for _, acct := range []string{"acct_a", "acct_b"} {
		rs, err := s.List(context.Background(), keys.ListQuery{AccountID: acct, Limit: 10_000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			out[r.ID] = r
		}
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]*keys.Record) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("%d records before, %d after", len(before), len(after))
	}
	for id, b := range before {
		a, ok := after[id]
		if !ok {
			t.Fatalf("record %s disappeared", id)
		}
		if d := keystest.Equal(a, b); d != "" {
			t.Fatalf("record %s changed: %s", id, d)
		}
	}
}

// TestHostileInput sends malformed and hostile requests to every endpoint
// and checks each gets its status in the envelope and changes nothing.
func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	target := newKey(t, h, e.admin, `{"name":"target","environment":"test","permissions":["identity:read"]}`)
	id := target.ID
	digest := sha256.Sum256([]byte(e.admin))

	type row struct {
		name   string
		req    request
		status int
	}
	var rows []row
	endpoints := []struct {
		name, method, path string
		body               string // a valid body, "" for none
	}{
		{"create", "POST", "/developers/keys", okBody},
		{"list", "GET", "/developers/keys", ""},
		{"get", "GET", "/developers/keys/" + id, ""},
		{"update", "PATCH", "/developers/keys/" + id, `{"name":"x"}`},
		{"revoke", "DELETE", "/developers/keys/" + id, ""},
		{"roll", "POST", "/developers/keys/" + id + "/roll", `{"grace_period_seconds":60}`},
	}
	withHeaders := func(ep int, hd map[string][]string, body string) request {
		return request{method: endpoints[ep].method, path: endpoints[ep].path, headers: hd, body: body}
	}
	// Hostile Authorization, on every endpoint.
	for i, ep := range endpoints {
		for _, a := range []struct {
			name string
			hd   []string
		}{
			{"no Authorization", nil},
			{"Basic", []string{"Basic " + e.admin}},
			{"Bearer, no token", []string{"Bearer "}},
			{"two tokens", []string{"Bearer " + e.admin + " " + e.admin}},
			{"two headers", []string{"Bearer " + e.admin, "Bearer " + e.admin}},
			{"key with a trailing space", []string{"Bearer " + e.admin + " "}},
			{"key with a trailing newline", []string{"Bearer " + e.admin + "\n"}},
			{"key with a space inside", []string{"Bearer " + e.admin[:20] + " " + e.admin[20:]}},
			{"8 KiB token", []string{"Bearer " + strings.Repeat("A", 8<<10)}},
			{"the key's digest", []string{"Bearer " + hex.EncodeToString(digest[:])}},
			{"a revoked key", []string{"Bearer " + e.revoked}},
		} {
			hd := map[string][]string{"Content-Type": {"application/json"}}
			if a.hd != nil {
				hd["Authorization"] = a.hd
			}
			rows = append(rows, row{ep.name + ": " + a.name, withHeaders(i, hd, ep.body), 401})
		}
		// Lowercase "bearer" is the same scheme (RFC 7235): it authenticates,
		// and a caller lacking the permission is still refused.
		rows = append(rows, row{ep.name + ": lowercase bearer without the permission", withHeaders(i, map[string][]string{"Authorization": {"bearer " + e.stranger[:9] + "x"}, "Content-Type": {"application/json"}}, ep.body), 401})
	}
	// Hostile bodies, on the endpoints that take one.
	ips := strings.TrimSuffix(strings.Repeat(`"10.0.0.1",`, 5000), ",")
	bodies := []struct {
		name, ct, body string
		status         int
	}{
		{"no content type", "", okBody, 415},
		{"text/plain", "text/plain", okBody, 415},
		{"multipart", "multipart/form-data; boundary=x", okBody, 415},
		{"JSON in UTF-16", "application/json; charset=utf-16", okBody, 415},
		{"0 bytes", "application/json", "", 400},
		{"64 KiB + 1", "application/json", `{"name":"` + strings.Repeat("a", 64<<10) + `"}`, 413},
		{"deeply nested", "application/json", `{"name":` + strings.Repeat(`{"a":`, 10_000) + `1` + strings.Repeat(`}`, 10_000) + `}`, 400},
		{"duplicate keys", "application/json", `{"name":"a","name":"b","environment":"test","grace_period_seconds":1,"grace_period_seconds":2}`, 400},
		{"a JSON array", "application/json", `[{"name":"a"}]`, 400},
		{"two objects", "application/json", `{"name":"a"}{"name":"b"}`, 400},
		{"numbers as strings", "application/json", `{"name":"a","environment":"test","rate_limit":"60","grace_period_seconds":"60"}`, 400},
		{"huge integers", "application/json", `{"name":"a","environment":"test","rate_limit":99999999999999999999999,"grace_period_seconds":99999999999999999999999}`, 400},
		{"name with NUL", "application/json", `{"name":"a\u0000b","environment":"test","grace_period_seconds":"x"}`, 400},
		{"name with RTL override", "application/json", `{"name":"exe.\u202etxt","environment":"test","grace_period_seconds":"x"}`, 400},
		{"name of 10,000 characters", "application/json", `{"name":"` + strings.Repeat("n", 10_000) + `","environment":"test","grace_period_seconds":"x"}`, 400},
		{"permission wildcard", "application/json", `{"name":"a","environment":"test","permissions":["*:*"],"grace_period_seconds":"x"}`, 400},
		{"permission with spaces", "application/json", `{"name":"a","environment":"test","permissions":["identity: read"],"grace_period_seconds":"x"}`, 400},
		{"IP with a zone", "application/json", `{"name":"a","environment":"test","allowed_ips":["fe80::1%eth0"],"grace_period_seconds":"x"}`, 400},
		{"IP /0", "application/json", `{"name":"a","environment":"test","allowed_ips":["0.0.0.0/0"],"grace_period_seconds":"x"}`, 400},
		{"IP /129", "application/json", `{"name":"a","environment":"test","allowed_ips":["2001:db8::/129"],"grace_period_seconds":"x"}`, 400},
		{"5,000 IPs", "application/json", `{"name":"a","environment":"test","allowed_ips":[` + ips + `],"grace_period_seconds":"x"}`, 400},
		{"expires_at as a date", "application/json", `{"name":"a","environment":"test","expires_at":"2031-01-01","grace_period_seconds":"x"}`, 400},
		{"expires_at in year 0", "application/json", `{"name":"a","environment":"test","expires_at":"0000-01-01T00:00:00Z","grace_period_seconds":"x"}`, 400},
		{"expires_at in year 99999", "application/json", `{"name":"a","environment":"test","expires_at":"99999-01-01T00:00:00Z","grace_period_seconds":"x"}`, 400},
		{"unknown field", "application/json", `{"name":"a","environment":"test","account_id":"acct_b","hash":"x","grace":1}`, 400},
	}
	for _, i := range []int{0, 3, 5} {
		ep := endpoints[i]
		for _, b := range bodies {
			hd := map[string][]string{"Authorization": bearer(e.admin)}
			if b.ct != "" {
				hd["Content-Type"] = []string{b.ct}
			}
			status := b.status
			if ep.name == "roll" && b.name == "0 bytes" {
				continue // an empty roll body is valid (grace 0): not hostile
			}
			rows = append(rows, row{ep.name + ": " + b.name, withHeaders(i, hd, b.body), status})
		}
		for _, n := range []string{"name", "environment", "permissions", "allowed_ips", "rate_limit", "expires_at"} {
			if ep.name == "roll" {
				break
			}
			body := `{"name":"a","environment":"test","` + n + `":null}`
			want := 400
			switch {
			case ep.name == "create" && n != "name" && n != "environment":
				continue // null is "absent" for optional fields: a valid create
			case ep.name == "update" && n != "name" && n != "environment":
				continue // null clears optional fields: a valid update
			}
			rows = append(rows, row{ep.name + ": null " + n, withHeaders(i, jsonHeaders(e.admin), body), want})
		}
	}
	// Idempotency keys, on the POSTs.
	for _, i := range []int{0, 5} {
		for name, k := range map[string]string{"9 characters": "123456789", "256 characters": strings.Repeat("k", 256), "disallowed characters": "key;drop table", "unicode": "ключ-ключ-ключ"} {
			hd := jsonHeaders(e.admin)
			hd["Idempotency-Key"] = []string{k}
			rows = append(rows, row{endpoints[i].name + ": Idempotency-Key of " + name, withHeaders(i, hd, endpoints[i].body), 400})
		}
	}
	// Hostile paths and queries.
	for name, r := range map[string]request{
		"list: limit 1e9":             {method: "GET", path: "/developers/keys?limit=1000000000"},
		"list: negative limit":        {method: "GET", path: "/developers/keys?limit=-1"},
		"list: cursor without an id":  {method: "GET", path: "/developers/keys?cursor=MTIzfA"},
		"list: 10 KB cursor":          {method: "GET", path: "/developers/keys?cursor=" + strings.Repeat("A", 10_000)},
		"get: another account's key":  {method: "GET", path: "/developers/keys/" + keyIDOf(t, e, e.stranger)},
		"get: dot-dot":                {method: "GET", path: "/developers/keys/..%2f..%2fetc"},
		"revoke: a 5 KB id":           {method: "DELETE", path: "/developers/keys/" + strings.Repeat("k", 5000)},
		"update: another account's":   {method: "PATCH", path: "/developers/keys/" + keyIDOf(t, e, e.stranger), body: `{"name":"mine now"}`},
		"roll: another account's key": {method: "POST", path: "/developers/keys/" + keyIDOf(t, e, e.stranger) + "/roll"},
	} {
		hd := map[string][]string{"Authorization": bearer(e.admin)}
		if r.body != "" {
			hd["Content-Type"] = []string{"application/json"}
		}
		r.headers = hd
		status := 400
		if strings.HasPrefix(name, "get:") || strings.HasPrefix(name, "revoke:") || strings.HasPrefix(name, "update:") || strings.HasPrefix(name, "roll:") {
			status = 404
		}
		rows = append(rows, row{name, r, status})
	}

	if len(rows) < 60 {
		t.Fatalf("only %d hostile requests", len(rows))
	}
	before := snapshot(t, e.store)
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			rec := serve(h, r.req)
			if rec.Code != r.status {
				t.Fatalf("status %d, want %d: %.300s", rec.Code, r.status, rec.Body)
			}
			envelope(t, rec)
		})
	}
	sameSnapshot(t, before, snapshot(t, e.store))
	t.Logf("%d hostile requests, all refused in the envelope, nothing changed", len(rows))
}
