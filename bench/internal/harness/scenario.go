package harness

import (
	"fmt"
	"math"
	"net"
	"time"

	"github.com/vortechron/go-ws/bench/internal/loadgen"
)

// Sample is what one session (one server process, one run) measured.
// Latencies are microseconds, rates deliveries per second, memory bytes.
type Sample struct {
	Server string
	Conns  int

	IdleRSS   float64 // per subscribed connection, VmRSS delta as left by the runtime
	IdleRSSGC float64 // the same after runtime.GC + debug.FreeOSMemory on both ends

	Burst  *Round
	Steady *Round
	Slow   *Round // the reading 99% while 1% do not read
	SlowOf *Round // the 1% once they start reading again
}

// Round summarises one measured publication run.
type Round struct {
	Rate       float64 // unique deliveries / (last delivery - publish trigger)
	P50, P99   float64 // publish-to-receive latency, µs
	Max        float64
	Expected   int64
	Delivered  int64
	Missing    int64
	OutOfOrder int64
	Dup        int64
	Closed     int64
	Conns      int64
	Elapsed    time.Duration
	Foreign    float64 // share of the machine's CPU other processes used meanwhile
	WireBytes  int64   // read by the clients from their TCP connections during the round
}

func summarise(r *loadgen.Result, t0 int64) *Round {
	out := &Round{
		Expected: r.Expected, Delivered: r.Delivered, Missing: r.Missing,
		OutOfOrder: r.OutOfOrder, Dup: r.Dup, Closed: r.Closed, Conns: r.Conns, WireBytes: r.WireBytes,
		P50: float64(r.Hist.Quantile(0.50)), P99: float64(r.Hist.Quantile(0.99)), Max: float64(r.Hist.Quantile(1)),
	}
	if r.LastNs > t0 {
		out.Elapsed = time.Duration(r.LastNs - t0)
		out.Rate = float64(r.Delivered) / out.Elapsed.Seconds()
	}
	return out
}

// seqBase gives every round its own sequence numbers so a late frame of
// one round is never counted in the next.
var seqBase int64

// publishRound arms the fleet, has pub publish n payloads to channel, and
// waits for the deliveries.
func publishRound(f *fleet, pub *serverProc, channel string, n, size int, rate float64) (*Round, error) {
	return publishRoundIdle(f, pub, channel, n, size, rate, 3*time.Second)
}

// publishRoundIdle is publishRound that gives up once no delivery arrived
// for idle.
func publishRoundIdle(f *fleet, pub *serverProc, channel string, n, size int, rate float64, idle time.Duration) (*Round, error) {
	return publishRoundKind(f, pub, channel, n, size, "", rate, idle)
}

// publishRoundKind is publishRoundIdle with payloads of kind ("" or
// "chat", see the control API).
func publishRoundKind(f *fleet, pub *serverProc, channel string, n, size int, kind string, rate float64, idle time.Duration) (*Round, error) {
	start, err := armRound(f, int64(n))
	if err != nil {
		return nil, err
	}
	timeout := 150 * time.Second
	if rate > 0 {
		timeout += time.Duration(float64(n) / rate * float64(time.Second))
	}
	meter := startCPUMeter(append(f.pids(), pub.cmd.Process.Pid)...)
	t0 := time.Now().UnixNano()
	errc := make(chan error, 1)
	go func() { errc <- pub.publish(channel, n, size, kind, rate, start) }()
	res, err := f.do(loadgen.Command{Cmd: "wait", IdleMs: idle.Milliseconds(), TimeoutMs: timeout.Milliseconds()}, "result", timeout+30*time.Second)
	if perr := <-errc; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	r := summarise(res, t0)
	r.Foreign = meter.foreign()
	return r, nil
}

// armRound starts a round of n publications per connection on every
// worker of f and returns its first sequence number.
func armRound(f *fleet, n int64) (int64, error) {
	seqBase += 10_000_000
	start := seqBase
	_, err := f.do(loadgen.Command{Cmd: "arm", Start: start, N: n, Latency: true}, "armed", 30*time.Second)
	return start, err
}

// loadgenWait is the "wait" command: report once every delivery arrived,
// nothing arrived for idle, or after timeout.
func loadgenWait(idle, timeout time.Duration) loadgen.Command {
	return loadgen.Command{Cmd: "wait", IdleMs: idle.Milliseconds(), TimeoutMs: timeout.Milliseconds()}
}

// Config is what the harness measures.
type Config struct {
	Conns      int     // subscribers in the core scenarios
	BurstN     int     // messages in the burst
	Size       int     // payload bytes
	SteadyN    int     // messages in the steady run
	SteadyRate float64 // messages per second in the steady run
	SlowConns  int     // subscribers in the slow-consumer run
	SlowN      int     // messages in the slow-consumer run
	SlowRate   float64 // messages per second in the slow-consumer run
	SlowFrac   float64 // share of subscribers that do not read
	ScaleN     int     // messages in the scale and cluster bursts
	Settle     time.Duration
}

// newAddr returns a loopback address with a port that was free a moment
// ago, so concurrent harness runs on a shared machine do not collide.
func newAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:8700"
	}
	defer ln.Close()
	return ln.Addr().String()
}

func protoOf(server string) string {
	if server == "centrifuge" {
		return "centrifuge"
	}
	return "ws"
}

// coreSession starts one server process and runs idle memory, burst,
// steady and slow-consumer scenarios against it.
func coreSession(name string, cfg Config, serverArgs ...string) (*Sample, error) {
	s := &Sample{Server: name}
	srv, err := startServer(name, newAddr(), serverArgs...)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	time.Sleep(300 * time.Millisecond)
	rss0, _ := srv.rss(false)
	rss0gc, _ := srv.rss(true)

	url := "ws://" + srv.addr + "/ws"
	f, err := startFleet(protoOf(name), "C", 0, target{url, cfg.Conns})
	if err != nil {
		return nil, err
	}
	s.Conns = f.conns
	time.Sleep(cfg.Settle)
	rss1, _ := srv.rss(false)
	rss1gc, _ := srv.rss(true)
	s.IdleRSS = float64(rss1-rss0) / float64(max(f.conns, 1))
	s.IdleRSSGC = float64(rss1gc-rss0gc) / float64(max(f.conns, 1))
	logf("  %s: %d subscribed, idle RSS %.1f KB/conn (%.1f KB after GC)", name, f.conns, s.IdleRSS/1024, s.IdleRSSGC/1024)

	if s.Burst, err = publishRound(f, srv, "C", cfg.BurstN, cfg.Size, 0); err != nil {
		f.stop()
		return s, fmt.Errorf("burst: %w", err)
	}
	logf("  %s: burst %s", name, s.Burst)
	time.Sleep(500 * time.Millisecond)
	if s.Steady, err = publishRound(f, srv, "C", cfg.SteadyN, cfg.Size, cfg.SteadyRate); err != nil {
		f.stop()
		return s, fmt.Errorf("steady: %w", err)
	}
	logf("  %s: steady %s", name, s.Steady)
	f.stop()

	if cfg.SlowFrac > 0 && cfg.SlowConns > 0 {
		fs, err := startFleet(protoOf(name), "S", cfg.SlowFrac, target{url, cfg.SlowConns})
		if err != nil {
			return s, fmt.Errorf("slow: %w", err)
		}
		defer fs.stop()
		if s.Slow, err = publishRound(fs, srv, "S", cfg.SlowN, cfg.Size, cfg.SlowRate); err != nil {
			return s, fmt.Errorf("slow: %w", err)
		}
		res, err := fs.do(loadgen.Command{Cmd: "release", IdleMs: 2000, TimeoutMs: 20_000}, "result", time.Minute)
		if err != nil {
			return s, fmt.Errorf("slow release: %w", err)
		}
		s.SlowOf = summarise(res, 0)
		logf("  %s: slow-consumer run, readers %s; non-readers got %d/%d, %d closed", name, s.Slow, s.SlowOf.Delivered, s.SlowOf.Expected, s.SlowOf.Closed)
	}
	return s, nil
}

func (r *Round) String() string {
	return fmt.Sprintf("%.0f deliv/s in %v (other processes used %.0f%% CPU), p50 %.1fms p99 %.1fms max %.1fms, %d/%d delivered, %d missing, %d out of order, %d dup, %d closed",
		r.Rate, r.Elapsed.Round(time.Millisecond), r.Foreign*100, r.P50/1000, r.P99/1000, r.Max/1000, r.Delivered, r.Expected, r.Missing, r.OutOfOrder, r.Dup, r.Closed)
}

// median returns the median of the non-NaN xs (NaN when none).
func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
