package harness

import (
	"fmt"
	"math"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// chanConfig is the shape of the many-channels scenario.
type chanConfig struct {
	channels   int     // channels, each with one subscriber on node 1 and one on node 2
	goroutines int     // publishing goroutines on node 3
	steadyPer  int     // publications per channel in the steady phase
	steadyRate float64 // total publications per second in the steady phase
	maxPer     int     // publications per channel in the max-rate phase
	size       int     // payload bytes
	benchBin   string  // redis-benchmark
	benchConns int     // redis-benchmark -c
	benchPipe  int     // redis-benchmark -P
	history    int     // the ws-history row: publications each channel keeps
}

// historySuffix marks the channels row of ws with channel history on every
// channel ("ws-history"), which sets the cost of history beside ws
// without it in the same shape.
const historySuffix = "-history"

// chanPhase is one publishing phase of one session.
type chanPhase struct {
	Round        *Round
	Publications int64
	PubFailed    int64
	PubElapsed   time.Duration // until node 3 had handed every publication to Publish
	// CPU is the CPU time, in seconds, each part of the session used
	// during the phase: nodes 1 and 2 together (the subscribers'), node 3
	// (the publisher), the load generator's workers and Redis.
	CPU struct{ Subscribers, Publisher, Load, Redis float64 }
}

// chanProcs are the processes of a session, by part, for the CPU meters.
type chanProcs struct {
	subscribers []int // nodes 1 and 2
	publisher   int   // node 3
	load        []int // the load generator's workers
	redis       int
}

func (ps chanProcs) all() []int {
	return append(append([]int{ps.publisher, ps.redis}, ps.subscribers...), ps.load...)
}

// pubRate is publications delivered per second, end to end: every
// publication of the phase ÷ (last delivery − the publish trigger).
func (p *chanPhase) pubRate() float64 {
	if p == nil || p.Round == nil || p.Round.Elapsed <= 0 {
		return math.NaN()
	}
	return float64(p.Publications-p.PubFailed) / p.Round.Elapsed.Seconds()
}

// publisherRate is the publications node 3's Publish calls accepted per
// second.
func (p *chanPhase) publisherRate() float64 {
	if p == nil || p.PubElapsed <= 0 {
		return math.NaN()
	}
	return float64(p.Publications-p.PubFailed) / p.PubElapsed.Seconds()
}

// chanSample is one session of the many-channels scenario.
type chanSample struct {
	Server        string
	Conns         int
	Steady, Max   *chanPhase
	RedisRPS      float64 // redis-benchmark's PUBLISH rate (the "redis" row)
	RedisReceived int64   // messages the attached subscribers got
	RedisExpected int64   // 2 × the PUBLISH commands Redis served (INFO commandstats)
	RedisForeign  float64 // CPU share other processes took during redis-benchmark
}

// chanSession runs ws or centrifuge as three nodes on the harness's Redis:
// cfg.channels subscribers on node 1 and as many on node 2 (channel i has
// one on each), every publication made on node 3 by cfg.goroutines
// goroutines; a steady phase, then a max-rate phase.
func chanSession(name string, cfg chanConfig, rs *redisProc, run int, prof profiler) (*chanSample, error) {
	if err := rs.flush(); err != nil {
		return nil, err
	}
	s := &chanSample{Server: name}
	prefix := fmt.Sprintf("bench%d:", time.Now().UnixNano())
	var nodes []*serverProc
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	server := strings.TrimSuffix(name, historySuffix)
	for i := range 3 {
		args := []string{"-redis", rs.addr, "-redis-prefix", prefix}
		if server != name {
			args = append(args, "-history", strconv.Itoa(cfg.history))
		}
		// Profiles of node 1 (subscribers) and node 3 (the publisher).
		if p := prof.path(fmt.Sprintf("channels-node%d", i+1), name, run); p != "" && i != 1 {
			args = append(args, "-cpuprofile", p)
		}
		n, err := startServer(server, newAddr(), args...)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	extra := []string{"-channels", strconv.Itoa(cfg.channels)}
	f, err := startFleetArgs(protoOf(name), "room-", 0, extra,
		target{nodes[0].wsURL(), cfg.channels}, target{nodes[1].wsURL(), cfg.channels})
	if err != nil {
		return nil, err
	}
	defer f.stop()
	s.Conns = f.conns
	time.Sleep(time.Second)
	// Every process of the session is ours for the CPU meter.
	pids := chanProcs{subscribers: []int{nodes[0].cmd.Process.Pid, nodes[1].cmd.Process.Pid},
		publisher: nodes[2].cmd.Process.Pid, load: f.pids(), redis: rs.cmd.Process.Pid}
	if s.Steady, err = chanPhaseRun(f, nodes[2], pids, cfg, cfg.steadyPer, cfg.steadyRate); err != nil {
		return s, fmt.Errorf("steady: %w", err)
	}
	logf("  %s: steady %.0f pub/s delivered (publisher %.0f/s), %s", name, s.Steady.pubRate(), s.Steady.publisherRate(), s.Steady.Round)
	time.Sleep(time.Second)
	if s.Max, err = chanPhaseRun(f, nodes[2], pids, cfg, cfg.maxPer, 0); err != nil {
		return s, fmt.Errorf("max rate: %w", err)
	}
	logf("  %s: max rate %.0f pub/s delivered (publisher %.0f/s), %s", name, s.Max.pubRate(), s.Max.publisherRate(), s.Max.Round)
	c := s.Max.CPU
	logf("  %s: CPU during the max-rate phase: nodes 1+2 %.2fs, node 3 %.2fs, load generator %.2fs, Redis %.2fs", name, c.Subscribers, c.Publisher, c.Load, c.Redis)
	return s, nil
}

// chanPhaseRun arms per publications on every connection and has pub
// publish per to every channel at rate (0: as fast as possible); pids are
// the session's processes, for the CPU meters.
func chanPhaseRun(f *fleet, pub *serverProc, pids chanProcs, cfg chanConfig, per int, rate float64) (*chanPhase, error) {
	start, err := armRound(f, int64(per))
	if err != nil {
		return nil, err
	}
	q := url.Values{"prefix": {"room-"}, "channels": {strconv.Itoa(cfg.channels)}, "per": {strconv.Itoa(per)},
		"goroutines": {strconv.Itoa(cfg.goroutines)}, "rate": {strconv.FormatFloat(rate, 'f', -1, 64)},
		"size": {strconv.Itoa(cfg.size)}, "start": {strconv.FormatInt(start, 10)}}
	meter := startCPUMeter(pids.all()...)
	cpu := func() [4]float64 {
		return [4]float64{cpuSeconds(pids.subscribers...), cpuSeconds(pids.publisher), cpuSeconds(pids.load...), cpuSeconds(pids.redis)}
	}
	cpu0 := cpu()
	t0 := time.Now().UnixNano()
	type answer struct {
		a   *publishAnswer
		err error
	}
	ac := make(chan answer, 1)
	go func() { a, err := pub.control("/publish-many", q); ac <- answer{a, err} }()
	res, err := f.do(loadgenWait(5*time.Second, 150*time.Second), "result", 200*time.Second)
	an := <-ac
	if err == nil {
		err = an.err
	}
	if err != nil {
		return nil, err
	}
	if an.a.Failed > 0 {
		logf("  %d publications failed: %s", an.a.Failed, an.a.FirstError)
	}
	r := summarise(res, t0)
	r.Foreign = meter.foreign()
	cpu1 := cpu()
	p := &chanPhase{Round: r, Publications: int64(per) * int64(cfg.channels), PubFailed: an.a.Failed,
		PubElapsed: time.Duration(an.a.ElapsedNs)}
	p.CPU.Subscribers, p.CPU.Publisher, p.CPU.Load, p.CPU.Redis = cpu1[0]-cpu0[0], cpu1[1]-cpu0[1], cpu1[2]-cpu0[2], cpu1[3]-cpu0[3]
	return p, nil
}

// redisCeiling measures Redis alone in the same shape: two subscriber
// connections each subscribed to every channel (as ws's nodes 1 and 2
// are), and redis-benchmark publishing cfg.maxPer × cfg.channels
// payloads of the size ws puts in Redis, spread at random over the same
// channel names (__rand_int__ with -r), pipelined.
func redisCeiling(cfg chanConfig, rs *redisProc) (*chanSample, error) {
	if err := rs.flush(); err != nil {
		return nil, err
	}
	names := make([]string, cfg.channels)
	for i := range names {
		names[i] = proto.Indexed("room-", i)
	}
	var subs []*rawSub
	defer func() {
		for _, s := range subs {
			s.close()
		}
	}()
	for range 2 {
		s, err := subscribeRaw(rs.addr, names)
		if err != nil {
			return nil, err
		}
		subs = append(subs, s)
	}
	n := cfg.maxPer * cfg.channels
	args := redisBenchArgs(cfg, rs.addr, n)
	meter := startCPUMeterChildren(rs.cmd.Process.Pid)
	before, err := publishCalls(rs.rc)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(cfg.benchBin, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.benchBin, err)
	}
	rps, err := parseBenchCSV(out)
	if err != nil {
		return nil, err
	}
	after, err := publishCalls(rs.rc)
	if err != nil {
		return nil, err
	}
	// Wait (bounded) for the subscribers to read every message of every
	// PUBLISH Redis served (redis-benchmark may send a few more than -n
	// when pipelining).
	want := 2 * (after - before)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if subs[0].n.Load()+subs[1].n.Load() >= want {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := &chanSample{Server: "redis", RedisRPS: rps, RedisReceived: subs[0].n.Load() + subs[1].n.Load(), RedisExpected: want,
		RedisForeign: meter.foreign()}
	logf("  redis: %.0f PUBLISH/s (redis-benchmark), subscribers received %d of %d; other processes used %.0f%% CPU",
		rps, s.RedisReceived, want, s.RedisForeign*100)
	return s, nil
}

// redisBenchArgs is the redis-benchmark command line of the ceiling.
func redisBenchArgs(cfg chanConfig, addr string, n int) []string {
	host, port, _ := strings.Cut(addr, ":")
	pl := string(proto.Envelope(proto.Indexed("room-", 0), proto.Payload(0, time.Now().UnixNano(), cfg.size)))
	return []string{"-h", host, "-p", port, "-c", strconv.Itoa(cfg.benchConns), "-P", strconv.Itoa(cfg.benchPipe),
		"-n", strconv.Itoa(n), "-r", strconv.Itoa(cfg.channels), "--csv", "PUBLISH", "room-__rand_int__", pl}
}

// parseBenchCSV reads the rps of redis-benchmark --csv's one test line
// (its first field holds the command, quotes unescaped).
func parseBenchCSV(out []byte) (float64, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	f := strings.Split(last, `","`)
	if len(f) < 8 {
		return 0, fmt.Errorf("redis-benchmark: unexpected output %q", last)
	}
	return strconv.ParseFloat(f[len(f)-7], 64)
}

// runChannels runs the many-channels scenario: ws, centrifuge and the
// Redis ceiling, runs times, alternated within each run.
func runChannels(names []string, runs int, cfg chanConfig, rs *redisProc, prof profiler) ([]*chanSample, []string) {
	var out []*chanSample
	var errs []string
	for run := 1; run <= runs; run++ {
		for _, name := range names {
			logf("channels run %d/%d: %s", run, runs, name)
			var s *chanSample
			var err error
			if name == "redis" {
				s, err = redisCeiling(cfg, rs)
			} else {
				s, err = chanSession(name, cfg, rs, run, prof)
			}
			if err != nil {
				logf("  %s: %v", name, err)
				errs = append(errs, fmt.Sprintf("channels run %d, %s: %v", run, name, err))
			}
			if s != nil {
				out = append(out, s)
			}
		}
	}
	return out, errs
}

// chanRows are the channels scenario's rows, in table order.
var chanRows = []string{"centrifuge", "ws", "ws" + historySuffix, "redis"}

func chanMed(samples []*chanSample, server string, f func(*chanSample) float64) float64 {
	var xs []float64
	for _, s := range samples {
		if s.Server == server {
			xs = append(xs, f(s))
		}
	}
	return median(xs)
}

func phaseField(p *chanPhase, f func(*chanPhase) float64) float64 {
	if p == nil || p.Round == nil {
		return math.NaN()
	}
	return f(p)
}

func channelsMarkdown(b *strings.Builder, samples []*chanSample, runs int, cfg chanConfig) {
	fmt.Fprintf(b, "### Many channels on three nodes over Redis\n\n")
	fmt.Fprintf(b, "%d channels; each has one subscriber on node 1 and one on node 2 (%d connections); the application publishes on node 3 from %d goroutines "+
		"(goroutine g owns the channels i with i %% %d = g and publishes to them in rounds, so each channel is published in order); payloads of %d B. "+
		"Steady: %d publications per channel at %.0f/s in total; max rate: %d per channel as fast as possible. "+
		"publications/s = publications ÷ (last delivery − publish trigger); publisher = what node 3's Publish calls accepted per second. "+
		"Redis: a redis-server the harness started (no persistence), flushed between sessions. "+
		"ws-history is ws with every channel keeping its last %d publications (`Config.History`; each publication runs the history script instead of a PUBLISH). "+
		"The redis row is Redis alone in the same shape: two subscriber connections each subscribed to all %d channels, and `redis-benchmark %s` "+
		"(PUBLISH of a payload the size ws puts in Redis to a random one of the same channels). Medians of %d runs, alternated within each run.\n\n",
		cfg.channels, 2*cfg.channels, cfg.goroutines, cfg.goroutines, cfg.size, cfg.steadyPer, cfg.steadyRate, cfg.maxPer,
		cfg.history, cfg.channels, fmt.Sprintf("-c %d -P %d -n %d -r %d --csv PUBLISH room-__rand_int__ <payload>", cfg.benchConns, cfg.benchPipe, cfg.maxPer*cfg.channels, cfg.channels), runs)
	maxRate := func(s *chanSample) float64 { return phaseField(s.Max, (*chanPhase).pubRate) }
	steadyP99 := func(s *chanSample) float64 {
		return phaseField(s.Steady, func(p *chanPhase) float64 { return p.Round.P99 })
	}
	cf := chanMed(samples, "centrifuge", maxRate)
	rr := chanMed(samples, "redis", func(s *chanSample) float64 { return s.RedisRPS })
	b.WriteString("| server | max-rate publications/s | vs centrifuge | vs Redis alone | publisher /s | max-rate p50 / p99 ms | steady publications/s | steady p50 / p99 ms | missing / out-of-order / dup (all runs) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range chanRows {
		var any bool
		for _, s := range samples {
			any = any || s.Server == name
		}
		if !any {
			continue
		}
		if name == "redis" {
			var got, want int64
			for _, s := range samples {
				if s.Server == "redis" {
					got += s.RedisReceived
					want += s.RedisExpected
				}
			}
			fmt.Fprintf(b, "| Redis alone (redis-benchmark) | %s PUBLISH/s | %s | 1.00× | – | – | – | – | subscribers received %d of %d |\n",
				kdel(rr), ratio(rr, cf), got, want)
			continue
		}
		var miss, ooo, dup int64
		for _, s := range samples {
			if s.Server != name {
				continue
			}
			for _, p := range []*chanPhase{s.Steady, s.Max} {
				if p != nil && p.Round != nil {
					miss += p.Round.Missing
					ooo += p.Round.OutOfOrder
					dup += p.Round.Dup
				}
			}
		}
		m := chanMed(samples, name, maxRate)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s / %s | %s | %s / %s | %d / %d / %d |\n", name, kdel(m), ratio(m, cf), ratio(m, rr),
			kdel(chanMed(samples, name, func(s *chanSample) float64 { return phaseField(s.Max, (*chanPhase).publisherRate) })),
			ms(chanMed(samples, name, func(s *chanSample) float64 {
				return phaseField(s.Max, func(p *chanPhase) float64 { return p.Round.P50 })
			})),
			ms(chanMed(samples, name, func(s *chanSample) float64 {
				return phaseField(s.Max, func(p *chanPhase) float64 { return p.Round.P99 })
			})),
			kdel(chanMed(samples, name, func(s *chanSample) float64 { return phaseField(s.Steady, (*chanPhase).pubRate) })),
			ms(chanMed(samples, name, func(s *chanSample) float64 {
				return phaseField(s.Steady, func(p *chanPhase) float64 { return p.Round.P50 })
			})),
			ms(chanMed(samples, name, steadyP99)),
			miss, ooo, dup)
	}
	if w, h := chanMed(samples, "ws", maxRate), chanMed(samples, "ws"+historySuffix, maxRate); !math.IsNaN(w) && !math.IsNaN(h) {
		fmt.Fprintf(b, "\nws-history against ws, max-rate publications/s: %s; steady p99: %s against %s ms.\n", ratio(h, w),
			ms(chanMed(samples, "ws"+historySuffix, steadyP99)), ms(chanMed(samples, "ws", steadyP99)))
	}
	b.WriteString("\nCPU time during the max-rate phase, medians in seconds, and in brackets per 1,000 publications delivered: " +
		"the subscribers' nodes 1 and 2 together, the publisher's node 3, the load generator's workers and Redis.\n\n" +
		"| server | nodes 1+2 CPU s | node 3 CPU s | load generator CPU s | Redis CPU s | total CPU s |\n|---|---:|---:|---:|---:|---:|\n")
	for _, name := range chanRows {
		if name == "redis" || math.IsNaN(chanMed(samples, name, maxRate)) {
			continue
		}
		cell := func(f func(p *chanPhase) float64) string {
			v := chanMed(samples, name, func(s *chanSample) float64 { return phaseField(s.Max, f) })
			per := chanMed(samples, name, func(s *chanSample) float64 {
				return phaseField(s.Max, func(p *chanPhase) float64 { return f(p) / float64(p.Publications-p.PubFailed) * 1000 })
			})
			return fmt.Sprintf("%.2f (%.3f)", v, per)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", name,
			cell(func(p *chanPhase) float64 { return p.CPU.Subscribers }),
			cell(func(p *chanPhase) float64 { return p.CPU.Publisher }),
			cell(func(p *chanPhase) float64 { return p.CPU.Load }),
			cell(func(p *chanPhase) float64 { return p.CPU.Redis }),
			cell(func(p *chanPhase) float64 { return p.CPU.Subscribers + p.CPU.Publisher + p.CPU.Load + p.CPU.Redis }))
	}
	b.WriteString("\nPer run (max-rate publications/s [CPU share other processes took meanwhile]; steady p99 ms):\n\n")
	for _, name := range chanRows {
		var parts []string
		for _, s := range samples {
			switch {
			case s.Server != name:
			case name == "redis":
				parts = append(parts, fmt.Sprintf("%s [%.0f%%]", kdel(s.RedisRPS), s.RedisForeign*100))
			default:
				var mr *Round
				if s.Max != nil {
					mr = s.Max.Round
				}
				parts = append(parts, fmt.Sprintf("%s [%s]; %s", kdel(maxRate(s)), pct(mr), ms(steadyP99(s))))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(b, "- %s: %s\n", name, strings.Join(parts, " | "))
		}
	}
	b.WriteString("\n")
}
