package main

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// --metrics-addr serves Prometheus metrics through keysotel: the
// verification counter labelled by outcome, the operations, and nothing
// that holds a key.
func TestMetrics(t *testing.T) {
	text := scrapeAfterTraffic(t)
	if strings.Contains(text, "keys_store_queries_total") {
		t.Fatal("memstore has no database queries to count")
	}
}

// On PostgreSQL, the store's own counters are there too.
func TestMetricsOnPostgres(t *testing.T) {
	dsn := os.Getenv("KEYS_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set KEYS_TEST_POSTGRES to run the demo's metrics on PostgreSQL")
	}
	schema := "keysdemo_metrics_" + strings.ToLower(rand.Text()[:10])
	t.Cleanup(func() {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err == nil {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			pool.Close()
		}
	})
	text := scrapeAfterTraffic(t, "--store", "postgres", "--dsn", dsn, "--schema", schema)
	for _, want := range []string{"keys_store_queries_total", "keys_store_filter_refusals_total", "keys_store_cache_hits_total", "keys_store_listening"} {
		if !strings.Contains(text, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// scrapeAfterTraffic runs the demo with --metrics-addr and args, makes
// three valid verifications and a forged one, checks the counters, and
// returns the page.
func scrapeAfterTraffic(t *testing.T, args ...string) string {
	base, bootstrap, logs, stop := startDemo(t, append([]string{"--metrics-addr", "127.0.0.1:0"}, args...)...)
	defer stop()
	var metricsURL string
	re := regexp.MustCompile(`msg="keysdemo metrics" addr=(\S+)`)
	deadline := time.Now().Add(5 * time.Second)
	for metricsURL == "" {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			metricsURL = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no metrics address logged: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		if resp, _ := call(t, "GET", base+"/v1/whoami", bootstrap, ""); resp.StatusCode != 200 {
			t.Fatalf("whoami: %d", resp.StatusCode)
		}
	}
	forged := bootstrap[:len(bootstrap)-6] + "abcdef"
	if resp, _ := call(t, "GET", base+"/v1/whoami", forged, ""); resp.StatusCode != 401 {
		t.Fatalf("a forged key: %d", resp.StatusCode)
	}
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`keys_verifications_total\{[^}]*outcome="valid"[^}]*\} 3`),
		regexp.MustCompile(`keys_verifications_total\{[^}]*outcome="invalid"[^}]*\} 1`),
		regexp.MustCompile(`keys_operations_total\{[^}]*operation="create"[^}]*result="ok"[^}]*\} 1`),
	} {
		if !want.MatchString(text) {
			t.Fatalf("/metrics lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, bootstrap[10:]) || strings.Contains(text, forged[10:]) {
		t.Fatal("/metrics holds a key")
	}
	return text
}
