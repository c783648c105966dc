package harness

import (
	"errors"
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
	return nil, errors.New("the ws server is not built yet (waiting for ServeWS on main)")
}
