package harness

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vortechron/go-ws/bench/internal/loadgen"
)

// stormConfig is the shape of the reconnect storm (see loadgen/storm.go
// for what the clients do and what "settled" means).
type stormConfig struct {
	conns    int // users, one connection each
	room     int // users per presence channel
	parallel int // dials in flight per worker
	timeout  time.Duration
	quiet    time.Duration
}

// memorySuffix marks a storm row of ws or centrifuge on its in-memory
// backends ("ws-memory"), which tells the hub's own cost from Redis's.
const memorySuffix = "-memory"

// stormServer is the server process a storm row runs.
func stormServer(row string) string { return strings.TrimSuffix(row, memorySuffix) }

// hasPresence says which storm rows keep presence.
func hasPresence(row string) bool {
	s := stormServer(row)
	return s == "ws" || s == "centrifuge"
}

// usesRedis says which storm rows run on the harness's Redis.
func usesRedis(row string) bool { return hasPresence(row) && !strings.HasSuffix(row, memorySuffix) }

// stormSample is one storm session.
type stormSample struct {
	Server          string
	Conns           int
	Initial         *stormPhase
	Storm           *stormPhase
	CheckedRooms    int
	BadRooms        int    // rooms whose server-side member count is wrong after the storm
	BadRoomsFirst   string // the first of them, described
	InitialBadRooms int    // the same after the first connect
}

// stormPhase merges the workers' results of one phase.
type stormPhase struct {
	Conns, Failed, NotSubscribed, Unsettled int
	Upgraded, Subscribed, Settled           time.Duration // from the drop to the last one
	ListSettled                             time.Duration // settled under ws's users-list reading
	ListUnsettled                           int
	NoList, WrongMembers, StaleCount        int           // why the subscribed unsettled ones are
	SubP50, SubP99                          time.Duration // per connection: drop to all subscribed
	ErrorFrames, Retries, PresenceFrames    int64
	ErrorCodes                              map[string]int64
	Example, ErrorExample                   string
	Foreign                                 float64
	// CPU is the CPU time, in seconds, the processes of the session used
	// during the phase: the server, the load generator's workers and
	// Redis (zero for rows without it).
	CPU struct{ Server, Load, Redis float64 }
}

// handshakes is WebSocket upgrades per second during the phase.
func (p *stormPhase) handshakes() float64 {
	if p == nil || p.Upgraded <= 0 {
		return math.NaN()
	}
	return float64(p.Conns-p.Failed) / p.Upgraded.Seconds()
}

func mergeStorm(rs []*loadgen.StormResult) *stormPhase {
	p := &stormPhase{}
	var t0, up, sub, set, list int64
	sh := loadgen.Hist{}
	for _, r := range rs {
		if t0 == 0 || r.StartNs < t0 {
			t0 = r.StartNs
		}
		up, sub, set = max(up, r.LastUpgradeNs), max(sub, r.LastSubscribedNs), max(set, r.LastSettledNs)
		list = max(list, r.LastListSettledNs)
		p.ListUnsettled += r.ListUnsettled
		p.NoList += r.NoList
		p.WrongMembers += r.WrongMembers
		p.StaleCount += r.StaleCount
		p.Conns += r.Conns
		p.Failed += r.Failed
		p.NotSubscribed += r.NotSubscribed
		p.Unsettled += r.Unsettled
		p.ErrorFrames += r.ErrorFrames
		p.Retries += r.Retries
		p.PresenceFrames += r.PresenceFrames
		if p.Example == "" {
			p.Example = r.Example
		}
		if p.ErrorExample == "" {
			p.ErrorExample = r.ErrorExample
		}
		for k, v := range r.ErrorCodes {
			if p.ErrorCodes == nil {
				p.ErrorCodes = map[string]int64{}
			}
			p.ErrorCodes[k] += v
		}
		sh.Merge(r.Subscribed)
	}
	since := func(ns int64) time.Duration {
		if ns <= t0 {
			return 0
		}
		return time.Duration(ns - t0)
	}
	p.Upgraded, p.Subscribed, p.Settled, p.ListSettled = since(up), since(sub), since(set), since(list)
	p.SubP50 = time.Duration(sh.Quantile(0.5)) * time.Microsecond
	p.SubP99 = time.Duration(sh.Quantile(0.99)) * time.Microsecond
	return p
}

// stormSession connects cfg.conns users to one node of server, waits until
// they are settled, drops them all at once and measures the reconnection.
func stormSession(name string, cfg stormConfig, rs *redisProc, run int, prof profiler) (*stormSample, error) {
	var args []string
	if usesRedis(name) {
		if err := rs.flush(); err != nil {
			return nil, err
		}
		args = append(args, "-redis", rs.addr, "-redis-prefix", fmt.Sprintf("storm%d:", time.Now().UnixNano()))
	}
	if p := prof.path("storm", name, run); p != "" {
		args = append(args, "-cpuprofile", p)
	}
	srv, err := startServer(stormServer(name), newAddr(), args...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	s := &stormSample{Server: name}

	f := &fleet{}
	defer f.stop()
	nw := (cfg.conns + perWorker - 1) / perWorker
	per := (cfg.conns + nw - 1) / nw
	per = (per + cfg.room - 1) / cfg.room * cfg.room // keep every room within one worker
	for first := 0; first < cfg.conns; first += per {
		n := min(per, cfg.conns-first)
		w, err := startWorker("-storm", "-url", srv.wsURL(), "-proto", protoOf(stormServer(name)), "-conns", strconv.Itoa(n),
			"-first", strconv.Itoa(first), "-local", nextIP(), "-parallel", strconv.Itoa(cfg.parallel),
			"-storm-total", strconv.Itoa(cfg.conns), "-storm-room", strconv.Itoa(cfg.room),
			"-storm-presence="+strconv.FormatBool(hasPresence(name)),
			"-storm-timeout", cfg.timeout.String(), "-storm-quiet", cfg.quiet.String())
		if err != nil {
			return nil, err
		}
		f.workers = append(f.workers, w)
	}
	initial, err := stormEvents(f, "ready", cfg)
	if err != nil {
		return nil, fmt.Errorf("first connect: %w", err)
	}
	s.Initial = initial
	s.Conns = initial.Conns - initial.Failed
	logf("  %s: first connect: %s", name, initial)
	if hasPresence(name) {
		if s.InitialBadRooms, _, err = checkRooms(srv, cfg); err != nil {
			return s, err
		}
	}
	time.Sleep(time.Second)

	pids := append(f.pids(), srv.cmd.Process.Pid)
	if usesRedis(name) {
		pids = append(pids, rs.cmd.Process.Pid)
	}
	meter := startCPUMeter(pids...)
	cpu := func() (srvCPU, load, redis float64) {
		srvCPU, load = cpuSeconds(srv.cmd.Process.Pid), cpuSeconds(f.pids()...)
		if usesRedis(name) {
			redis = cpuSeconds(rs.cmd.Process.Pid)
		}
		return srvCPU, load, redis
	}
	srv0, load0, redis0 := cpu()
	for _, w := range f.workers {
		if err := w.send(loadgen.Command{Cmd: "drop"}); err != nil {
			return s, err
		}
	}
	if s.Storm, err = stormEvents(f, "storm", cfg); err != nil {
		return s, fmt.Errorf("storm: %w", err)
	}
	s.Storm.Foreign = meter.foreign()
	srv1, load1, redis1 := cpu()
	s.Storm.CPU.Server, s.Storm.CPU.Load, s.Storm.CPU.Redis = srv1-srv0, load1-load0, redis1-redis0
	logf("  %s: storm: %s", name, s.Storm)
	logf("  %s: CPU during the storm: server %.2fs, load generator %.2fs, Redis %.2fs", name, s.Storm.CPU.Server, s.Storm.CPU.Load, s.Storm.CPU.Redis)
	if hasPresence(name) {
		s.CheckedRooms = (cfg.conns + cfg.room - 1) / cfg.room
		if s.BadRooms, s.BadRoomsFirst, err = checkRooms(srv, cfg); err != nil {
			return s, err
		}
	}
	return s, nil
}

// checkRooms asks the server how many presence rooms hold other than
// their users (the server's own member count).
func checkRooms(srv *serverProc, cfg stormConfig) (int, string, error) {
	rooms := (cfg.conns + cfg.room - 1) / cfg.room
	q := url.Values{"prefix": {"presence-room-"}, "channels": {strconv.Itoa(rooms)},
		"size": {strconv.Itoa(cfg.room)}, "total": {strconv.Itoa(cfg.conns)}}
	a, err := srv.control("/presence-check", q)
	if err != nil {
		return 0, "", err
	}
	logf("  %s: server-side presence: %d of %d rooms wrong %s", srv.name, a.Mismatched, rooms, a.First)
	return a.Mismatched, a.First, nil
}

// stormEvents waits for every worker's event of kind want.
func stormEvents(f *fleet, want string, cfg stormConfig) (*stormPhase, error) {
	var rs []*loadgen.StormResult
	for _, w := range f.workers {
		ev, err := w.next(want, cfg.timeout+2*time.Minute)
		if err != nil {
			return nil, err
		}
		if ev.Storm == nil {
			return nil, fmt.Errorf("worker sent %q without a storm result", want)
		}
		rs = append(rs, ev.Storm)
	}
	return mergeStorm(rs), nil
}

func (p *stormPhase) String() string {
	return fmt.Sprintf("%d conns, %d failed; all upgraded in %v (%.0f handshakes/s), subscribed in %v (p50 %v, p99 %v), settled in %v (list reading %v); %d not subscribed, %d unsettled (no list %d, wrong members %d, stale count %d; list reading %d); %d presence frames, %d error frames (%d retried)%s",
		p.Conns, p.Failed, p.Upgraded.Round(time.Millisecond), p.handshakes(), p.Subscribed.Round(time.Millisecond),
		p.SubP50.Round(time.Millisecond), p.SubP99.Round(time.Millisecond), p.Settled.Round(time.Millisecond), p.ListSettled.Round(time.Millisecond),
		p.NotSubscribed, p.Unsettled, p.NoList, p.WrongMembers, p.StaleCount, p.ListUnsettled, p.PresenceFrames, p.ErrorFrames, p.Retries, exampleSuffix(p.Example)) +
		errorSuffix(p.ErrorCodes, p.ErrorExample)
}

func errorSuffix(codes map[string]int64, example string) string {
	if len(codes) == 0 {
		return ""
	}
	return fmt.Sprintf("; error frames by code %v, e.g. %s", codes, example)
}

func exampleSuffix(e string) string {
	if e == "" {
		return ""
	}
	return "; e.g. " + e
}

// runStorm runs the reconnect storm on every server, runs times,
// alternated within each run.
func runStorm(names []string, runs int, cfg stormConfig, rs *redisProc, prof profiler) ([]*stormSample, []string) {
	var out []*stormSample
	var errs []string
	for run := 1; run <= runs; run++ {
		for _, name := range names {
			logf("storm run %d/%d: %s, %d users", run, runs, name, cfg.conns)
			s, err := stormSession(name, cfg, rs, run, prof)
			if err != nil {
				logf("  %s: %v", name, err)
				errs = append(errs, fmt.Sprintf("storm run %d, %s: %v", run, name, err))
			}
			if s != nil {
				out = append(out, s)
			}
		}
	}
	return out, errs
}

func stormMed(samples []*stormSample, server string, f func(*stormPhase) float64) float64 {
	var xs []float64
	for _, s := range samples {
		if s.Server == server && s.Storm != nil {
			xs = append(xs, f(s.Storm))
		}
	}
	return median(xs)
}

// stormTotals adds up one server's runs.
type stormTotals struct {
	runs, unsettled, unsettledRuns, listUnsettled, listUnsettledRuns int
	failed, bad, checked, initUnsettled, initListUnsettled, initBad  int
	errFrames, retries                                               int64
	noList, wrongMembers, staleCount                                 int
}

func (t *stormTotals) add(s *stormSample) {
	t.runs++
	t.unsettled += s.Storm.Unsettled
	t.listUnsettled += s.Storm.ListUnsettled
	t.noList += s.Storm.NoList
	t.wrongMembers += s.Storm.WrongMembers
	t.staleCount += s.Storm.StaleCount
	if s.Storm.Unsettled > 0 {
		t.unsettledRuns++
	}
	if s.Storm.ListUnsettled > 0 {
		t.listUnsettledRuns++
	}
	t.failed += s.Storm.Failed
	t.bad += s.BadRooms
	t.checked += s.CheckedRooms
	t.errFrames += s.Storm.ErrorFrames
	t.retries += s.Storm.Retries
	t.initUnsettled += s.Initial.Unsettled
	t.initListUnsettled += s.Initial.ListUnsettled
	t.initBad += s.InitialBadRooms
}

// settledCell is the median settle time, or how many runs never settled.
func settledCell(samples []*stormSample, name string, unsettledRuns, runs int, f func(*stormPhase) float64) string {
	if unsettledRuns > 0 {
		return fmt.Sprintf("not settled in %d of %d runs", unsettledRuns, runs)
	}
	return secs(stormMed(samples, name, f))
}

func secs(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func stormMarkdown(b *strings.Builder, samples []*stormSample, runs int, cfg stormConfig) {
	fmt.Fprintf(b, "### Reconnect storm\n\n")
	fmt.Fprintf(b, "%d users on one node, one connection each (user `u<i>` in the `user` query parameter), each subscribed to `all`, its team's channel (100 users), "+
		"its own channel and its presence room (%d users; `presence-room-…`). ws and centrifuge run on the harness's Redis (ws: RedisBroker + RedisStorage; "+
		"centrifuge: RedisBroker + RedisPresenceManager; rows ending in -memory: the same server on its in-memory backends); melody, the gorilla hub and the ceiling keep no presence and run in memory, so for them the presence room is a plain channel. "+
		"Once everyone is settled, every client socket is closed at once (no close frame) and every user dials again straight away, %d dials in flight per worker process "+
		"(%d workers, one source address each). Handshakes/s = upgrades ÷ (last upgrade − drop). A connection is *subscribed* when its four subscriptions are acknowledged "+
		"and *settled* when, besides, its presence view equals its room's users exactly (ws: the `members` frame then every join/leave in order, and the count in the last presence frame; "+
		"centrifuge: the presence command's reply with the join/leave pushes applied, one connection per user); settled = the last time any connection became settled, "+
		"with no frame for %v afterwards. After the storm the harness also asks the server for every room's member count (ws: `Hub.PresenceMembers`; centrifuge: `Node.PresenceStats`). "+
		"Medians of %d runs, servers alternated within each run.\n\n",
		cfg.conns, cfg.room, cfg.parallel, (cfg.conns+perWorker-1)/perWorker, cfg.quiet, runs)
	hs := func(p *stormPhase) float64 { return p.handshakes() }
	bestHS, bestName := math.NaN(), ""
	for _, p := range peers {
		if v := stormMed(samples, p, hs); !math.IsNaN(v) && (math.IsNaN(bestHS) || v > bestHS) {
			bestHS, bestName = v, p
		}
	}
	ceil := stormMed(samples, "ceiling", hs)
	b.WriteString("| server | presence | handshakes/s | vs best peer | vs ceiling | all upgraded s | all subscribed s | subscribe p50 / p99 s | presence settled s: members + join/leave | unsettled (all runs) | presence settled s: users lists | unsettled (all runs) | rooms wrong on the server | first connect: unsettled (both readings), rooms wrong | failed dials | error frames (retried) |\n" +
		"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var rows []string
	for _, s := range samples {
		if !slices.Contains(rows, s.Server) {
			rows = append(rows, s.Server)
		}
	}
	for _, name := range order(rows) {
		h := stormMed(samples, name, hs)
		var t stormTotals
		for _, s := range samples {
			if s.Server == name && s.Storm != nil {
				t.add(s)
			}
		}
		row := []string{name, "no", kdel(h), ratio(h, bestHS), ratio(h, ceil),
			secs(stormMed(samples, name, func(p *stormPhase) float64 { return p.Upgraded.Seconds() })),
			secs(stormMed(samples, name, func(p *stormPhase) float64 { return p.Subscribed.Seconds() })),
			secs(stormMed(samples, name, func(p *stormPhase) float64 { return p.SubP50.Seconds() })) + " / " +
				secs(stormMed(samples, name, func(p *stormPhase) float64 { return p.SubP99.Seconds() })),
			"–", "–", "–", "–", "–", fmt.Sprintf("%d, %d, –", t.initUnsettled, t.initListUnsettled),
			fmt.Sprint(t.failed), fmt.Sprintf("%d (%d)", t.errFrames, t.retries)}
		if hasPresence(name) {
			row[1] = "yes (Redis)"
			if !usesRedis(name) {
				row[1] = "yes (memory)"
			}
			row[8] = settledCell(samples, name, t.unsettledRuns, t.runs, func(p *stormPhase) float64 { return p.Settled.Seconds() })
			row[9] = fmt.Sprintf("%d of %d (no list %d, wrong members %d, stale count %d)", t.unsettled, t.runs*cfg.conns, t.noList, t.wrongMembers, t.staleCount)
			row[10] = settledCell(samples, name, t.listUnsettledRuns, t.runs, func(p *stormPhase) float64 { return p.ListSettled.Seconds() })
			row[11] = fmt.Sprintf("%d of %d", t.listUnsettled, t.runs*cfg.conns)
			if stormServer(name) == "centrifuge" {
				row[10], row[11] = "(no lists)", "–"
			}
			row[12] = fmt.Sprintf("%d of %d", t.bad, t.checked)
			row[13] = fmt.Sprintf("%d, %d, %d", t.initUnsettled, t.initListUnsettled, t.initBad)
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(row, " | "))
	}
	b.WriteString("\nTotals are over all runs. ")
	fmt.Fprintf(b, "Best peer (handshakes/s): %s. Per run (handshakes/s; subscribed s; settled s [CPU share other processes took meanwhile]):\n\n", bestName)
	for _, name := range order(rows) {
		var parts []string
		for _, s := range samples {
			if s.Server == name && s.Storm != nil {
				parts = append(parts, fmt.Sprintf("%s; %.2f; %.2f [%.0f%%]", kdel(s.Storm.handshakes()), s.Storm.Subscribed.Seconds(), s.Storm.Settled.Seconds(), s.Storm.Foreign*100))
			}
		}
		fmt.Fprintf(b, "- %s: %s\n", name, strings.Join(parts, " | "))
	}
	b.WriteString("\nCPU time during the storm (from the drop until everyone is settled, plus the quiet second), medians in seconds: " +
		"what the server, the load generator's workers and Redis each used. Where they share the machine's cores, as here, " +
		"the storm takes about as long as their total takes the cores, so a server's handshakes/s against another's " +
		"follows the totals more than the servers' own shares.\n\n" +
		"| server | server CPU s | load generator CPU s | Redis CPU s | total CPU s |\n|---|---:|---:|---:|---:|\n")
	for _, name := range order(rows) {
		c := func(f func(p *stormPhase) float64) string { return secs(stormMed(samples, name, f)) }
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", name,
			c(func(p *stormPhase) float64 { return p.CPU.Server }),
			c(func(p *stormPhase) float64 { return p.CPU.Load }),
			c(func(p *stormPhase) float64 { return p.CPU.Redis }),
			c(func(p *stormPhase) float64 { return p.CPU.Server + p.CPU.Load + p.CPU.Redis }))
	}
	b.WriteString("\n")
}
