// Package redistest gives tests a Redis to talk to: the shared server at
// WS_REDIS_ADDR (default 127.0.0.1:6379) with a key prefix per test, or
// redis-server processes of their own (single servers that can be killed
// and restarted, and 3-node clusters) on spare ports in 7000-7999, which
// are stopped in t.Cleanup.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vortechron/go-ws/internal/testenv"

	"github.com/redis/go-redis/v9"
)

// DefaultAddr is the shared Redis used when WS_REDIS_ADDR is unset.
const DefaultAddr = "127.0.0.1:6379"

// runID tells apart the keys of concurrent test processes.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// Addr returns the shared Redis address, or skips tb if nothing answers
// PING there within a second (fails it instead when WS_REQUIRE_REDIS=1).
func Addr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv("WS_REDIS_ADDR")
	if addr == "" {
		addr = DefaultAddr
	}
	if err := ping(&redis.Options{Addr: addr}, time.Second); err != nil {
		skip(tb, "redis not reachable at %s (%v); start one with `redis-server --port 6379 --save '' --appendonly no` or run `make test`", addr, err)
	}
	return addr
}

// Prefix returns a key prefix that belongs to tb alone:
// "wstest:<run>:<test name>:<n>:". Calls with the same tb return the same
// prefix, so two "nodes" made for one test share their keys; each run of
// a test (go test -count) gets its own n, so it never meets the keys an
// earlier run left to expire. It holds no '{' or '}', so it is valid as a
// RedisOptions.KeyPrefix.
func Prefix(tb testing.TB) string {
	prefixes.mu.Lock()
	defer prefixes.mu.Unlock()
	if p, ok := prefixes.of[tb]; ok {
		return p
	}
	prefixes.n++
	name := strings.NewReplacer("{", "(", "}", ")", " ", "_").Replace(tb.Name())
	p := "wstest:" + runID + ":" + name + ":" + strconv.Itoa(prefixes.n) + ":"
	prefixes.of[tb] = p
	tb.Cleanup(func() {
		prefixes.mu.Lock()
		delete(prefixes.of, tb)
		prefixes.mu.Unlock()
	})
	return p
}

// prefixes are the prefixes Prefix gave the tests still running.
var prefixes = struct {
	mu sync.Mutex
	of map[testing.TB]string
	n  int
}{of: make(map[testing.TB]string)}

// CleanupKeys deletes, when tb ends, every key under prefix on the server
// at addr. It uses SCAN, which is fine for tests and nothing else.
func CleanupKeys(tb testing.TB, addr, prefix string) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		glob := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`).Replace(prefix)
		iter := c.Scan(ctx, 0, glob+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
}

// skip skips tb, or fails it when WS_REQUIRE_REDIS=1 says Redis must be
// there (as `make test` and CI do).
func skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	testenv.Missing(tb, testenv.RequireRedis, format, args...)
}

// ping sends one PING with the client options o (their address, and TLS
// and password where the server wants them), allowing timeout.
func ping(o *redis.Options, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	o.DialTimeout, o.MaxRetries = timeout, -1
	c := redis.NewClient(o)
	defer c.Close()
	return c.Ping(ctx).Err()
}
