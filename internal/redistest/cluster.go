package redistest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	root := tb.TempDir()
	c := &Cluster{}
	for i := range 3 {
		dir := filepath.Join(root, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
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
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range c.Addrs {
		for !clusterOK(ctx, addr) {
			if time.Now().After(deadline) {
				tb.Fatalf("cluster node %s not ok within 20s", addr)
			}
			time.Sleep(50 * time.Millisecond) // polling an external process; nothing to wait on
		}
	}
	return c
}

func clusterOK(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	info, err := c.ClusterInfo(ctx).Result()
	return err == nil && strings.Contains(info, "cluster_state:ok")
}
