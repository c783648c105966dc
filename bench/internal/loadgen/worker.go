// Package loadgen is the load generator every server is measured with: a
// worker process holds up to ~19,000 subscribed WebSocket connections and
// tallies each publication they receive, driven by the harness over its
// standard input and output (one JSON object a line).
package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vortechron/go-ws/bench/internal/proto"
)

// Command is what the harness sends a worker, one JSON object a line.
type Command struct {
	// Cmd is "arm" (start a round: Start, N, Latency), "wait" (report the
	// round of the reading connections once all N arrived or nothing came
	// for IdleMs, at most TimeoutMs), "release" (slow connections start
	// reading; then report their round like wait) or "close". A storm
	// worker (-storm) knows "drop" and "close".
	Cmd       string `json:"cmd"`
	Start     int64  `json:"start,omitempty"`
	N         int64  `json:"n,omitempty"`
	Latency   bool   `json:"latency,omitempty"`
	IdleMs    int64  `json:"idle_ms,omitempty"`
	TimeoutMs int64  `json:"timeout_ms,omitempty"`
}

// Event is what a worker answers, one JSON object a line.
type Event struct {
	Event   string       `json:"event"` // "ready", "armed", "result", "error"
	Conns   int          `json:"conns,omitempty"`
	Failed  int          `json:"failed,omitempty"`
	Deflate int          `json:"deflate,omitempty"` // connections that negotiated permessage-deflate
	Storm   *StormResult `json:"storm,omitempty"`
	Error   string       `json:"error,omitempty"`
	Result  *Result      `json:"result,omitempty"`
}

// Result is the tally of one round over a set of connections.
type Result struct {
	Conns        int64 `json:"conns"`
	Closed       int64 `json:"closed"` // connections that ended (closed by the server)
	Expected     int64 `json:"expected"`
	Delivered    int64 `json:"delivered"` // first deliveries of in-round sequence numbers
	Missing      int64 `json:"missing"`
	ConnsMissing int64 `json:"conns_missing"` // connections missing at least one
	Dup          int64 `json:"dup"`
	OutOfOrder   int64 `json:"out_of_order"`
	Stale        int64 `json:"stale"`      // publications of another round
	WireBytes    int64 `json:"wire_bytes"` // read from the TCP connections during the round
	FirstNs      int64 `json:"first_ns"`
	LastNs       int64 `json:"last_ns"`
	Hist         Hist  `json:"hist,omitempty"`
}

// Merge adds o to r.
func (r *Result) Merge(o *Result) {
	r.Conns += o.Conns
	r.Closed += o.Closed
	r.Expected += o.Expected
	r.Delivered += o.Delivered
	r.Missing += o.Missing
	r.ConnsMissing += o.ConnsMissing
	r.Dup += o.Dup
	r.OutOfOrder += o.OutOfOrder
	r.Stale += o.Stale
	r.WireBytes += o.WireBytes
	if o.FirstNs != 0 && (r.FirstNs == 0 || o.FirstNs < r.FirstNs) {
		r.FirstNs = o.FirstNs
	}
	r.LastNs = max(r.LastNs, o.LastNs)
	if r.Hist == nil {
		r.Hist = Hist{}
	}
	r.Hist.Merge(o.Hist)
}

type worker struct {
	proto  Protocol
	fast   []*conn // connections that read all along
	slow   []*conn // connections that read only once released
	unique atomic.Int64
	events
	readers sync.WaitGroup
}

// maxConns is the most connections one worker holds: each process may
// keep at most 20,000 open files.
const maxConns = 19_500

// Main runs a worker process. args excludes the program name.
func Main(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	url := fs.String("url", "ws://127.0.0.1:8700/ws", "WebSocket URL (loopback)")
	p := fs.String("proto", string(ProtoWS), "client protocol: ws, centrifuge or pusher")
	n := fs.Int("conns", 500, "connections to open")
	slow := fs.Int("slow", 0, "of which this many never read until released")
	channel := fs.String("channel", "C", "channel to subscribe to; with -channels, the prefix of the channel names")
	channels := fs.Int("channels", 0, "spread the connections over this many channels: connection i joins proto.Indexed(channel, (first+i) % channels)")
	first := fs.Int("first", 0, "index of this worker's first connection among all workers")
	compress := fs.Bool("compress", false, "offer permessage-deflate")
	inflateOnce := fs.Bool("inflate-once", false, "with -compress on ws://: inflate each distinct compressed message once per process, not once per delivery (see inflatingConn)")
	storm := fs.Bool("storm", false, "reconnect-storm mode (see storm.go): -conns users, each on 3 public and 1 presence channel")
	local := fs.String("local", "", "source IP (127.0.0.x) to dial from")
	readBuf := fs.Int("read-buffer", 2048, "client read buffer per connection, bytes")
	slowRcvbuf := fs.Int("slow-rcvbuf", 4096, "SO_RCVBUF of slow connections, bytes")
	parallel := fs.Int("parallel", 64, "dials in flight")
	stormTotal := fs.Int("storm-total", 0, "storm: connections over all workers (users u0..u<total-1>); 0 means -conns")
	stormRoom := fs.Int("storm-room", 10, "storm: users per presence channel")
	stormPresence := fs.Bool("storm-presence", true, "storm: the server keeps presence (members, join, leave)")
	stormTimeout := fs.Duration("storm-timeout", 90*time.Second, "storm: longest wait for everyone to be subscribed and settled")
	stormQuiet := fs.Duration("storm-quiet", time.Second, "storm: settled means also no frame for this long")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of this worker to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *n < 1 || *n > maxConns || *slow < 0 || *slow > *n || *channels < 0 || *first < 0 {
		return fmt.Errorf("-conns must be 1..%d, -slow 0..conns, -channels and -first >= 0", maxConns)
	}
	var localIP net.IP
	if *local != "" {
		if localIP = net.ParseIP(*local); localIP == nil || !localIP.IsLoopback() {
			return fmt.Errorf("-local %q: want a 127.0.0.x address", *local)
		}
	}
	if *storm {
		return stormMain(stormOptions{url: *url, proto: Protocol(*p), conns: *n, first: *first, local: localIP,
			readBuf: *readBuf, parallel: *parallel, total: *stormTotal, room: *stormRoom, presence: *stormPresence,
			timeout: *stormTimeout, quiet: *stormQuiet}, stdin, stdout)
	}
	w := &worker{proto: Protocol(*p), events: events{enc: json.NewEncoder(stdout)}}
	if *inflateOnce && !strings.HasPrefix(*url, "ws://") {
		return fmt.Errorf("-inflate-once works on ws:// URLs only, not %s", *url)
	}
	fastDialer := dialer(localIP, *readBuf, 0, *compress, *inflateOnce)
	slowDialer := dialer(localIP, *readBuf, *slowRcvbuf, *compress, *inflateOnce)
	channelOf := func(i int) string {
		if *channels == 0 {
			return *channel
		}
		return proto.Indexed(*channel, (*first+i)%*channels)
	}

	// Connect and subscribe everyone, a bounded number at a time, with a
	// few retries per connection.
	conns := make([]*conn, *n)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	for i := range *n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			isSlow := i < *slow
			d := fastDialer
			if isSlow {
				d = slowDialer
			}
			for attempt := range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := subscribe(ctx, d, *url, w.proto, channelOf(i))
				cancel()
				if err == nil {
					c.slow = isSlow
					conns[i] = c
					return
				}
				firstErr.CompareAndSwap(nil, err.Error())
				time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
			}
			failed.Add(1)
		}()
	}
	wg.Wait()
	deflate := 0
	for _, c := range conns {
		if c != nil && c.deflate {
			deflate++
		}
		switch {
		case c == nil:
		case c.slow:
			w.slow = append(w.slow, c)
		default:
			w.fast = append(w.fast, c)
			w.startReader(c)
		}
	}
	ev := Event{Event: "ready", Conns: len(w.fast) + len(w.slow), Failed: int(failed.Load()), Deflate: deflate}
	if e, ok := firstErr.Load().(string); ok {
		ev.Error = e
	}
	w.send(ev)
	defer w.closeAll()

	return w.serveCommands(stdin, func(cmd Command) bool {
		switch cmd.Cmd {
		case "arm":
			w.unique.Store(0)
			for _, c := range append(w.fast[:len(w.fast):len(w.fast)], w.slow...) {
				c.arm(cmd.Start, cmd.N, cmd.Latency)
			}
			w.send(Event{Event: "armed"})
		case "wait":
			w.send(Event{Event: "result", Result: w.wait(w.fast, cmd)})
		case "release":
			w.unique.Store(0)
			for _, c := range w.slow {
				w.startReader(c)
			}
			w.send(Event{Event: "result", Result: w.wait(w.slow, cmd)})
		default:
			return false
		}
		return true
	})
}

func (w *worker) startReader(c *conn) {
	w.readers.Add(1)
	go func() {
		defer w.readers.Done()
		c.read(w.proto, func() { w.unique.Add(1) })
	}()
}

// wait blocks until every connection of set has its whole round, nothing
// new arrived for IdleMs, or TimeoutMs passed; then it collects the round.
func (w *worker) wait(set []*conn, cmd Command) *Result {
	var want int64
	for _, c := range set {
		c.mu.Lock()
		if c.r != nil {
			want += c.r.n
		}
		c.mu.Unlock()
	}
	idle := time.Duration(max(cmd.IdleMs, 100)) * time.Millisecond
	deadline := time.Now().Add(time.Duration(max(cmd.TimeoutMs, 1000)) * time.Millisecond)
	last, lastChange := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		got := w.unique.Load()
		if got >= want {
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > idle {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	res := &Result{}
	h := Hist{}
	for _, c := range set {
		c.collect(res, h)
	}
	res.Hist = h
	return res
}

// events writes a worker's events to the harness, one JSON line each,
// from any goroutine.
type events struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (e *events) send(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.enc.Encode(ev)
}

// serveCommands reads the harness's commands, one JSON line each, from
// stdin and hands each to handle until "close" or the end of stdin. A
// line that is not a command, or a command handle does not know (it
// returns false), is answered with an error event.
func (e *events) serveCommands(stdin io.Reader, handle func(Command) bool) error {
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		var cmd Command
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			e.send(Event{Event: "error", Error: err.Error()})
			continue
		}
		if cmd.Cmd == "close" {
			return nil
		}
		if !handle(cmd) {
			e.send(Event{Event: "error", Error: "unknown command " + cmd.Cmd})
		}
	}
	return sc.Err()
}

// closeAll closes every connection and waits (bounded) for the readers.
func (w *worker) closeAll() {
	for _, c := range append(w.fast, w.slow...) {
		c.ws.Close()
	}
	done := make(chan struct{})
	go func() { w.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		fmt.Fprintln(os.Stderr, "worker: readers still running after close")
	}
}
