package httpadapter_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/store"
)

// leakChecker knows every secret of a run and finds any of them in text.
type leakChecker struct {
	pepper  []byte
	secrets map[string]string // needle → what it is
}

func (c *leakChecker) addKey(key string) {
	c.secrets[key] = "a key"
	c.secrets[key[9:]] = "a key's secret part"
	mac := hmac.New(sha256.New, c.pepper)
	mac.Write([]byte(key))
	d := mac.Sum(nil)
	asJSON, _ := json.Marshal([32]byte(d)) // how encoding/json writes a [32]byte
	for _, enc := range []string{hex.EncodeToString(d), base64.StdEncoding.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d), string(d), string(asJSON[1 : len(asJSON)-1])} {
		c.secrets[enc] = "a key's digest"
	}
}

func (c *leakChecker) check(t *testing.T, where, text string) {
	t.Helper()
	for needle, what := range c.secrets {
		if strings.Contains(text, needle) {
			t.Errorf("%s contains %s", where, what)
		}
	}
}

// Create, verify, update, roll and revoke keys with every log at debug
// level, failures included, then look for any key, digest or the pepper in
// the logs, the events, the error strings, the non-201 bodies and every
// type printed with every verb.
func TestNoSecretLeaks(t *testing.T) {
	ctx := context.Background()
	pepper := []byte("the-pepper-of-this-test-0123456789abcdef")
	lc := &leakChecker{pepper: pepper, secrets: map[string]string{
		string(pepper): "the pepper", hex.EncodeToString(pepper): "the pepper", base64.StdEncoding.EncodeToString(pepper): "the pepper",
	}}
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var events []string
	st := &countingStore{Store: memstore.New()}
	m, err := keys.New(st, keys.WithPepper(pepper), keys.WithForeignPrefixes("sk_live_"), keys.WithLogger(logger), keys.WithLastUsedFlushInterval(5*time.Millisecond),
		keys.WithEventHook(func(_ context.Context, e event.Event) { events = append(events, fmt.Sprintf("%v %+v %#v", e, e, e)) }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	h := httpadapter.New(m, httpadapter.WithLogger(logger))
	mw := httpadapter.New(m, httpadapter.WithLogger(logger)).Middleware()(whoami)
	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err))
		}
	}

	admin, err := m.Create(ctx, keys.APIKeyCreate{Name: "admin", Environment: keys.Test, Permissions: keys.DefaultVocabulary(), AccountID: "acct_s"})
	if err != nil {
		t.Fatal(err)
	}
	lc.addKey(string(admin.Key))
	var bodies []string
	call := func(r request) string {
		rec := serve(h, r)
		body := rec.Body.String()
		if rec.Code == http.StatusCreated {
			var c keys.APIKeyCreated
			if err := jsonUnmarshal(body, &c); err != nil {
				t.Fatal(err)
			}
			lc.addKey(string(c.Key))
			// A 201 shows its own key, once, and no other secret.
			body = strings.Replace(body, string(c.Key), "", 1)
		}
		bodies = append(bodies, body)
		return c201ID(body)
	}
	idem := jsonHeaders(string(admin.Key))
	idem["Idempotency-Key"] = []string{"leak-test-0001"}
	id := call(request{headers: idem, body: `{"name":"svc","environment":"test","permissions":["identity:read"],"rate_limit":2}`})
	call(request{headers: idem, body: `{"name":"svc","environment":"test","permissions":["identity:read"],"rate_limit":2}`}) // replay
	call(request{headers: idem, body: `{"name":"other","environment":"test"}`})                                              // 409
	call(request{method: "PATCH", path: "/developers/keys/" + id, headers: jsonHeaders(string(admin.Key)), body: `{"name":"renamed"}`})
	call(request{method: "GET", path: "/developers/keys", headers: authOnly(string(admin.Key))})
	rolledID := call(request{path: "/developers/keys/" + id + "/roll", headers: jsonHeaders(string(admin.Key)), body: `{"grace_period_seconds":60}`})
	call(request{method: "DELETE", path: "/developers/keys/" + rolledID, headers: authOnly(string(admin.Key))})
	// Owner, metadata, disable; a leak report; an imported foreign key.
	ownedID := call(request{headers: jsonHeaders(string(admin.Key)), body: `{"name":"owned","environment":"test","owner_id":"cust_1","metadata":{"plan":"pro"}}`})
	call(request{method: "PATCH", path: "/developers/keys/" + ownedID, headers: jsonHeaders(string(admin.Key)), body: `{"enabled":false}`})
	call(request{method: "GET", path: "/developers/keys?owner_id=cust_1", headers: authOnly(string(admin.Key))})
	foreign := "sk_live_" + strings.Repeat("F", 32)
	lc.addKey(foreign)
	_, err = m.Import(ctx, []keys.ImportKey{{Key: keys.Secret(foreign), AccountID: "acct_s", Name: "legacy", Environment: keys.Test}})
	note(err)
	for secret := range lc.secrets {
		if strings.HasPrefix(secret, "txc_") && secret != string(admin.Key) {
			rep, err := m.ReportLeak(ctx, secret, event.Leak{URL: "https://github.com/o/r", Source: "content"}, keys.LeakDisable)
			note(err)
			errs = append(errs, fmt.Sprintf("%v %+v %#v", rep, rep, rep))
		}
	}
	// Presented keys, good and bad, through the middleware and Verify.
	var presented []string
	for secret := range lc.secrets {
		if strings.HasPrefix(secret, "txc_") || strings.HasPrefix(secret, "sk_live_") {
			presented = append(presented, secret, secret+"x", changeLast(secret), strings.ToUpper(secret))
		}
	}
	for _, k := range presented {
		rec := serve(mw, request{method: "GET", headers: authOnly(k)})
		if rec.Code != 200 {
			bodies = append(bodies, rec.Body.String())
		}
		for range 3 {
			_, err := m.Verify(ctx, k, keys.Require("kyb:write"))
			note(err)
		}
	}
	// Failures that are logged: a store outage, a failed flush.
	st.down.Store(true)
	call(request{headers: jsonHeaders(string(admin.Key)), body: `{"name":"x","environment":"test"}`})
	_, err = m.Verify(ctx, string(admin.Key))
	note(err)
	st.down.Store(false)
	// A key used for the first time, so that its use is noted (a key
	// noted within the last second, as admin may be, is not noted again).
	fresh, err := m.Create(ctx, keys.APIKeyCreate{Name: "fresh", Environment: keys.Test, AccountID: "acct_s"})
	if err != nil {
		t.Fatal(err)
	}
	lc.addKey(string(fresh.Key))
	st.touchDown.Store(true)
	serve(mw, request{method: "GET", headers: authOnly(string(fresh.Key))})
	note(m.Flush(ctx))
	// Let the background flusher (every 5 ms) fail and log too: waited
	// for, not slept on, since a loaded machine under -race can take
	// longer than any fixed sleep.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		logMu.Lock()
		logged := strings.Contains(logs.String(), "flushing last-used times failed")
		logMu.Unlock()
		if logged {
			break
		}
	}
	st.touchDown.Store(false)

	// Every type, every verb.
	rec, err := st.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var printed []string
	for _, v := range []any{m, admin, *admin, rec, admin.Key, rec.Digest} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			printed = append(printed, fmt.Sprintf(verb, v))
		}
		logger.Debug("value", "v", v)
	}

	logMu.Lock()
	logText := logs.String()
	logMu.Unlock()
	if !strings.Contains(logText, "request failed") || !strings.Contains(logText, "flushing last-used times failed") {
		t.Fatalf("the failures were not logged, so this test proves nothing:\n%s", logText)
	}
	for _, line := range strings.Split(logText, "\n") {
		lc.check(t, "the log line "+truncateForTest(line), line)
	}
	lc.check(t, "an event", strings.Join(events, "\n"))
	lc.check(t, "an error string", strings.Join(errs, "\n"))
	lc.check(t, "a response body", strings.Join(bodies, "\n"))
	lc.check(t, "a printed value", strings.Join(printed, "\n"))
	// The store: every field of every record, walked by reflection, holds
	// no plaintext key (the digest is expected there; the key is not).
	stored, err := st.List(ctx, store.ListQuery{AccountID: "acct_s", Limit: 1000})
	if err != nil || len(stored) < 3 {
		t.Fatalf("store: %d records, %v", len(stored), err)
	}
	var raw []string
	for _, r := range stored {
		raw = append(raw, rawText(reflect.ValueOf(r)))
	}
	if !strings.Contains(strings.Join(raw, "\n"), "txc_test_") {
		t.Fatal("the walk of the store found no prefix: it reads nothing, so it proves nothing")
	}
	for needle, what := range lc.secrets {
		if what == "a key" || what == "a key's secret part" {
			if strings.Contains(strings.Join(raw, "\n"), needle) {
				t.Errorf("the store holds %s", what)
			}
		}
	}
	if len(events) < 4 || len(errs) < 10 || len(bodies) < 8 {
		t.Fatalf("too little was checked: %d events, %d errors, %d bodies", len(events), len(errs), len(bodies))
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// c201ID returns the "id" of a body, "" if none.
func c201ID(body string) string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(body), &v)
	return v.ID
}

func truncateForTest(s string) string {
	if len(s) > 400 {
		return s[:400]
	}
	return s
}

// rawText is every string and byte of v, however deep, as it sits in
// memory, bypassing any String or Format method.
func rawText(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return v.String() + "\n"
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			for i := range b {
				b[i] = byte(v.Index(i).Uint())
			}
			return string(b) + "\n"
		}
		var out strings.Builder
		for i := range v.Len() {
			out.WriteString(rawText(v.Index(i)))
		}
		return out.String()
	case reflect.Struct:
		var out strings.Builder
		for i := range v.NumField() {
			out.WriteString(rawText(v.Field(i)))
		}
		return out.String()
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return ""
		}
		return rawText(v.Elem())
	}
	return ""
}
