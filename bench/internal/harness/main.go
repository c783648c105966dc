// Package harness runs the benchmark scenarios: it starts every server as
// its own process, drives it with the same load-generator workers, repeats
// the runs and prints a markdown table of medians with ratios to the best
// peer and to the ceiling.
package harness

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vortechron/go-ws/bench/internal/servers"
)

// peers are the libraries ws is compared with; ceiling is the bound.
var peers = []string{"melody", "centrifuge", "gorilla"}

// Main runs the harness. args excludes the program name.
func Main(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	scenario := fs.String("scenario", "all", "core (idle memory, burst, steady, slow consumers, every server), scale (ws: one node, -scale-conns), cluster (ws: 3 nodes over Redis, -cluster-conns), crossnode (ws: publish on A, -cross-conns subscribers on B, vs one node), or all of those; "+
		"the production shapes (issue 15): tls (burst over wss), compression (1 KB chat message, permessage-deflate), channels (many channels, 3 nodes over Redis), storm (reconnect storm), or production (those four); "+
		"pusher (issue 12: burst to Pusher-protocol subscribers beside native ones)")
	serverList := fs.String("servers", "", "comma-separated servers for the core scenarios (default: all of "+strings.Join(servers.Names(), ",")+")")
	runs := fs.Int("runs", 3, "repetitions of the core scenarios; the table shows medians")
	var cfg Config
	fs.IntVar(&cfg.Conns, "conns", 5000, "subscribers in the core scenarios")
	fs.IntVar(&cfg.BurstN, "burst-n", 200, "messages in the burst")
	fs.IntVar(&cfg.Size, "size", 100, "payload bytes")
	fs.IntVar(&cfg.SteadyN, "steady-n", 100, "messages in the steady run")
	fs.Float64Var(&cfg.SteadyRate, "steady-rate", 10, "messages per second in the steady run")
	fs.IntVar(&cfg.SlowConns, "slow-conns", 1000, "subscribers in the slow-consumer run")
	fs.IntVar(&cfg.SlowN, "slow-n", 1200, "messages in the slow-consumer run (more than ws's 1024-frame send queue)")
	fs.Float64Var(&cfg.SlowRate, "slow-rate", 150, "messages per second in the slow-consumer run")
	fs.Float64Var(&cfg.SlowFrac, "slow-frac", 0.01, "share of subscribers that do not read in the slow-consumer run (0 skips it)")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "wait after subscribing before measuring idle memory")
	slowRuns := fs.Int("slow-runs", 1, "runs (from the first) that include the slow-consumer scenario")
	scaleConns := fs.Int("scale-conns", 18000, "subscribers on one ws node in the scale scenario")
	clusterConns := fs.Int("cluster-conns", 50000, "subscribers over three ws nodes in the cluster scenario")
	crossConns := fs.Int("cross-conns", 2000, "subscribers in the cross-node scenario")
	fs.IntVar(&cfg.ScaleN, "scale-n", 50, "messages in the scale and cluster bursts")
	scaleServers := fs.String("scale-servers", "ws", "servers run in the scale scenario")
	redis := fs.String("redis", "127.0.0.1:6379", "Redis for the cluster scenario")
	out := fs.String("out", "", "also write the markdown report to this file")
	var pc prodConfig
	pc.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := servers.Names()
	if *serverList != "" {
		names = strings.Split(*serverList, ",")
	}
	for _, n := range names {
		if !slices.Contains(servers.Names(), n) {
			return fmt.Errorf("unknown server %q (have %v)", n, servers.Names())
		}
	}
	names = order(names)
	rep := &report{cfg: cfg, runs: *runs, slowRuns: min(*slowRuns, *runs), args: args}
	has := func(s string) bool { return *scenario == "all" || *scenario == s }
	prod := func(s string) bool {
		// pusher (issue 12) runs only when asked for by name.
		return (*scenario == "production" && s != "pusher") || *scenario == s
	}

	if has("core") {
		for run := 1; run <= *runs; run++ {
			for _, name := range names {
				logf("run %d/%d: %s", run, *runs, name)
				rc := cfg
				if run > *slowRuns {
					rc.SlowFrac = 0
				}
				s, err := coreSession(name, rc)
				if err != nil {
					logf("  %s: %v", name, err)
					rep.errors = append(rep.errors, fmt.Sprintf("run %d, %s: %v", run, name, err))
				}
				if s != nil {
					rep.core = append(rep.core, s)
				}
			}
		}
	}
	if has("scale") {
		for _, name := range order(strings.Split(*scaleServers, ",")) {
			if !slices.Contains(servers.Names(), name) {
				continue
			}
			logf("scale: %s, %d subscribers on one node", name, *scaleConns)
			s, err := scaleSession(name, *scaleConns, cfg)
			if err != nil {
				logf("  %s: %v", name, err)
				rep.errors = append(rep.errors, fmt.Sprintf("scale %s: %v", name, err))
			}
			if s != nil {
				rep.scale = append(rep.scale, s)
			}
		}
	}
	if has("cluster") && slices.Contains(servers.Names(), "ws") {
		logf("cluster: ws, %d subscribers over 3 nodes, Redis %s", *clusterConns, *redis)
		s, err := clusterSession(*clusterConns, *redis, cfg)
		if err != nil {
			logf("  cluster: %v", err)
			rep.errors = append(rep.errors, fmt.Sprintf("cluster: %v", err))
		}
		if s != nil {
			rep.cluster = s
		}
	}
	if has("crossnode") && slices.Contains(servers.Names(), "ws") {
		logf("cross-node: ws, %d subscribers, Redis %s", *crossConns, *redis)
		c, err := crossSession(*crossConns, *redis, cfg)
		if err != nil {
			logf("  cross-node: %v", err)
			rep.errors = append(rep.errors, fmt.Sprintf("cross-node: %v", err))
		}
		rep.cross = c
	}
	if err := runProduction(&pc, prod, *serverList, *runs, rep); err != nil {
		return err
	}
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if *out != "" {
		return os.WriteFile(*out, []byte(md), 0o644)
	}
	return nil
}

// order puts servers in table order: peers, ws, ceiling, then the rest.
func order(names []string) []string {
	rank := func(n string) int {
		if i := slices.Index(append(slices.Clone(peers), "ws", "ceiling"), n); i >= 0 {
			return i
		}
		return 100
	}
	out := slices.Clone(names)
	slices.SortStableFunc(out, func(a, b string) int { return rank(a) - rank(b) })
	return out
}
