package httpadapter_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/httpadapter"
)

// Owner, metadata and enabled over HTTP: each accepted in its type,
// refused in another; the list filters by owner and by expiry window.
func TestCarryOverHTTP(t *testing.T) {
	e := newEnv(t)
	h := httpadapter.New(e.m)
	k := newKey(t, h, e.admin, `{"name":"a","environment":"test","owner_id":"cust_7","metadata":{"z":1, "a":[true]},"enabled":false}`)
	if k.OwnerID != "cust_7" || string(k.Metadata) != `{"z":1,"a":[true]}` || k.Enabled {
		t.Fatalf("created %+v", k.APIKey)
	}
	exp := e.clock.Now().Add(time.Hour).Format(time.RFC3339)
	soon := newKey(t, h, e.admin, `{"name":"b","environment":"test","expires_at":"`+exp+`","enabled":true}`)
	if !soon.Enabled {
		t.Fatal(`"enabled": true made a disabled key`)
	}
	list := func(q string) []string {
		t.Helper()
		rec := serve(h, request{method: "GET", path: "/developers/keys?" + q, headers: authOnly(e.admin)})
		if rec.Code != http.StatusOK {
			t.Fatalf("list %s: %d %s", q, rec.Code, rec.Body)
		}
		var ids []string
		for _, k := range decode[keys.KeyList](t, rec).Data {
			ids = append(ids, k.ID)
		}
		return ids
	}
	if got := list("owner_id=cust_7"); len(got) != 1 || got[0] != k.ID {
		t.Fatalf("owner_id=cust_7: %v", got)
	}
	if got := list("expiring_within=7200"); len(got) != 1 || got[0] != soon.ID {
		t.Fatalf("expiring_within=7200: %v", got)
	}
	if got := list("expiring_within=1"); len(got) != 0 {
		t.Fatalf("expiring_within=1: %v", got)
	}
	rec := serve(h, request{method: "PATCH", path: "/developers/keys/" + k.ID, headers: jsonHeaders(e.admin), body: `{"enabled":true,"metadata":{"b":2},"owner_id":null}`})
	got := decode[keys.APIKey](t, rec)
	if rec.Code != 200 || !got.Enabled || string(got.Metadata) != `{"b":2}` || got.OwnerID != "" {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	for name, r := range map[string]request{
		"create: empty owner_id":        {headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","owner_id":""}`},
		"create: owner_id a number":     {headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","owner_id":7}`},
		"create: metadata a string":     {headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","metadata":"{}"}`},
		"create: enabled a string":      {headers: jsonHeaders(e.admin), body: `{"name":"a","environment":"test","enabled":"true"}`},
		"update: metadata an array":     {method: "PATCH", path: "/developers/keys/" + k.ID, headers: jsonHeaders(e.admin), body: `{"metadata":[]}`},
		"list: expiring_within 0":       {method: "GET", path: "/developers/keys?expiring_within=0", headers: authOnly(e.admin)},
		"list: expiring_within a word":  {method: "GET", path: "/developers/keys?expiring_within=soon", headers: authOnly(e.admin)},
		"list: owner_id with a newline": {method: "GET", path: "/developers/keys?owner_id=a%0Ab", headers: authOnly(e.admin)},
	} {
		rec := serve(h, r)
		var body httpadapter.ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusBadRequest || body.Error.Param == "" {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
}
