package harness

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vortechron/go-ws/bench/internal/servers"
)

// prodConfig holds the flags of the production-shape scenarios (issue 15).
type prodConfig struct {
	tlsConns, tlsN, tlsSize int

	pusherConns, pusherN, pusherSize int

	compConns, compN, compLevel int
	compInflateOnce             bool

	channels      chanConfig
	chanServers   string
	stormServers  string
	storm         stormConfig
	redisServer   string
	cpuprofileDir string
}

func (pc *prodConfig) register(fs *flag.FlagSet) {
	fs.IntVar(&pc.tlsConns, "tls-conns", 5000, "tls: subscribers")
	fs.IntVar(&pc.tlsN, "tls-n", 200, "tls: messages in the burst")
	fs.IntVar(&pc.tlsSize, "tls-size", 100, "tls: payload bytes")
	fs.IntVar(&pc.pusherConns, "pusher-conns", 5000, "pusher: subscribers")
	fs.IntVar(&pc.pusherN, "pusher-n", 200, "pusher: events in the burst")
	fs.IntVar(&pc.pusherSize, "pusher-size", 100, "pusher: payload bytes")
	fs.IntVar(&pc.compConns, "compress-conns", 2000, "compression: subscribers")
	fs.IntVar(&pc.compN, "compress-n", 200, "compression: messages in the burst")
	fs.IntVar(&pc.compLevel, "compress-level", 1, "compression: deflate level where compression is on")
	fs.BoolVar(&pc.compInflateOnce, "compress-inflate-once", false, "compression: the load generator inflates each distinct message once per worker process instead of once per delivery (exact with server_no_context_takeover; see loadgen's inflatingConn), so that the clients' inflating does not set the rate")
	fs.IntVar(&pc.channels.channels, "channels", 5000, "channels: channels (two subscribers each, on nodes 1 and 2)")
	fs.IntVar(&pc.channels.goroutines, "channels-goroutines", 16, "channels: publishing goroutines on node 3")
	fs.IntVar(&pc.channels.steadyPer, "channels-steady-per", 10, "channels: publications per channel in the steady phase")
	fs.Float64Var(&pc.channels.steadyRate, "channels-steady-rate", 5000, "channels: total publications per second in the steady phase")
	fs.IntVar(&pc.channels.maxPer, "channels-max-per", 20, "channels: publications per channel in the max-rate phase")
	fs.IntVar(&pc.channels.size, "channels-size", 100, "channels: payload bytes")
	fs.StringVar(&pc.channels.benchBin, "redis-benchmark", "redis-benchmark", "channels: redis-benchmark binary for Redis's own ceiling")
	fs.IntVar(&pc.channels.benchConns, "redis-bench-conns", 16, "channels: redis-benchmark -c (publishing connections)")
	fs.IntVar(&pc.channels.benchPipe, "redis-bench-pipeline", 16, "channels: redis-benchmark -P (pipelined commands per connection)")
	fs.StringVar(&pc.chanServers, "channels-servers", "centrifuge,ws,redis", "channels: servers (redis = Redis alone with redis-benchmark; ws-history = ws with history on every channel)")
	fs.IntVar(&pc.channels.history, "channels-history", 10, "channels: publications each channel keeps in the ws-history row")
	fs.IntVar(&pc.storm.conns, "storm-conns", 18000, "storm: users (one connection each) on one node")
	fs.IntVar(&pc.storm.room, "storm-room", 10, "storm: users per presence channel")
	fs.IntVar(&pc.storm.parallel, "storm-parallel", 256, "storm: dials in flight per worker process")
	fs.DurationVar(&pc.storm.timeout, "storm-timeout", 90*time.Second, "storm: longest wait for everyone to be subscribed and settled")
	fs.DurationVar(&pc.storm.quiet, "storm-quiet", time.Second, "storm: settled also means no frame for this long")
	fs.StringVar(&pc.stormServers, "storm-servers", "melody,centrifuge,gorilla,ws,ceiling", "storm: servers; ws-memory and centrifuge-memory run them on their in-memory backends")
	fs.StringVar(&pc.redisServer, "redis-server", "redis-server", "channels, storm: the redis-server binary the harness starts on a spare port")
	fs.StringVar(&pc.cpuprofileDir, "cpuprofile-dir", "", "write a CPU profile of every ws server process of the production scenarios into this directory")
}

// prodResults are the production-shape scenarios' samples.
type prodResults struct {
	cfg      *prodConfig
	tls      []*burstSample
	tlsNames []string
	comp     []*burstSample
	pusher   []*burstSample
	channels []*chanSample
	storm    []*stormSample
}

// runProduction runs the production scenarios that want selects.
func runProduction(pc *prodConfig, want func(string) bool, serverList string, runs int, rep *report) error {
	if !want("tls") && !want("compression") && !want("channels") && !want("storm") && !want("pusher") {
		return nil
	}
	res := &prodResults{cfg: pc}
	rep.prod = res
	prof := profiler{dir: pc.cpuprofileDir}
	if prof.dir != "" {
		// The server processes create their profiles but not the directory.
		if err := os.MkdirAll(prof.dir, 0o755); err != nil {
			return fmt.Errorf("-cpuprofile-dir: %w", err)
		}
	}
	if want("tls") {
		names := tlsServers
		if serverList != "" {
			names = order(strings.Split(serverList, ","))
		}
		res.tlsNames = names
		var errs []string
		res.tls, errs = runTLS(names, runs, pc.tlsConns, pc.tlsN, pc.tlsSize, prof)
		rep.errors = append(rep.errors, errs...)
	}
	if want("pusher") {
		var errs []string
		res.pusher, errs = runPusher(runs, pc.pusherConns, pc.pusherN, pc.pusherSize, prof)
		rep.errors = append(rep.errors, errs...)
	}
	if want("compression") {
		var errs []string
		res.comp, errs = runCompression(runs, pc.compConns, pc.compN, pc.compLevel, pc.compInflateOnce, prof)
		rep.errors = append(rep.errors, errs...)
	}
	if !want("channels") && !want("storm") {
		return nil
	}
	rs, err := startRedis(pc.redisServer)
	if err != nil {
		return fmt.Errorf("channels/storm need their own Redis: %w", err)
	}
	defer rs.stop()
	logf("redis-server on %s for the channels and storm scenarios", rs.addr)
	if want("channels") {
		names, err := scenarioServers(pc.chanServers, "redis", "ws"+historySuffix)
		if err != nil {
			return err
		}
		var errs []string
		res.channels, errs = runChannels(names, runs, pc.channels, rs, prof)
		rep.errors = append(rep.errors, errs...)
	}
	if want("storm") {
		names, err := scenarioServers(pc.stormServers, "ws-memory", "centrifuge-memory")
		if err != nil {
			return err
		}
		var errs []string
		res.storm, errs = runStorm(names, runs, pc.storm, rs, prof)
		rep.errors = append(rep.errors, errs...)
	}
	return nil
}

// scenarioServers parses a comma-separated server list; extra names that
// are not servers (e.g. "redis") are allowed.
func scenarioServers(list string, extra ...string) ([]string, error) {
	names := strings.Split(list, ",")
	for _, n := range names {
		if !slices.Contains(servers.Names(), n) && !slices.Contains(extra, n) {
			return nil, fmt.Errorf("unknown server %q (have %v)", n, append(servers.Names(), extra...))
		}
	}
	return names, nil
}

func (p *prodResults) markdown(b *strings.Builder, runs int) {
	c := p.cfg
	if len(p.tls) > 0 {
		tlsMarkdown(b, p.tls, runs, c.tlsConns, c.tlsN, c.tlsSize)
	}
	if len(p.pusher) > 0 {
		pusherMarkdown(b, p.pusher, runs, c.pusherConns, c.pusherN, c.pusherSize)
	}
	if len(p.comp) > 0 {
		compressionMarkdown(b, p.comp, runs, c.compConns, c.compN, c.compLevel, c.compInflateOnce)
	}
	if len(p.channels) > 0 {
		channelsMarkdown(b, p.channels, runs, c.channels)
	}
	if len(p.storm) > 0 {
		stormMarkdown(b, p.storm, runs, c.storm)
	}
}
