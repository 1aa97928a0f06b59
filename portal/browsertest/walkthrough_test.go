// Package browsertest drives the developer portal in a real browser:
// headless Chromium (Debian's chromium package) through chromedp. It is
// its own module, so that the core module needs nothing but uuid and
// x/crypto.
//
// The tests read KEYS_TEST_CHROMIUM, the browser's path, as the database
// tests read theirs: unset, they skip; set to a path that is not there,
// they fail. KEYS_PORTAL_SCREENSHOTS, if set, is where the screenshots go
// (scripts/portal-screenshots sets it to docs/images); otherwise a
// temporary directory.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/internal/demo"
	"github.com/txcloud/keys/memstore"
)

// chromium is the browser's path from KEYS_TEST_CHROMIUM.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("KEYS_TEST_CHROMIUM")
	if path == "" {
		t.Skip("set KEYS_TEST_CHROMIUM to Chromium's path to run the browser tests: apt-get install chromium; KEYS_TEST_CHROMIUM=/usr/bin/chromium go test ./portal/browsertest/")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("KEYS_TEST_CHROMIUM=%s: %v (apt-get install chromium)", path, err)
	}
	return path
}

// demoServer is the demo's routes (the API under /v1, the portal under
// /portal) on the in-memory store, on loopback, with its bootstrap key
// (test environment, every permission).
func demoServer(t *testing.T) (*keys.Manager, *httptest.Server, string) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := keys.New(memstore.New(), keys.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	var out bytes.Buffer
	if err := (&demo.Flags{}).Bootstrap(context.Background(), m, &out); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(strings.TrimPrefix(out.String(), "bootstrap key: "))
	srv := httptest.NewServer(demo.NewMux(m, logger, false, nil))
	t.Cleanup(srv.Close)
	return m, srv, key
}

// newBrowser starts headless Chromium; the returned context drives one
// tab. Console errors, exceptions and the browser log's errors (a
// Content-Security-Policy violation is one) are collected; problems
// returns them.
func newBrowser(t *testing.T, path string) (ctx context.Context, problems func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // as root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, bound to ctx
		t.Fatalf("starting %s: %v", path, err)
	}
	var mu sync.Mutex
	var seen []string
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" || m.Type == "warning" {
				mu.Lock()
				seen = append(seen, m.String())
				mu.Unlock()
			}
		}
	}()
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(seen) }
}

// shots is where screenshots go.
func shots(t *testing.T) string {
	if dir := os.Getenv("KEYS_PORTAL_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// step runs actions, for at most 20 s; on a failure it says where the
// browser was and what the page said.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		fail(t, ctx, what, err)
	}
}

// value runs a and returns its value, as step does.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		fail(t, ctx, what, err)
	}
	return v
}

func fail(t *testing.T, ctx context.Context, what string, err error) {
	t.Helper()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(fctx, chromedp.Location())
	body, _ := chromedp.Run(fctx, chromedp.Text(chromedp.CSS("main")))
	t.Fatalf("%s: %v (at %s: %.400s)", what, err, loc, body)
}

// call makes one API request with key, as a customer's program would.
func call(t *testing.T, srv *httptest.Server, key string) int {
	t.Helper()
	return callPath(t, srv, key, "/v1/ping")
}

func callPath(t *testing.T, srv *httptest.Server, key, path string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// textUntil loads url until main's text contains want (the usage and the
// log are written in batches), for 10 s at most.
func textUntil(t *testing.T, ctx context.Context, url, want string) string {
	t.Helper()
	var text string
	deadline := time.Now().Add(10 * time.Second)
	for {
		step(t, ctx, "load "+url, chromedp.Navigate(url))
		text = value(t, ctx, "read "+url, chromedp.Text(chromedp.CSS("main")))
		if strings.Contains(text, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(text, want) {
		t.Fatalf("%s: %q never appeared: %.600s", url, want, text)
	}
	return text
}

// TestWalkThrough is a customer's visit: sign in with a key, create a key
// and copy its secret, call the API with it, see the call in the usage
// chart and the log, roll the key, revoke it, see the 401 in the log,
// sign out. Screenshots at 1280 and 375 px wide.
func TestWalkThrough(t *testing.T) {
	path := chromium(t)
	_, srv, bootstrap := demoServer(t)
	ctx, problems := newBrowser(t, path)
	dir := shots(t)
	base := srv.URL + "/portal"
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }

	// Sign in.
	step(t, ctx, "sign in",
		chromedp.Navigate(srv.URL+"/"),
		visible("#key"),
		chromedp.SendKeys(chromedp.CSS("#key"), bootstrap),
		chromedp.Submit(chromedp.CSS("#key")),
		chromedp.WaitVisible(`//h1[text()="API keys"]`),
	)

	// Create a key, and copy its secret with the button.
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name, AllowWithoutSanitization: true}, Setting: browser.PermissionSettingGranted, Origin: srv.URL}); err != nil {
			t.Fatalf("granting %s: %v", name, err)
		}
	}
	step(t, ctx, "create a key",
		chromedp.Click(`//a[text()="Create key"]`),
		visible("#name"),
		chromedp.SendKeys(chromedp.CSS("#name"), "walk-through"),
		chromedp.Click(chromedp.CSS(`input[name="permissions"][value="identity:read"]`)),
		chromedp.SendKeys(chromedp.CSS("#metadata"), `{"team":"docs"}`),
		chromedp.SendKeys(chromedp.CSS("#rate_limit"), "4"),
		chromedp.Click(`//button[text()="Create key"]`),
		visible("#secret"),
	)
	secret := value(t, ctx, "read the key", chromedp.Value(chromedp.CSS("#secret")))
	step(t, ctx, "copy it",
		visible("button.copy"), // shown by the script
		chromedp.Click(chromedp.CSS("button.copy")),
		chromedp.WaitVisible(`//button[text()="Copied"]`),
	)
	copied := value(t, ctx, "read the clipboard", chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if !regexp.MustCompile(`^txc_test_[0-9A-Za-z]{38}$`).MatchString(secret) {
		t.Fatalf("the created key shown: %q", secret)
	}
	if copied != secret {
		t.Fatalf("the clipboard holds %q, not the key", copied)
	}

	// Call the API with it: three calls pass, one is a bad request, two
	// more are over its rate limit (4 a minute).
	var codes []int
	for _, path := range []string{"/v1/ping", "/v1/ping", "/v1/ping", "/v1/ping?sleep_ms=never", "/v1/ping", "/v1/ping"} {
		codes = append(codes, callPath(t, srv, secret, path))
	}
	if fmt.Sprint(codes) != "[200 200 200 400 429 429]" {
		t.Fatalf("the new key's calls: %v", codes)
	}

	// The keys page, at both widths.
	screenshot(t, ctx, base+"/keys", filepath.Join(dir, "portal-keys"))

	// The usage chart and the log show the calls.
	for _, want := range []string{"Successful (3)", "Failed, not rate-limited (1)", "Rate-limited (2)"} {
		textUntil(t, ctx, base+"/usage", want)
	}
	if bars := value(t, ctx, "count the bars", chromedp.Evaluate[int](`document.querySelectorAll("figure.chart rect.ok").length`)); bars == 0 {
		t.Fatal("no successful requests drawn in the chart")
	}
	screenshot(t, ctx, base+"/usage", filepath.Join(dir, "portal-usage"))
	textUntil(t, ctx, base+"/logs", "GET /v1/ping")

	// Roll it: the new key works; with no grace, the old one does not.
	step(t, ctx, "open the key", chromedp.Navigate(base+"/keys"), chromedp.Click(`//a[text()="walk-through"]`), visible("#grace_hours"))
	step(t, ctx, "roll it",
		chromedp.SetValue(chromedp.CSS("#grace_hours"), "0"),
		chromedp.Click(`//button[text()="Roll key"]`),
		visible("#secret"),
	)
	rolled := value(t, ctx, "read the rolled key", chromedp.Value(chromedp.CSS("#secret")))
	if rolled == secret || !strings.HasPrefix(rolled, "txc_test_") {
		t.Fatalf("the rolled key shown: %q", rolled)
	}
	if call(t, srv, rolled) != http.StatusOK || call(t, srv, secret) != http.StatusUnauthorized {
		t.Fatal("after the roll: the new key does not work, or the old one still does")
	}

	// Revoke the new key, with the confirmation.
	step(t, ctx, "revoke it",
		chromedp.Click(`//a[contains(text(), "Go to the key")]`),
		chromedp.Click(`//a[contains(text(), "Revoke key")]`),
		chromedp.WaitVisible(`//h1[contains(text(), "Revoke")]`),
		chromedp.Click(`//button[text()="Revoke key"]`),
		chromedp.WaitVisible(`//p[text()="The key is revoked."]`),
	)
	if code := call(t, srv, rolled); code != http.StatusUnauthorized {
		t.Fatalf("the revoked key: %d", code)
	}
	textUntil(t, ctx, base+"/logs?status=401", "key_revoked")

	// A webhook endpoint: added (its secret shown), its page at both
	// widths, its secret rolled (the new one shown), deleted after the
	// confirmation. Its deliveries fail here (no network), which is
	// what the page's retry buttons are for.
	step(t, ctx, "add an endpoint",
		chromedp.Navigate(base+"/webhooks/new"),
		chromedp.SetValue(chromedp.CSS("#url"), "https://hooks.example.com/walkthrough"),
		chromedp.Click(`//button[text()="Add endpoint"]`),
		visible("#secret"),
	)
	signing := value(t, ctx, "read the signing secret", chromedp.Value(chromedp.CSS("#secret")))
	if !strings.HasPrefix(signing, "whsec_") {
		t.Fatalf("the signing secret shown: %q", signing)
	}
	step(t, ctx, "open the endpoint", chromedp.Click(`//a[contains(text(), "Go to the endpoint")]`), visible("#grace_hours"))
	endpoint := value(t, ctx, "the endpoint's address", chromedp.Location())
	screenshot(t, ctx, endpoint, filepath.Join(dir, "portal-webhook"))
	step(t, ctx, "roll its secret",
		chromedp.Navigate(endpoint),
		chromedp.SetValue(chromedp.CSS("#grace_hours"), "1"),
		chromedp.Click(`//button[text()="Roll signing secret"]`),
		chromedp.WaitVisible(`//h1[text()="Signing secret rolled"]`),
	)
	if again := value(t, ctx, "read the new signing secret", chromedp.Value(chromedp.CSS("#secret"))); again == signing || !strings.HasPrefix(again, "whsec_") {
		t.Fatalf("the rolled signing secret shown: %q", again)
	}
	step(t, ctx, "delete it",
		chromedp.Navigate(endpoint),
		chromedp.Click(`//a[contains(text(), "Delete endpoint")]`),
		chromedp.WaitVisible(`//h1[text()="Delete this endpoint?"]`),
		chromedp.Click(`//button[text()="Delete endpoint"]`),
		chromedp.WaitVisible(`//p[text()="The endpoint is deleted, with its deliveries."]`),
	)

	// Sign out: the portal asks to sign in again.
	step(t, ctx, "sign out",
		chromedp.Navigate(base+"/keys"),
		chromedp.Click(`//button[text()="Sign out"]`),
		chromedp.WaitVisible(`//p[text()="You are signed out."]`),
		chromedp.Navigate(base+"/keys"),
		visible("#key"),
	)
	for _, p := range problems() {
		t.Errorf("browser console: %s", p)
	}
	t.Logf("screenshots in %s", dir)
}

// screenshot writes url's page at 1280 and 375 px wide (name-1280.png,
// name-375.png), and checks that neither width scrolls sideways.
func screenshot(t *testing.T, ctx context.Context, url, name string) {
	t.Helper()
	for _, width := range []int64{1280, 375} {
		step(t, ctx, fmt.Sprintf("load %s at %d px", url, width), chromedp.EmulateViewport(width, 900), chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("main")))
		if scroll := value(t, ctx, "page width", chromedp.Evaluate[int64](`document.documentElement.scrollWidth`)); scroll > width {
			t.Errorf("%s at %d px is %d px wide: it scrolls sideways", url, width, scroll)
		}
		png := value(t, ctx, "screenshot", chromedp.FullScreenshot(100))
		if err := os.WriteFile(fmt.Sprintf("%s-%d.png", name, width), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	step(t, ctx, "back to 1280 px", chromedp.EmulateViewport(1280, 900))
}

// TestKeyboard: from the top of the keys page, Tab reaches the
// navigation, the create link, the filters and sign-out, each with a
// visible focus ring.
func TestKeyboard(t *testing.T) {
	path := chromium(t)
	_, srv, bootstrap := demoServer(t)
	ctx, _ := newBrowser(t, path)
	step(t, ctx, "sign in",
		chromedp.Navigate(srv.URL+"/portal/sign-in"),
		chromedp.SendKeys(chromedp.CSS("#key"), bootstrap+kb.Enter),
		chromedp.WaitVisible(`//h1[text()="API keys"]`),
	)
	reached := map[string]bool{}
	for range 20 {
		step(t, ctx, "tab", chromedp.KeyEvent(kb.Tab))
		label := value(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement === document.body ? "" : (document.activeElement.id || document.activeElement.textContent || "").trim()`))
		outline := value(t, ctx, "focus ring", chromedp.Evaluate[string](`getComputedStyle(document.activeElement).outlineStyle`))
		reached[label] = true
		if label != "" && outline == "none" {
			t.Errorf("%q has no visible focus", label)
		}
	}
	for _, want := range []string{"Keys", "Usage", "Logs", "Webhooks", "Sign out", "Create key", "f-env", "Filter"} {
		if !reached[want] {
			t.Errorf("Tab never reached %q (reached %v)", want, reached)
		}
	}
}
