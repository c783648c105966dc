package harness

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// crossResult compares one burst to subscribers on the publishing node
// with the same burst to subscribers on another node through Redis.
type crossResult struct {
	conns, n        int
	single, cross   *Round
	publishes       int64 // PUBLISH commands Redis served during the cross burst
	publishesPerMsg float64
}

// crossSession measures the same burst twice with conns subscribers:
// on one in-memory ws node (the publisher's own clients), then with two
// ws nodes sharing Redis, every subscriber on node B and every
// publication made on node A. It counts the PUBLISH commands Redis
// served meanwhile, which must be one per message.
func crossSession(conns int, redisAddr string, cfg Config) (*crossResult, error) {
	res := &crossResult{conns: conns, n: cfg.BurstN}
	single, err := startServer("ws", newAddr())
	if err != nil {
		return nil, err
	}
	f, err := startFleet("ws", "C", 0, target{"ws://" + single.addr + "/ws", conns})
	if err != nil {
		single.stop()
		return nil, err
	}
	res.single, err = publishRoundIdle(f, single, "C", cfg.BurstN, cfg.Size, 0, 10*time.Second)
	f.stop()
	single.stop()
	if err != nil {
		return nil, fmt.Errorf("single node: %w", err)
	}
	logf("  cross-node: single node %s", res.single)

	prefix := fmt.Sprintf("wsbench:%d:", time.Now().UnixNano())
	a, err := startServer("ws", newAddr(), "-redis", redisAddr, "-redis-prefix", prefix)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	b, err := startServer("ws", newAddr(), "-redis", redisAddr, "-redis-prefix", prefix)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	f, err = startFleet("ws", "C", 0, target{"ws://" + b.addr + "/ws", conns})
	if err != nil {
		return nil, err
	}
	defer f.stop()
	rc := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rc.Close()
	before, err := publishCalls(rc)
	if err != nil {
		return nil, err
	}
	res.cross, err = publishRoundIdle(f, a, "C", cfg.BurstN, cfg.Size, 0, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("two nodes: %w", err)
	}
	after, err := publishCalls(rc)
	if err != nil {
		return nil, err
	}
	res.publishes = after - before
	res.publishesPerMsg = float64(res.publishes) / float64(cfg.BurstN)
	logf("  cross-node: publish on A, subscribers on B %s; %d PUBLISH for %d messages", res.cross, res.publishes, cfg.BurstN)
	return res, nil
}

// publishCalls reads how many PUBLISH commands Redis has served.
func publishCalls(rc *redis.Client) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := rc.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_publish:calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, nil // no PUBLISH served yet
}

func (c *crossResult) markdown(b *strings.Builder, size int) {
	fmt.Fprintf(b, "Cross-node (one run): %d subscribers, burst of %d × %d B; first all on the publishing node (in memory), then all on node B while node A publishes through Redis.\n\n", c.conns, c.n, size)
	b.WriteString("| setup | burst deliveries/s | vs single node | p50 / p99 ms | missing / out-of-order | PUBLISH per message |\n|---|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(b, "| one node | %s | 1.00× | %s / %s | %d / %d | – |\n", kdel(c.single.Rate), ms(c.single.P50), ms(c.single.P99), c.single.missing(), c.single.ooo())
	fmt.Fprintf(b, "| A → Redis → B | %s | %.2f× | %s / %s | %d / %d | %.2f |\n\n", kdel(c.cross.Rate), c.cross.Rate/c.single.Rate, ms(c.cross.P50), ms(c.cross.P99), c.cross.missing(), c.cross.ooo(), c.publishesPerMsg)
}
