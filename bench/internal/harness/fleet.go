package harness

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/vortechron/go-ws/bench/internal/loadgen"
)

// perWorker is the most connections the harness gives one worker process.
const perWorker = 10_000

// fleet is the set of worker processes holding one scenario's
// connections; each worker dials from its own 127.0.0.x source address so
// ephemeral ports never run out.
type fleet struct {
	workers []*workerProc
	conns   int
	deflate int             // connections that negotiated permessage-deflate
	ready   []loadgen.Event // each worker's "ready" event
}

// target is one server URL and how many connections go to it.
type target struct {
	url   string
	conns int
}

// lastIP is the last source address handed to a worker (127.0.0.lastIP).
// Every worker gets the next one, wrapping before 255, so the ephemeral
// ports a session leaves in TIME_WAIT are not needed by the next sessions.
var lastIP = 1

func nextIP() string {
	lastIP++
	if lastIP > 254 {
		lastIP = 2
	}
	return fmt.Sprintf("127.0.0.%d", lastIP)
}

// startFleet opens conns subscribed connections spread over targets (each
// split into workers of at most perWorker), slowFrac of them slow.
func startFleet(proto string, channel string, slowFrac float64, targets ...target) (*fleet, error) {
	return startFleetArgs(proto, channel, slowFrac, nil, targets...)
}

// startFleetArgs is startFleet with more worker flags (the same for every
// worker); each worker also gets -first, the index of its first
// connection within its target.
func startFleetArgs(proto string, channel string, slowFrac float64, extra []string, targets ...target) (*fleet, error) {
	f := &fleet{}
	for _, t := range targets {
		nw := (t.conns + perWorker - 1) / perWorker
		first := 0
		for i := range nw {
			n := t.conns / nw
			if i < t.conns%nw {
				n++
			}
			slow := int(float64(n) * slowFrac)
			args := append([]string{"-url", t.url, "-proto", proto, "-conns", strconv.Itoa(n),
				"-slow", strconv.Itoa(slow), "-channel", channel, "-local", nextIP(), "-first", strconv.Itoa(first)}, extra...)
			w, err := startWorker(args...)
			if err != nil {
				f.stop()
				return nil, err
			}
			first += n
			f.workers = append(f.workers, w)
		}
	}
	// Workers dial in parallel; wait for all of them.
	for _, w := range f.workers {
		ev, err := w.next("ready", 5*time.Minute)
		if err != nil {
			f.stop()
			return nil, err
		}
		if ev.Failed > 0 {
			logf("  %d connections failed: %s", ev.Failed, ev.Error)
		}
		f.conns += ev.Conns
		f.deflate += ev.Deflate
		f.ready = append(f.ready, ev)
	}
	return f, nil
}

// do sends cmd to every worker and merges their answers of kind want.
func (f *fleet) do(cmd loadgen.Command, want string, timeout time.Duration) (*loadgen.Result, error) {
	for _, w := range f.workers {
		if err := w.send(cmd); err != nil {
			return nil, err
		}
	}
	res := &loadgen.Result{Hist: loadgen.Hist{}}
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range f.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev, err := w.next(want, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = err
				return
			}
			if ev.Result != nil {
				res.Merge(ev.Result)
			}
		}()
	}
	wg.Wait()
	return res, firstErr
}

func (f *fleet) stop() {
	var wg sync.WaitGroup
	for _, w := range f.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop() }()
	}
	wg.Wait()
}

func (f *fleet) pids() []int {
	var pids []int
	for _, w := range f.workers {
		pids = append(pids, w.cmd.Process.Pid)
	}
	return pids
}
