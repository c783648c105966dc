package ws

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"
)

// Child processes for the crash tests. The parent test runs its own test
// binary again with these variables set; TestMain sees childRoleEnv and
// calls runChild instead of running tests, so a child is never reported
// as a test (not even a skipped one).
const (
	childRoleEnv   = "WS_TEST_CHILD"        // which child to be
	childPrefixEnv = "WS_TEST_CHILD_PREFIX" // the Redis key prefix to use
	childRedisEnv  = "WS_TEST_CHILD_REDIS"  // the Redis address to use

	// childStorageCrash holds presence in a RedisStorage and waits to be
	// killed (TestRedisStorageCrashIsReaped).
	childStorageCrash = "storage-crash"
	// childCrashedNode serves a hub on Redis and waits to be killed
	// (TestRedisCrashedNodeLeaves).
	childCrashedNode = "crashed-node"
	// childOccupancyNode serves a hub on Redis that records channel
	// occupancy and waits to be killed (cluster_crash_test.go).
	childOccupancyNode = "occupancy-node"
	// childHistoryNode serves a hub on Redis with history on history-*
	// channels and waits to be killed (TestHistoryFailover).
	childHistoryNode = "history-node"
)

// childLifetime bounds a child that is, unexpectedly, never killed.
const childLifetime = time.Minute

func runChild(role string) error {
	opts := RedisOptions{
		Addrs:     []string{os.Getenv(childRedisEnv)},
		KeyPrefix: os.Getenv(childPrefixEnv),
		NodeTTL:   time.Second,
	}
	switch role {
	case childStorageCrash:
		return storageCrashChild(opts)
	case childCrashedNode:
		opts.ReapInterval = 100 * time.Millisecond
		return crashedNodeChild(opts)
	case childOccupancyNode:
		opts.ReapInterval = 100 * time.Millisecond
		return occupancyNodeChild(opts)
	case childHistoryNode:
		return historyNodeChild(opts)
	}
	return fmt.Errorf("unknown child role %q", role)
}

// storageCrashChild adds crashConns to a RedisStorage, prints READY and
// its node ID, and waits to be killed.
func storageCrashChild(opts RedisOptions) error {
	s, err := NewRedisStorageWithOptions(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range crashConns {
		if _, _, err := s.AddPresence(ctx, c); err != nil {
			return err
		}
	}
	fmt.Println("READY", s.NodeID())
	time.Sleep(childLifetime) // killed long before
	return nil
}

// crashedNodeChild serves a hub on Redis (users from X-User; every
// private and presence channel allowed), prints its URL and waits to be
// killed.
func crashedNodeChild(opts RedisOptions) error {
	return serveNodeChild(opts, Config{}, &Options{
		GetUserID:   func(r *http.Request) string { return r.Header.Get("X-User") },
		AuthHandler: func(string, string) bool { return true },
	})
}

// serveNodeChild serves a hub with cfg and options on the Redis of opts,
// prints "URL <url>" after whatever announce prints, and waits to be
// killed (for childLifetime at most).
func serveNodeChild(opts RedisOptions, cfg Config, options *Options, announce ...func(*RedisStorage)) error {
	broker, err := NewRedisBrokerWithOptions(opts)
	if err != nil {
		return err
	}
	storage, err := NewRedisStorageWithOptions(opts)
	if err != nil {
		return err
	}
	hub := NewHub(context.Background(), broker, storage, cfg)
	go hub.Run()
	srv := httptest.NewServer(Handler(hub, options))
	for _, a := range announce {
		a(storage)
	}
	fmt.Println("URL", "ws"+strings.TrimPrefix(srv.URL, "http"))
	time.Sleep(childLifetime) // killed long before
	return nil
}
