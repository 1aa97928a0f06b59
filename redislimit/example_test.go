package redislimit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/txcloud/keys"
	"github.com/txcloud/keys/memstore"
	"github.com/txcloud/keys/redislimit"
)

// shareLimits is the example's code: every instance limits through one
// Redis, so a key's rate limit holds across them. TestExample runs it
// when KEYS_TEST_REDIS is set.
func shareLimits(ctx context.Context, addr, prefix string) (passed, refused int, err error) {
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	l, err := redislimit.New(client, redislimit.WithPrefix(prefix))
	if err != nil {
		return 0, 0, err
	}
	defer l.Close(ctx) // stops renewing the leases of requests in flight
	m, err := keys.New(memstore.New(), keys.WithLimiter(l))
	if err != nil {
		return 0, 0, err
	}
	defer m.Close(ctx)
	three := 3
	k, err := m.Create(ctx, keys.APIKeyCreate{Name: "svc", Environment: keys.Live, AccountID: "acct_1", RateLimit: &three})
	if err != nil {
		return 0, 0, err
	}
	for range 5 {
		switch _, err := m.Verify(ctx, string(k.Key)); {
		case err == nil:
			passed++
		case errors.Is(err, keys.ErrRateLimited):
			refused++
		default:
			return passed, refused, err
		}
	}
	return passed, refused, nil
}

// A rate limit shared by every instance, in Redis. (It needs a server:
// TestExample runs this code when KEYS_TEST_REDIS is set.)
func Example() {
	passed, refused, err := shareLimits(context.Background(), os.Getenv("REDIS_ADDR"), "myapp:keys:rl:")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(passed, "passed,", refused, "refused")
}

func TestExample(t *testing.T) {
	a := os.Getenv("KEYS_TEST_REDIS")
	if a == "" {
		t.Skip("set KEYS_TEST_REDIS (127.0.0.1:6379) to run the example's code")
	}
	passed, refused, err := shareLimits(context.Background(), a, fmt.Sprintf("keys-example:%d:", os.Getpid()))
	if err != nil || passed != 3 || refused != 2 {
		t.Fatalf("the example's code: %d passed, %d refused, %v", passed, refused, err)
	}
}
