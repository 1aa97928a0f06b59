package main

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// TestSeveralInstances runs two demo servers on one PostgreSQL schema and
// one Redis, as the README's "Running several instances" does: a key
// created on A works on B, a key revoked on B is refused by A within a
// second, and a rate limit holds across both.
func TestSeveralInstances(t *testing.T) {
	dsn, redisAddr := os.Getenv("KEYS_TEST_POSTGRES"), os.Getenv("KEYS_TEST_REDIS")
	if dsn == "" || redisAddr == "" {
		t.Skip("set KEYS_TEST_POSTGRES and KEYS_TEST_REDIS to run the several-instances test")
	}
	schema := "keysdemo_test_" + strings.ToLower(rand.Text()[:10])
	t.Cleanup(func() {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err == nil {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			pool.Close()
		}
	})
	prefix := schema + ":" // this run's own Redis keys (--redis-prefix)
	args := []string{"--store", "postgres", "--dsn", dsn, "--schema", schema, "--redis", redisAddr, "--redis-prefix", prefix}
	baseA, bootA, _, _ := startDemo(t, args...)
	baseB, bootB, _, _ := startDemo(t, args...)

	resp, created := call(t, "POST", baseA+"/v1/developers/keys", bootA, `{"name":"shared","environment":"test","permissions":["identity:read"],"rate_limit":3}`)
	if resp.StatusCode != 201 {
		t.Fatalf("create on A: %d %v", resp.StatusCode, created)
	}
	key, id := created["key"].(string), created["id"].(string)
	// Three requests in total pass, whichever instance serves them.
	passed := 0
	for _, base := range []string{baseB, baseA, baseB, baseA, baseB} {
		resp, _ := call(t, "GET", base+"/v1/ping", key, "")
		switch resp.StatusCode {
		case 200:
			passed++
		case 429:
		default:
			t.Fatalf("ping: %d", resp.StatusCode)
		}
	}
	if passed != 3 {
		t.Fatalf("%d requests passed across two instances; the limit is 3", passed)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if held, err := rdb.Keys(context.Background(), prefix+"*").Result(); err != nil || len(held) == 0 {
		t.Fatalf("no limiter state under --redis-prefix %s: %v %v", prefix, held, err)
	}
	// B's bootstrap key manages A's keys: same account, same database.
	if resp, _ := call(t, "DELETE", baseB+"/v1/developers/keys/"+id, bootB, ""); resp.StatusCode != 200 {
		t.Fatalf("revoke on B: %d", resp.StatusCode)
	}
	revoked := time.Now()
	for {
		resp, body := call(t, "GET", baseA+"/v1/whoami", key, "")
		if resp.StatusCode == http.StatusUnauthorized {
			if e, _ := body["error"].(map[string]any); e["code"] != "key_revoked" {
				t.Fatalf("A refused it, but with %v", body)
			}
			break
		}
		if time.Since(revoked) > time.Second {
			t.Fatalf("A still accepts a key revoked on B after %v", time.Since(revoked))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
