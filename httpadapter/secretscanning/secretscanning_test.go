package secretscanning_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/event"
	"github.com/txcloud/keys/httpadapter"
	"github.com/txcloud/keys/httpadapter/secretscanning"
	"github.com/txcloud/keys/memstore"
)

// githubKeys makes a P-256 key pair and the JSON GitHub's public-key
// endpoint would serve for it.
func githubKeys(t *testing.T, id string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemText := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": id, "key": string(pemText), "is_current": true}}})
	return priv, doc
}

func signed(t *testing.T, priv *ecdsa.PrivateKey, id string, body []byte) *http.Request {
	t.Helper()
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/secret-scanning/github", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Github-Public-Key-Identifier", id)
	r.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
	return r
}

func TestGitHubSecretScanning(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	var leaked []event.Event
	shared := memstore.New()
	m, err := keys.New(shared, keys.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		keys.WithEventHook(func(_ context.Context, e event.Event) {
			if e.Type == event.KeyLeaked {
				leaked = append(leaked, e)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	live, _ := m.Create(ctx, keys.APIKeyCreate{Name: "live", Environment: keys.Live, AccountID: "acct"})
	gone, _ := m.Create(ctx, keys.APIKeyCreate{Name: "gone", Environment: keys.Live, AccountID: "acct"})
	if _, err := m.Revoke(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	priv, doc := githubKeys(t, "kid-1")
	other, _ := githubKeys(t, "kid-1")
	ghKeys, err := secretscanning.ParsePublicKeys(doc)
	if err != nil {
		t.Fatal(err)
	}
	h := secretscanning.New(m, ghKeys, keys.LeakRevoke, httpadapter.New(m, httpadapter.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))).WriteError)
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for _, k := range []keys.Secret{live.Key, gone.Key} {
			if strings.Contains(rec.Body.String(), string(k)) || strings.Contains(logs.String(), string(k)) {
				t.Fatal("a key in the response or the log")
			}
		}
		return rec
	}
	unknown := "txc_live_" + strings.Repeat("Q", 38)
	body := []byte(`[{"token":"` + string(live.Key) + `","type":"txcloud_api_key","url":"https://github.com/o/r/blob/1/a.txt","source":"content"},
{"token":"` + string(gone.Key) + `","type":"txcloud_api_key","url":"https://gist.github.com/x","source":"gist"},
{"token":"` + unknown + `","type":"txcloud_api_key","url":"u","source":"npm"}]`)

	// Refused, with nothing changed: tampered, wrong key, unknown key ID,
	// no signature.
	tampered := signed(t, priv, "kid-1", body)
	evil := bytes.Replace(body, []byte("content"), []byte("contenT"), 1)
	tampered.Body, tampered.ContentLength = readCloser(evil), int64(len(evil))
	for name, r := range map[string]*http.Request{
		"tampered body":  tampered,
		"another key":    signed(t, other, "kid-1", body),
		"unknown key ID": signed(t, priv, "kid-2", body),
		"unsigned":       httptest.NewRequest("POST", "/", bytes.NewReader(body)),
	} {
		if rec := serve(r); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "invalid_signature") {
			t.Fatalf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	if _, err := m.Verify(ctx, string(live.Key)); err != nil || len(leaked) != 0 {
		t.Fatalf("a refused alert changed something: %v, %d events", err, len(leaked))
	}

	rec := serve(signed(t, priv, "kid-1", body))
	if rec.Code != http.StatusOK {
		t.Fatalf("alert: %d %s", rec.Code, rec.Body)
	}
	var fb []struct{ TokenHash, TokenType, Label string }
	if err := json.Unmarshal(rec.Body.Bytes(), &fb); err != nil || len(fb) != 3 {
		t.Fatalf("feedback %s: %v", rec.Body, err)
	}
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	var raw []map[string]string
	_ = json.Unmarshal(rec.Body.Bytes(), &raw)
	for i, want := range []struct{ token, label string }{{string(live.Key), "true_positive"}, {string(gone.Key), "true_positive"}, {unknown, "false_positive"}} {
		if raw[i]["token_hash"] != hash(want.token) || raw[i]["label"] != want.label || raw[i]["token_type"] != "txcloud_api_key" {
			t.Fatalf("feedback %d: %v", i, raw[i])
		}
	}
	if _, err := m.Verify(ctx, string(live.Key)); !errors.Is(err, keys.ErrKeyRevoked) {
		t.Fatalf("the leaked key still works: %v", err)
	}
	if len(leaked) != 2 || leaked[0].Leak.URL != "https://github.com/o/r/blob/1/a.txt" || leaked[1].Leak.Source != "gist" {
		t.Fatalf("key.leaked events: %+v", leaked)
	}

	// Replayed: refused, by this instance and by another on the same
	// store (a second Manager on it: the memory is the store's).
	replay := signed(t, priv, "kid-1", body)
	if rec := serve(replay); rec.Code != http.StatusConflict || len(leaked) != 2 {
		t.Fatalf("replay: %d, %d events", rec.Code, len(leaked))
	}
	m2, err := keys.New(shared, keys.WithEventHook(func(_ context.Context, e event.Event) {
		if e.Type == event.KeyLeaked {
			leaked = append(leaked, e)
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(ctx)
	rec2 := httptest.NewRecorder()
	secretscanning.New(m2, ghKeys, keys.LeakRevoke, httpadapter.New(m2).WriteError).ServeHTTP(rec2, signed(t, priv, "kid-1", body))
	if rec2.Code != http.StatusConflict || len(leaked) != 2 {
		t.Fatalf("replay to another instance: %d, %d events (key.leaked fired again)", rec2.Code, len(leaked))
	}
	// 10 MiB: refused unread.
	big := append([]byte("["), bytes.Repeat([]byte(" "), 10<<20)...)
	if rec := serve(signed(t, priv, "kid-1", append(big, ']'))); rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("10 MiB: %d", rec.Code)
	}
	for name, b := range map[string]string{"object": `{"token":"x"}`, "two arrays": `[][]`, "null": `null`, "garbage": `[{`} {
		if rec := serve(signed(t, priv, "kid-1", []byte(b))); rec.Code != http.StatusBadRequest {
			t.Fatalf("%s: %d", name, rec.Code)
		}
	}
	many := "[" + strings.TrimSuffix(strings.Repeat(`{"token":"x"},`, secretscanning.MaxTokens+1), ",") + "]"
	if rec := serve(signed(t, priv, "kid-1", []byte(many))); rec.Code != http.StatusBadRequest {
		t.Fatalf("too many tokens: %d", rec.Code)
	}
	if rec := serve(signed(t, priv, "kid-1", []byte(`[]`))); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("an empty alert: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(httptest.NewRequest("GET", "/", nil)); rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", rec.Code)
	}
	for _, bad := range []string{`{}`, `{"public_keys":[{"key_identifier":"k","key":"not pem"}]}`, `{"public_keys":[{"key":"-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----"}]}`} {
		if _, err := secretscanning.ParsePublicKeys([]byte(bad)); err == nil {
			t.Fatalf("ParsePublicKeys(%s) accepted", bad)
		}
	}
}

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// An alert of exactly MaxTokens tokens is handled; one more is not.
func TestAlertTokenBound(t *testing.T) {
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	priv, doc := githubKeys(t, "kid")
	ghKeys, err := secretscanning.ParsePublicKeys(doc)
	if err != nil {
		t.Fatal(err)
	}
	h := secretscanning.New(m, ghKeys, keys.LeakRevoke, httpadapter.New(m).WriteError)
	for n, want := range map[int]int{secretscanning.MaxTokens: 200, secretscanning.MaxTokens + 1: 400} {
		body := "[" + strings.TrimSuffix(strings.Repeat(`{"token":"x","type":"t"},`, n), ",") + "]"
		rec := serveHandler(h, signed(t, priv, "kid", []byte(body)))
		if rec.Code != want {
			t.Fatalf("%d tokens: %d, want %d", n, rec.Code, want)
		}
	}
}

func serveHandler(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// An alert body of exactly MaxBody bytes is read and answered; one
// byte more is a 413.
func TestAlertBodyBound(t *testing.T) {
	m, err := keys.New(memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	priv, doc := githubKeys(t, "kid")
	ghKeys, err := secretscanning.ParsePublicKeys(doc)
	if err != nil {
		t.Fatal(err)
	}
	h := secretscanning.New(m, ghKeys, keys.LeakRevoke, httpadapter.New(m).WriteError)
	for n, want := range map[int]int{secretscanning.MaxBody: 200, secretscanning.MaxBody + 1: 413} {
		body := "[" + strings.Repeat(" ", n-2) + "]"
		if rec := serveHandler(h, signed(t, priv, "kid", []byte(body))); rec.Code != want {
			t.Fatalf("a body of %d bytes: %d, want %d", n, rec.Code, want)
		}
	}
}
