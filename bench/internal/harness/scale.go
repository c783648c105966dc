package harness

import (
	"fmt"
	"time"
)

// scaleSession runs conns subscribers on one node (spread over several
// worker processes) and measures idle memory and one burst.
func scaleSession(name string, conns int, cfg Config) (*Sample, error) {
	s := &Sample{Server: name}
	srv, err := startServer(name, newAddr())
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	time.Sleep(300 * time.Millisecond)
	rss0, _ := srv.rss(true)
	f, err := startFleet(protoOf(name), "C", 0, target{"ws://" + srv.addr + "/ws", conns})
	if err != nil {
		return nil, err
	}
	defer f.stop()
	s.Conns = f.conns
	time.Sleep(cfg.Settle)
	rss1, _ := srv.rss(true)
	s.IdleRSSGC = float64(rss1-rss0) / float64(max(f.conns, 1))
	if s.Burst, err = publishRoundIdle(f, srv, "C", cfg.ScaleN, cfg.Size, 0, 10*time.Second); err != nil {
		return s, fmt.Errorf("burst: %w", err)
	}
	logf("  %s: %d subscribed, %.1f KB/conn after GC; burst %s", name, f.conns, s.IdleRSSGC/1024, s.Burst)
	return s, nil
}

// clusterSession runs three ws nodes sharing Redis, conns subscribers
// spread evenly over them, and publishes on the first node.
func clusterSession(conns int, redis string, cfg Config) (*Sample, error) {
	s := &Sample{Server: "ws"}
	prefix := fmt.Sprintf("wsbench:%d:", time.Now().UnixNano())
	var nodes []*serverProc
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	var targets []target
	var rss0 int64
	for i := range 3 {
		n, err := startServer("ws", newAddr(), "-redis", redis, "-redis-prefix", prefix)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
		r, _ := n.rss(true)
		rss0 += r
		targets = append(targets, target{"ws://" + n.addr + "/ws", conns/3 + b2i(i < conns%3)})
	}
	f, err := startFleet("ws", "C", 0, targets...)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	s.Conns = f.conns
	time.Sleep(cfg.Settle)
	var rss1 int64
	for _, n := range nodes {
		r, _ := n.rss(true)
		rss1 += r
	}
	s.IdleRSSGC = float64(rss1-rss0) / float64(max(f.conns, 1))
	if s.Burst, err = publishRoundIdle(f, nodes[0], "C", cfg.ScaleN, cfg.Size, 0, 10*time.Second); err != nil {
		return s, fmt.Errorf("burst: %w", err)
	}
	logf("  cluster: %d subscribed, %.1f KB/conn after GC; burst %s", f.conns, s.IdleRSSGC/1024, s.Burst)
	time.Sleep(time.Second)
	if s.Steady, err = publishRoundIdle(f, nodes[0], "C", cfg.SteadyN, cfg.Size, cfg.SteadyRate, 10*time.Second); err != nil {
		return s, fmt.Errorf("steady: %w", err)
	}
	logf("  cluster: steady %s", s.Steady)
	return s, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
