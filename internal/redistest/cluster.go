package redistest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a 3-master Redis Cluster owned by one test.
type Cluster struct {
	// Servers are the three masters.
	Servers []*Server
	// Addrs are their addresses, for RedisOptions.Addrs.
	Addrs []string
}

// StartCluster starts three cluster-enabled redis-servers on spare ports,
// joins them with `redis-cli --cluster create` (no replicas), waits (at
// most 20s) until every node reports cluster_state:ok, and kills them
// when tb ends. It skips tb if redis-server or redis-cli is missing.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		skip(tb, "redis-cli not installed (apt-get install redis-tools); skipping a Redis Cluster test")
	}
	c := &Cluster{}
	for _, dir := range subdirs(tb, 3) {
		s := startServer(tb, dir, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		c.Servers = append(c.Servers, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	for _, addr := range c.Addrs {
		waitFor(wctx, tb, "cluster node "+addr+" to report cluster_state:ok", func() bool { return clusterOK(wctx, addr) })
	}
	return c
}

func clusterOK(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	info, err := c.ClusterInfo(ctx).Result()
	return err == nil && strings.Contains(info, "cluster_state:ok")
}

// MoveSlot moves hash slot slot to the master Servers[to] the way a
// resharding does (CLUSTER SETSLOT IMPORTING and MIGRATING, MIGRATE of
// the slot's keys, then SETSLOT NODE on every master) and returns once
// every master names Servers[to] as the slot's owner. The old owner then
// drops the slot's shard-channel subscriptions, telling each subscriber
// with an sunsubscribe reply. It is a no-op when Servers[to] owns the
// slot already.
func (c *Cluster) MoveSlot(tb testing.TB, slot int, to int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	clients, ids := c.masters(ctx, tb)
	from := c.owner(ctx, tb, clients[to], ids, slot)
	if from == to {
		return
	}
	must := func(i int, args ...any) {
		if err := clients[i].Do(ctx, args...).Err(); err != nil {
			tb.Fatalf("%v on %s: %v", args, c.Addrs[i], err)
		}
	}
	must(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from])
	must(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to])
	host, port, _ := strings.Cut(c.Addrs[to], ":")
	for {
		keys, err := clients[from].ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			tb.Fatalf("CLUSTER GETKEYSINSLOT %d: %v", slot, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(from, args...)
	}
	// The new owner first, then the old one (which drops the slot's
	// subscriptions), then the rest: the order redis-cli uses.
	must(to, "CLUSTER", "SETSLOT", slot, "NODE", ids[to])
	must(from, "CLUSTER", "SETSLOT", slot, "NODE", ids[to])
	for i := range clients {
		if i != to && i != from {
			must(i, "CLUSTER", "SETSLOT", slot, "NODE", ids[to])
		}
	}
	for i := range clients {
		if got := c.owner(ctx, tb, clients[i], ids, slot); got != to {
			tb.Fatalf("after the move %s names %s as owner of slot %d, want %s", c.Addrs[i], c.Addrs[got], slot, c.Addrs[to])
		}
	}
}

// Owner returns the index in Servers of the master that owns slot.
func (c *Cluster) Owner(tb testing.TB, slot int) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clients, ids := c.masters(ctx, tb)
	return c.owner(ctx, tb, clients[0], ids, slot)
}

// masters returns a client of each master, closed when tb ends, and its
// node ID.
func (c *Cluster) masters(ctx context.Context, tb testing.TB) ([]*redis.Client, []string) {
	tb.Helper()
	clients := make([]*redis.Client, len(c.Addrs))
	ids := make([]string, len(c.Addrs))
	for i, addr := range c.Addrs {
		clients[i] = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		tb.Cleanup(func() { _ = clients[i].Close() })
		id, err := clients[i].Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			tb.Fatalf("CLUSTER MYID on %s: %v", addr, err)
		}
		ids[i] = id
	}
	return clients, ids
}

// Slot returns the hash slot of key.
func (c *Cluster) Slot(tb testing.TB, key string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clients, _ := c.masters(ctx, tb)
	n, err := clients[0].ClusterKeySlot(ctx, key).Result()
	if err != nil {
		tb.Fatalf("CLUSTER KEYSLOT %q: %v", key, err)
	}
	return int(n)
}

// owner returns the index of the master that client's node names as the
// owner of slot.
func (c *Cluster) owner(ctx context.Context, tb testing.TB, client *redis.Client, ids []string, slot int) int {
	tb.Helper()
	slots, err := client.ClusterSlots(ctx).Result()
	if err != nil {
		tb.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, s := range slots {
		if slot < s.Start || slot > s.End || len(s.Nodes) == 0 {
			continue
		}
		for i, id := range ids {
			if s.Nodes[0].ID == id {
				return i
			}
		}
		tb.Fatalf("slot %d owned by unknown node %s", slot, s.Nodes[0].ID)
	}
	tb.Fatalf("slot %d not served", slot)
	return -1
}
