// Package hostile is the corpus of hostile and malformed requests that
// every endpoint of the httpadapter must refuse in the error envelope,
// changing nothing. httpadapter's TestHostileInput sends it to the
// handler; spectest sends it again and checks each exchange against
// api/openapi.yaml in both directions.
package hostile

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Keys are the credentials and IDs the corpus refers to, all in one
// test environment: Admin is a test key with every permission in one
// account, Revoked a revoked key of that account, Stranger a key of
// another account with every permission, StrangerKeyID its ID, and
// TargetID a key of Admin's account the corpus tries to change.
type Keys struct {
	Admin, Revoked, Stranger string
	StrangerKeyID, TargetID  string
}

// Request is one hostile request and the status it must get.
type Request struct {
	Name    string
	Method  string
	Path    string
	Headers map[string][]string
	Body    string
	Status  int
}

// OKBody is a valid create body, which each hostile variation departs from.
const OKBody = `{"name":"ci","environment":"test","permissions":["identity:read"]}`

func jsonHeaders(key string) map[string][]string {
	return map[string][]string{"Authorization": {"Bearer " + key}, "Content-Type": {"application/json"}}
}

// Requests returns the corpus: over 160 requests across the six endpoints.
func Requests(k Keys) []Request {
	id := k.TargetID
	digest := sha256.Sum256([]byte(k.Admin))
	var rows []Request
	endpoints := []struct {
		name, method, path string
		body               string // a valid body, "" for none
	}{
		{"create", "POST", "/developers/keys", OKBody},
		{"list", "GET", "/developers/keys", ""},
		{"get", "GET", "/developers/keys/" + id, ""},
		{"update", "PATCH", "/developers/keys/" + id, `{"name":"x"}`},
		{"revoke", "DELETE", "/developers/keys/" + id, ""},
		{"roll", "POST", "/developers/keys/" + id + "/roll", `{"grace_period_seconds":60}`},
	}
	add := func(name string, status int, ep int, hd map[string][]string, body string) {
		rows = append(rows, Request{Name: name, Method: endpoints[ep].method, Path: endpoints[ep].path, Headers: hd, Body: body, Status: status})
	}
	// Hostile Authorization, on every endpoint.
	for i, ep := range endpoints {
		for _, a := range []struct {
			name string
			hd   []string
		}{
			{"no Authorization", nil},
			{"Basic", []string{"Basic " + k.Admin}},
			{"Bearer, no token", []string{"Bearer "}},
			{"two tokens", []string{"Bearer " + k.Admin + " " + k.Admin}},
			{"two headers", []string{"Bearer " + k.Admin, "Bearer " + k.Admin}},
			{"key with a trailing space", []string{"Bearer " + k.Admin + " "}},
			{"key with a trailing newline", []string{"Bearer " + k.Admin + "\n"}},
			{"key with a space inside", []string{"Bearer " + k.Admin[:20] + " " + k.Admin[20:]}},
			{"8 KiB token", []string{"Bearer " + strings.Repeat("A", 8<<10)}},
			{"the key's digest", []string{"Bearer " + hex.EncodeToString(digest[:])}},
			{"a revoked key", []string{"Bearer " + k.Revoked}},
		} {
			hd := map[string][]string{"Content-Type": {"application/json"}}
			if a.hd != nil {
				hd["Authorization"] = a.hd
			}
			add(ep.name+": "+a.name, 401, i, hd, ep.body)
		}
		// Lowercase "bearer" is the same scheme (RFC 7235): it authenticates,
		// and a caller lacking the permission is still refused.
		add(ep.name+": lowercase bearer without the permission", 401, i, map[string][]string{"Authorization": {"bearer " + k.Stranger[:9] + "x"}, "Content-Type": {"application/json"}}, ep.body)
	}
	// Hostile bodies, on the endpoints that take one.
	ips := strings.TrimSuffix(strings.Repeat(`"10.0.0.1",`, 5000), ",")
	bodies := []struct {
		name, ct, body string
		status         int
	}{
		{"no content type", "", OKBody, 415},
		{"text/plain", "text/plain", OKBody, 415},
		{"multipart", "multipart/form-data; boundary=x", OKBody, 415},
		{"JSON in UTF-16", "application/json; charset=utf-16", OKBody, 415},
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
		{"metadata nested 5,000 deep", "application/json", `{"name":"a","environment":"test","metadata":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}`, 400},
		{"metadata of 60 KiB", "application/json", `{"name":"a","environment":"test","metadata":{"a":"` + strings.Repeat("m", 60<<10) + `"}}`, 400},
		{"metadata naming a field twice", "application/json", `{"name":"a","environment":"test","metadata":{"k":1,"k":{"__proto__":1}}}`, 400},
		{"metadata as a string", "application/json", `{"name":"a","environment":"test","metadata":"{}"}`, 400},
		{"metadata as an array", "application/json", `{"name":"a","environment":"test","metadata":[{}]}`, 400},
		{"owner_id with a newline", "application/json", `{"name":"a","environment":"test","owner_id":"a\nlevel=ERROR forged"}`, 400},
		{"owner_id of 5,000 characters", "application/json", `{"name":"a","environment":"test","owner_id":"` + strings.Repeat("o", 5000) + `"}`, 400},
		{"owner_id with RTL override", "application/json", `{"name":"a","environment":"test","owner_id":"user\u202e"}`, 400},
		{"enabled as a string", "application/json", `{"name":"a","environment":"test","enabled":"false"}`, 400},
		{"enabled as 0", "application/json", `{"name":"a","environment":"test","enabled":0}`, 400},
		{"credits below zero", "application/json", `{"name":"a","environment":"test","credits":{"remaining":-5},"grace_period_seconds":"x"}`, 400},
		{"credits of 2^63", "application/json", `{"name":"a","environment":"test","credits":{"remaining":9223372036854775808},"grace_period_seconds":"x"}`, 400},
		{"credits as a float", "application/json", `{"name":"a","environment":"test","credits":{"remaining":1e3},"grace_period_seconds":"x"}`, 400},
		{"credits as a string", "application/json", `{"name":"a","environment":"test","credits":"unlimited","grace_period_seconds":"x"}`, 400},
		{"credits naming remaining twice", "application/json", `{"name":"a","environment":"test","credits":{"remaining":1,"remaining":1000000},"grace_period_seconds":"x"}`, 400},
		{"credits with a negative refill", "application/json", `{"name":"a","environment":"test","credits":{"remaining":1,"refill":{"interval":"daily","amount":-1}},"grace_period_seconds":"x"}`, 400},
		{"credits refilled hourly", "application/json", `{"name":"a","environment":"test","credits":{"remaining":1,"refill":{"interval":"hourly","amount":1}},"grace_period_seconds":"x"}`, 400},
		{"credits with a refill day", "application/json", `{"name":"a","environment":"test","credits":{"remaining":1,"refill":{"interval":"monthly","amount":1,"day":31}},"grace_period_seconds":"x"}`, 400},
		// 100 deep: the server refuses 5,000 as fast, but spectest's
		// validator took 17 s (150 s under -race) to walk that against
		// the nested credits schema.
		{"credits nested 100 deep", "application/json", `{"name":"a","environment":"test","credits":` + strings.Repeat(`{"refill":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`, 400},
	}
	for _, i := range []int{0, 3, 5} {
		ep := endpoints[i]
		for _, b := range bodies {
			hd := map[string][]string{"Authorization": []string{"Bearer " + k.Admin}}
			if b.ct != "" {
				hd["Content-Type"] = []string{b.ct}
			}
			status := b.status
			if ep.name == "roll" && b.name == "0 bytes" {
				continue // an empty roll body is valid (grace 0): not hostile
			}
			add(ep.name+": "+b.name, status, i, hd, b.body)
		}
		for _, n := range []string{"name", "environment", "permissions", "allowed_ips", "rate_limit", "expires_at"} {
			if ep.name == "roll" {
				break
			}
			body := `{"name":"a","environment":"test","` + n + `":null}`
			want := 400
			if ep.name == "update" && n != "name" && n != "environment" {
				continue // null clears optional fields: a valid update
			}
			// create: null is no value of the field's type (the seed
			// schema types each field), so it is refused, not read as
			// "absent".
			add(ep.name+": null "+n, want, i, jsonHeaders(k.Admin), body)
		}
	}
	// Idempotency keys, on the POSTs.
	for _, i := range []int{0, 5} {
		for name, idem := range map[string]string{"9 characters": "123456789", "256 characters": strings.Repeat("k", 256), "disallowed characters": "key;drop table", "unicode": "ключ-ключ-ключ"} {
			hd := jsonHeaders(k.Admin)
			hd["Idempotency-Key"] = []string{idem}
			add(endpoints[i].name+": Idempotency-Key of "+name, 400, i, hd, endpoints[i].body)
		}
	}
	// Hostile paths and queries.
	for _, r := range []Request{
		{Name: "list: limit 1e9", Method: "GET", Path: "/developers/keys?limit=1000000000"},
		{Name: "list: negative limit", Method: "GET", Path: "/developers/keys?limit=-1"},
		{Name: "list: cursor without an id", Method: "GET", Path: "/developers/keys?cursor=MTIzfA"},
		{Name: "list: 10 KB cursor", Method: "GET", Path: "/developers/keys?cursor=" + strings.Repeat("A", 10_000)},
		{Name: "list: 5 KB owner_id", Method: "GET", Path: "/developers/keys?owner_id=" + strings.Repeat("o", 5000)},
		{Name: "list: owner_id with a space", Method: "GET", Path: "/developers/keys?owner_id=a%20b"},
		{Name: "list: negative expiring_within", Method: "GET", Path: "/developers/keys?expiring_within=-1"},
		{Name: "list: expiring_within of 10 years", Method: "GET", Path: "/developers/keys?expiring_within=315360000"},
		{Name: "list: expiring_within 1e30", Method: "GET", Path: "/developers/keys?expiring_within=1000000000000000000000000000000"},
		{Name: "get: another account's key", Method: "GET", Path: "/developers/keys/" + k.StrangerKeyID},
		{Name: "get: dot-dot", Method: "GET", Path: "/developers/keys/..%2f..%2fetc"},
		{Name: "revoke: a 5 KB id", Method: "DELETE", Path: "/developers/keys/" + strings.Repeat("k", 5000)},
		{Name: "update: another account's", Method: "PATCH", Path: "/developers/keys/" + k.StrangerKeyID, Body: `{"name":"mine now"}`},
		{Name: "roll: another account's key", Method: "POST", Path: "/developers/keys/" + k.StrangerKeyID + "/roll"},
	} {
		r.Headers = map[string][]string{"Authorization": {"Bearer " + k.Admin}}
		if r.Body != "" {
			r.Headers["Content-Type"] = []string{"application/json"}
		}
		r.Status = 400
		if !strings.HasPrefix(r.Name, "list:") {
			r.Status = 404
		}
		rows = append(rows, r)
	}
	// Hostile usage queries.
	for _, r := range []Request{
		{Name: "usage: start not a time", Path: "/developers/usage?start=yesterday", Status: 400},
		{Name: "usage: start 64 KB long", Path: "/developers/usage?start=" + strings.Repeat("9", 64<<10), Status: 400},
		{Name: "usage: start not a whole minute", Path: "/developers/usage?start=2026-11-01T00:00:30Z", Status: 400},
		{Name: "usage: end before start", Path: "/developers/usage?start=2026-11-02T00:00:00Z&end=2026-11-01T00:00:00Z", Status: 400},
		{Name: "usage: a period of 26 years", Path: "/developers/usage?start=2000-01-01T00:00:00Z&end=2026-01-01T00:00:00Z", Status: 400},
		{Name: "usage: minutes older than kept", Path: "/developers/usage?start=2020-01-01T00:01:00Z&end=2020-01-02T00:00:00Z", Status: 400},
		{Name: "usage: start twice", Path: "/developers/usage?start=2026-11-01T00:00:00Z&start=2026-11-02T00:00:00Z", Status: 400},
		{Name: "usage: unknown parameter", Path: "/developers/usage?account_id=acct_other", Status: 400},
		{Name: "usage: api 5 KB long", Path: "/developers/usage?api=" + strings.Repeat("a", 5000), Status: 400},
		{Name: "usage: another account's key", Path: "/developers/usage?key_id=" + k.StrangerKeyID, Status: 404},
		{Name: "key usage: granularity week", Path: "/developers/keys/" + id + "/usage?granularity=week", Status: 400},
		{Name: "key usage: 1,441 minutes", Path: "/developers/keys/" + id + "/usage?granularity=minute&start=2030-01-01T00:00:00Z&end=2030-01-02T00:01:00Z", Status: 400},
		{Name: "key usage: start inside an hour", Path: "/developers/keys/" + id + "/usage?start=2030-01-01T00:30:00Z&end=2030-01-01T05:00:00Z", Status: 400},
		{Name: "key usage: an empty period", Path: "/developers/keys/" + id + "/usage?start=2030-01-01T00:00:00Z&end=2030-01-01T00:00:00Z", Status: 400},
		{Name: "key usage: another account's key", Path: "/developers/keys/" + k.StrangerKeyID + "/usage", Status: 404},
		// Hostile request-log queries.
		{Name: "logs: status 600", Path: "/developers/logs?status=600", Status: 400},
		{Name: "logs: status 4xy", Path: "/developers/logs?status=4xy", Status: 400},
		{Name: "logs: status 0429", Path: "/developers/logs?status=0429", Status: 400},
		{Name: "logs: status twice", Path: "/developers/logs?status=429&status=500", Status: 400},
		{Name: "logs: limit 0", Path: "/developers/logs?limit=0", Status: 400},
		{Name: "logs: limit 1e9", Path: "/developers/logs?limit=1000000000", Status: 400},
		{Name: "logs: forged cursor", Path: "/developers/logs?cursor=MTIz", Status: 400},
		{Name: "logs: 10 KB cursor", Path: "/developers/logs?cursor=" + strings.Repeat("A", 10_000), Status: 400},
		{Name: "logs: 5 KB key_id", Path: "/developers/logs?key_id=" + strings.Repeat("k", 5000), Status: 400},
		{Name: "logs: empty method", Path: "/developers/logs?method=", Status: 400},
		{Name: "logs: end before start", Path: "/developers/logs?start=2026-11-02T00:00:00Z&end=2026-11-01T00:00:00Z", Status: 400},
		{Name: "logs: start not a time", Path: "/developers/logs?start=today", Status: 400},
		{Name: "logs: unknown parameter", Path: "/developers/logs?account_id=acct_other", Status: 400},
		{Name: "logs: another account's key", Path: "/developers/logs?key_id=" + k.StrangerKeyID, Status: 404},
		{Name: "log: a request never made", Path: "/developers/logs/req_NOSUCHREQUEST", Status: 404},
		{Name: "log: a 5 KB request id", Path: "/developers/logs/" + strings.Repeat("r", 5000), Status: 404},
		{Name: "log: a query", Path: "/developers/logs/req_X?key_id=x", Status: 400},
		// Hostile event-log queries.
		{Name: "events: unknown type", Path: "/developers/events?type=key.exploded", Status: 400},
		{Name: "events: type twice", Path: "/developers/events?type=key.created&type=key.revoked", Status: 400},
		{Name: "events: limit 0", Path: "/developers/events?limit=0", Status: 400},
		{Name: "events: forged cursor", Path: "/developers/events?cursor=MTIz", Status: 400},
		{Name: "events: 10 KB cursor", Path: "/developers/events?cursor=" + strings.Repeat("A", 10_000), Status: 400},
		{Name: "events: 5 KB key_id", Path: "/developers/events?key_id=" + strings.Repeat("k", 5000), Status: 400},
		{Name: "events: end before start", Path: "/developers/events?start=2026-11-02T00:00:00Z&end=2026-11-01T00:00:00Z", Status: 400},
		{Name: "events: unknown parameter", Path: "/developers/events?account_id=acct_other", Status: 400},
		{Name: "event: never written", Path: "/developers/events/evt_NOSUCH", Status: 404},
		{Name: "event: a 5 KB id", Path: "/developers/events/" + strings.Repeat("e", 5000), Status: 404},
		{Name: "event: a query", Path: "/developers/events/evt_X?type=key.created", Status: 400},
		// Hostile webhook reads.
		{Name: "webhooks: a parameter", Path: "/developers/webhooks?account_id=acct_other", Status: 400},
		{Name: "webhook: none such", Path: "/developers/webhooks/we_NOSUCH", Status: 404},
		{Name: "webhook: a 5 KB id", Path: "/developers/webhooks/" + strings.Repeat("w", 5000), Status: 404},
		{Name: "deliveries: none such endpoint", Path: "/developers/webhooks/we_NOSUCH/deliveries", Status: 404},
		{Name: "deliveries: limit 0", Path: "/developers/webhooks/we_NOSUCH/deliveries?limit=0", Status: 400},
		{Name: "deliveries: forged cursor", Path: "/developers/webhooks/we_NOSUCH/deliveries?cursor=MTIz", Status: 400},
	} {
		r.Method = "GET"
		r.Headers = map[string][]string{"Authorization": {"Bearer " + k.Admin}}
		rows = append(rows, r)
	}
	// Hostile webhook writes: each changes nothing.
	hook := func(name, method, path, body string, status int) {
		rows = append(rows, Request{Name: name, Method: method, Path: path, Headers: jsonHeaders(k.Admin), Body: body, Status: status})
	}
	for name, url := range map[string]string{
		"cloud metadata":   "https://169.254.169.254/latest/meta-data/",
		"loopback":         "https://127.0.0.1:8080/",
		"IPv6 loopback":    "https://[::1]/",
		"private":          "https://10.0.0.1/",
		"mapped loopback":  "https://[::ffff:127.0.0.1]/",
		"unspecified":      "https://0.0.0.0/",
		"localhost":        "https://localhost/",
		"plain http":       "http://93.184.215.14/",
		"credentials":      "https://user:pass@93.184.215.14/",
		"javascript":       "javascript:alert(1)",
		"relative":         "/hook",
		"file":             "file:///etc/passwd",
		"10 KB":            "https://93.184.215.14/" + strings.Repeat("a", 10_000),
		"a NUL":            "https://93.184.215.14/\u0000",
		"a space":          "https://93.184.215.14/a b",
		"a fragment":       "https://93.184.215.14/#x",
		"shared (CGNAT)":   "https://100.100.100.200/",
		"decimal loopback": "https://2130706433/",
	} {
		hook("webhook create: url "+name, "POST", "/developers/webhooks", `{"url":"`+url+`","events":["*"]}`, 400)
	}
	okHook := `{"url":"https://93.184.215.14/hook","events":["*"]}`
	for _, r := range []struct{ name, body string }{
		{"no events", `{"url":"https://93.184.215.14/hook"}`},
		{"events empty", `{"url":"https://93.184.215.14/hook","events":[]}`},
		{"events unknown", `{"url":"https://93.184.215.14/hook","events":["key.*"]}`},
		{"events 33", `{"url":"https://93.184.215.14/hook","events":[` + strings.TrimSuffix(strings.Repeat(`"key.created",`, 33), ",") + `]}`},
		{"events a string", `{"url":"https://93.184.215.14/hook","events":"*"}`},
		{"description 257", `{"url":"https://93.184.215.14/hook","events":["*"],"description":"` + strings.Repeat("d", 257) + `"}`},
		{"a secret given", `{"url":"https://93.184.215.14/hook","events":["*"],"secret":"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`},
		{"an account given", `{"url":"https://93.184.215.14/hook","events":["*"],"account_id":"acct_other"}`},
		{"url twice", `{"url":"https://93.184.215.14/a","url":"https://10.0.0.1/","events":["*"]}`},
		{"not an object", `["` + okHook + `"]`},
	} {
		hook("webhook create: "+r.name, "POST", "/developers/webhooks", r.body, 400)
	}
	hook("webhook update: none such", "PATCH", "/developers/webhooks/we_NOSUCH", `{"enabled":false}`, 404)
	hook("webhook update: url private", "PATCH", "/developers/webhooks/we_NOSUCH", `{"url":"https://192.168.1.1/"}`, 400)
	hook("webhook update: enabled null", "PATCH", "/developers/webhooks/we_NOSUCH", `{"enabled":null}`, 400)
	hook("webhook delete: none such", "DELETE", "/developers/webhooks/we_NOSUCH", "", 404)
	hook("webhook roll: grace of a week", "POST", "/developers/webhooks/we_NOSUCH/roll-secret", `{"grace_period_seconds":604800}`, 400)
	hook("webhook roll: none such", "POST", "/developers/webhooks/we_NOSUCH/roll-secret", "", 404)
	hook("webhook test: none such", "POST", "/developers/webhooks/we_NOSUCH/test", "", 404)
	hook("delivery retry: none such", "POST", "/developers/webhooks/we_NOSUCH/deliveries/dlv_NOSUCH/retry", "", 404)
	rows = append(rows, Request{Name: "webhook create: a stranger's 11th is no business of ours", Method: "POST", Path: "/developers/webhooks",
		Headers: jsonHeaders(k.Revoked), Body: okHook, Status: 401})
	return rows
}
