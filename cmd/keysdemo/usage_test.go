package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SIGTERM flushes usage: a demo process on PostgreSQL serves pings, is
// stopped with SIGTERM within the minute (nothing flushed on the timer
// yet), and a second process on the same database reads every ping back
// from GET /v1/developers/usage.
func TestSIGTERMFlushesUsage(t *testing.T) {
	dsn := os.Getenv("KEYS_TEST_POSTGRES")
	if dsn == "" || testing.Short() {
		t.Skip("set KEYS_TEST_POSTGRES, and run without -short, to run the demo binary on PostgreSQL")
	}
	schema := "keysdemo_usage_" + strings.ToLower(rand.Text()[:10])
	t.Cleanup(func() {
		if pool, err := pgxpool.New(context.Background(), dsn); err == nil {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			pool.Close()
		}
	})
	pepper := make([]byte, 32)
	_, _ = rand.Read(pepper)
	t.Setenv("KEYSDEMO_PEPPER", base64.StdEncoding.EncodeToString(pepper))
	args := []string{"--store", "postgres", "--dsn", dsn, "--schema", schema}
	p := startBinary(t, buildDemo(t), args...)
	cmd, key, addr := p.cmd, p.key, p.addr
	const pings = 150
	for i := range pings {
		if resp, body := call(t, "GET", "http://"+addr+"/v1/ping", key, ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("ping %d: %d %v", i, resp.StatusCode, body)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not exit after SIGTERM")
	}
	base, _, _, _ := startDemo(t, args...)
	resp, body := call(t, "GET", base+"/v1/developers/usage", key, "")
	if resp.StatusCode != 200 {
		t.Fatalf("usage: %d %v", resp.StatusCode, body)
	}
	ping, _ := body["by_api"].(map[string]any)["GET /v1/ping"].(map[string]any)
	if body["total_requests"] != float64(pings) || ping["successful"] != float64(pings) {
		t.Fatalf("after SIGTERM the database holds %v, want %d pings", body, pings)
	}
}
