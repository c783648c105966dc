package ws

import (
	"runtime/debug"
	"sync"
	"time"
)

// hookRunner runs the hub's notification hooks (Options.OnSubscribe and
// OnUnsubscribe, Config.OnChannelOccupied and OnChannelVacated) on one
// goroutine of its own, one at a time, in the order they were queued.
// Whoever queues a hook (the Run goroutine, the occupancy worker) only
// appends it to a slice under mu, so a slow hook delays the hooks behind
// it and nothing else: never Run, a write shard or a connection.
//
// A hook that panics is logged at Error level with its stack and the
// runner goes on with the next one.
type hookRunner struct {
	h    *Hub
	wake chan struct{}
	done chan struct{} // closed when the runner goroutine returns

	mu       sync.Mutex
	queue    []func() // guarded by mu
	finished bool     // guarded by mu; nothing more will be queued
}

func (r *hookRunner) init(h *Hub) {
	r.h = h
	r.wake = make(chan struct{}, 1)
	r.done = make(chan struct{})
}

// add queues f; it never blocks. After finish it drops f.
func (r *hookRunner) add(f func()) {
	r.mu.Lock()
	if r.finished {
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, f)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run calls the queued hooks until finish was called and the queue is
// empty. It is the runner goroutine, started by Run.
func (r *hookRunner) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		batch, finished := r.queue, r.finished
		r.queue = nil
		r.mu.Unlock()
		if len(batch) == 0 {
			if finished {
				return
			}
			<-r.wake
			continue
		}
		for i, f := range batch {
			batch[i] = nil
			r.call(f)
		}
	}
}

func (r *hookRunner) call(f func()) {
	defer func() {
		if p := recover(); p != nil {
			r.h.log.Error("ws: panic in a hook", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// finish lets the runner return once it has called what is queued, and
// waits for it until deadline: a hook stuck in user code cannot keep
// the hub from shutting down.
func (r *hookRunner) finish(deadline time.Time) {
	r.mu.Lock()
	r.finished = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.h.log.Warn("ws: shutdown deadline passed while hooks were still running")
	}
}

// subscribedHook queues Options.OnSubscribe for c, if it is set. Called by
// the Run goroutine.
func (h *Hub) subscribedHook(c *Client, channel string) {
	if f := c.opts.OnSubscribe; f != nil {
		h.hooks.add(func() { f(c, channel) })
	}
}

// unsubscribedHook queues Options.OnUnsubscribe for c, if it is set.
// Called by the Run goroutine.
func (h *Hub) unsubscribedHook(c *Client, channel string) {
	if f := c.opts.OnUnsubscribe; f != nil {
		h.hooks.add(func() { f(c, channel) })
	}
}
